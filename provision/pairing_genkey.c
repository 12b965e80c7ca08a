/* The genesis key's backup (docs/mesh.md, "Backing up the genesis key"): the genesis seals its
 * roster signing key with a passphrase into a file that says in clear which fleet and which key
 * it is; a member node restores it after the genesis is lost and becomes the node that signs
 * the next roster versions. Every member accepts them, since the key is the same one their
 * genesis.pub names. The sealing is common/pwseal.h's, as for fleetd's backups. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pwseal.h"
#include "common/small_file.h"
#include "provision/pairing.h"

#define PAIR_GENKEY_COMMENT                                                                        \
        "# totebox genesis key backup: this fleet's roster signing key, sealed with a "            \
        "passphrase.\n"                                                                            \
        "# Restore on a member node: totebox-pair restore-genesis-key FILE --passphrase-file F\n"

/* The clear fields, in the order the file holds them. */
static const struct pair_genkey_field {
        const char *key;
        size_t offset, size;
} pair_genkey_fields[] = {
    {"fleet_id", offsetof(struct pair_genkey_file, fleet_id), NODE_ID_MAX + 1},
    {"genesis_public_key", offsetof(struct pair_genkey_file, genesis_public_key),
     WG_KEY_B64_LEN + 1},
    {"subnet", offsetof(struct pair_genkey_file, subnet), 20},
    {"made_on", offsetof(struct pair_genkey_file, made_on), NODE_ID_MAX + 1},
};
#define PAIR_GENKEY_N_FIELDS (sizeof(pair_genkey_fields) / sizeof(pair_genkey_fields[0]))

int pair_genkey_format(struct pair_genkey_file *f, const uint8_t sk[64], const char *passphrase,
                       const struct pwseal_limits *limits, char **ret, size_t *ret_len)
{
        char b64[sodium_base64_ENCODED_LEN(PAIR_GENKEY_SEALED_MAX, sodium_base64_VARIANT_ORIGINAL)];
        uint8_t *sealed = NULL;
        char *buf = NULL;
        size_t len = 0, sealed_len = 0;
        FILE *m = open_memstream(&buf, &len);
        int r;

        if (!m)
                return -ENOMEM;
        fprintf(m, "%sformat=%s\n", PAIR_GENKEY_COMMENT, PAIR_GENKEY_FORMAT);
        for (size_t i = 0; i < PAIR_GENKEY_N_FIELDS; i++)
                fprintf(m, "%s=%s\n", pair_genkey_fields[i].key,
                        (const char *)f + pair_genkey_fields[i].offset);
        fflush(m);
        f->ad_len = len;
        r = pwseal_seal(PAIR_GENKEY_MAGIC, (const uint8_t *)buf, len, sk, 64, passphrase, limits,
                        &sealed, &sealed_len);
        if (r == 0 && sealed_len > sizeof(f->sealed))
                r = -EOVERFLOW;
        if (r == 0) {
                memcpy(f->sealed, sealed, sealed_len);
                f->sealed_len = sealed_len;
                sodium_bin2base64(b64, sizeof(b64), sealed, sealed_len,
                                  sodium_base64_VARIANT_ORIGINAL);
                fprintf(m, "sealed=%s\n", b64);
        }
        fclose(m);
        free(sealed);
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int pair_genkey_bad(char *err, size_t errsize, const char *what, size_t line)
{
        snprintf(err, errsize, "not a genesis key backup: %s (line %zu)", what, line);
        return -EBADMSG;
}

/* One "key=value" line of len bytes (no newline) into dst (size bytes): printable ASCII only. */
static int pair_genkey_value(const char *line, size_t len, const char *key, char *dst, size_t size)
{
        size_t klen = strlen(key), vlen;

        if (len <= klen || strncmp(line, key, klen) != 0 || line[klen] != '=')
                return -EBADMSG;
        vlen = len - klen - 1;
        if (vlen == 0 || vlen >= size)
                return -EBADMSG;
        for (size_t i = 0; i < vlen; i++)
                if (line[klen + 1 + i] <= ' ' || line[klen + 1 + i] > '~')
                        return -EBADMSG;
        memcpy(dst, line + klen + 1, vlen);
        dst[vlen] = '\0';
        return 0;
}

/* The clear fields' values: ids, a key, an address plan. */
static int pair_genkey_check_fields(struct pair_genkey_file *f, char *err, size_t errsize)
{
        struct in_addr base;
        unsigned prefix;
        size_t bin = 0;

        if (!ident_valid(IDENT_NODE, f->fleet_id) || !ident_valid(IDENT_NODE, f->made_on))
                return pair_genkey_bad(err, errsize, "a malformed fleet or node id", 0);
        if (strlen(f->genesis_public_key) != WG_KEY_B64_LEN ||
            sodium_base642bin(f->pk, sizeof(f->pk), f->genesis_public_key, WG_KEY_B64_LEN, NULL,
                              &bin, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin != sizeof(f->pk))
                return pair_genkey_bad(err, errsize, "a malformed genesis public key", 0);
        if (pair_subnet_parse(f->subnet, &base, &prefix) < 0)
                return pair_genkey_bad(err, errsize, "a malformed subnet", 0);
        return 0;
}

static int pair_genkey_sealed(const char *line, size_t len, struct pair_genkey_file *f)
{
        char b64[sodium_base64_ENCODED_LEN(PAIR_GENKEY_SEALED_MAX, sodium_base64_VARIANT_ORIGINAL)];

        if (pair_genkey_value(line, len, "sealed", b64, sizeof(b64)) < 0 ||
            sodium_base642bin(f->sealed, sizeof(f->sealed), b64, strlen(b64), NULL, &f->sealed_len,
                              NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
                return -EBADMSG;
        return 0;
}

int pair_genkey_parse(const char *buf, size_t len, struct pair_genkey_file *ret, char *err,
                      size_t errsize)
{
        struct pair_genkey_file f = {0};
        char format[sizeof(PAIR_GENKEY_FORMAT) + 1];
        size_t off = 0, field = 0, line = 0;

        if (len > PAIR_GENKEY_FILE_MAX || memchr(buf, '\0', len))
                return pair_genkey_bad(err, errsize, "too large or binary", 0);
        while (off < len) {
                const char *s = buf + off, *nl = memchr(s, '\n', len - off);
                size_t n = nl ? (size_t)(nl - s) : 0;
                int r = 0;

                line++;
                if (!nl)
                        return pair_genkey_bad(err, errsize, "cut short: no newline", line);
                if (s[0] == '#' && field == 0) {
                        off += n + 1;
                        continue;
                }
                if (field == 0)
                        r = pair_genkey_value(s, n, "format", format, sizeof(format))
                                ?: (strcmp(format, PAIR_GENKEY_FORMAT) ? -EBADMSG : 0);
                else if (field <= PAIR_GENKEY_N_FIELDS)
                        r = pair_genkey_value(s, n, pair_genkey_fields[field - 1].key,
                                              (char *)&f + pair_genkey_fields[field - 1].offset,
                                              pair_genkey_fields[field - 1].size);
                else if (field == PAIR_GENKEY_N_FIELDS + 1) {
                        f.ad_len = off;
                        r = pair_genkey_sealed(s, n, &f);
                } else
                        r = -EBADMSG; /* anything after the sealed line */
                if (r < 0)
                        return pair_genkey_bad(err, errsize, "an unexpected or malformed line",
                                               line);
                field++;
                off += n + 1;
        }
        if (field != PAIR_GENKEY_N_FIELDS + 2)
                return pair_genkey_bad(err, errsize, "cut short: a line is missing", line);
        if (pair_genkey_check_fields(&f, err, errsize) < 0)
                return -EBADMSG;
        *ret = f;
        return 0;
}

int pair_genkey_unseal(const char *buf, const struct pair_genkey_file *f, const char *passphrase,
                       uint8_t sk[64])
{
        uint8_t *plain = NULL, pk[32], check[64];
        size_t n = 0;
        int r = pwseal_open(PAIR_GENKEY_MAGIC, (const uint8_t *)buf, f->ad_len, f->sealed,
                            f->sealed_len, passphrase, &plain, &n);

        if (r < 0)
                return r;
        /* what opened must be the secret key of the public key the file names */
        if (n != 64 || crypto_sign_seed_keypair(pk, check, plain) != 0 ||
            sodium_memcmp(check, plain, 64) != 0 || sodium_memcmp(pk, f->pk, 32) != 0)
                r = -EBADMSG;
        else
                memcpy(sk, plain, 64);
        sodium_memzero(check, sizeof(check));
        sodium_memzero(plain, n);
        free(plain);
        return r;
}

/* The passphrase, or NULL with a message (cmd names the command). */
static char *pair_genkey_passphrase(const char *cmd, const char *path)
{
        char *pass = NULL;
        int r;

        if (!path || !*path) {
                fprintf(stderr, "%s: missing --passphrase-file F\n", cmd);
                return NULL;
        }
        r = pwseal_passphrase_load(path, &pass);
        if (r == -EINVAL)
                fprintf(stderr, "%s: the passphrase in '%s' is shorter than %d characters\n", cmd,
                        path, PWSEAL_PASS_MIN);
        else if (r < 0)
                fprintf(stderr, "%s: cannot read the passphrase file '%s': %s\n", cmd, path,
                        strerror(-r));
        return r < 0 ? NULL : pass;
}

/* The fleet this genesis signs for, from its state: its id, key pair and address plan. */
static int pair_genkey_genesis_state(const char *state_dir, struct pair_genkey_file *f,
                                     uint8_t sk[64])
{
        struct pair_node_conf c;
        struct roster *r;
        struct in_addr base;
        unsigned prefix;
        char err[256];
        int ret = pair_genesis_key_require("backup-genesis-key", state_dir, sk);

        if (ret < 0)
                return ret;
        r = pair_roster_load(state_dir, err, sizeof(err));
        if (pair_conf_load(state_dir, &c) < 0 || pair_subnet_parse(c.subnet, &base, &prefix) < 0 ||
            !r || roster_verify(r, sk + 32) < 0) {
                fprintf(stderr,
                        "backup-genesis-key: the state in '%s' has no node.conf with an address "
                        "plan or no roster signed by its genesis key\n",
                        state_dir);
                roster_free(r);
                return -ENOENT;
        }
        snprintf(f->fleet_id, sizeof(f->fleet_id), "%s", r->fleet_id);
        snprintf(f->subnet, sizeof(f->subnet), "%s", c.subnet);
        snprintf(f->made_on, sizeof(f->made_on), "%s", c.node_id);
        sodium_bin2base64(f->genesis_public_key, sizeof(f->genesis_public_key), sk + 32, 32,
                          sodium_base64_VARIANT_ORIGINAL);
        roster_free(r);
        return 0;
}

int pair_genkey_backup(const char *state_dir, const char *path, const char *passphrase_file,
                       FILE *out)
{
        struct pair_genkey_file f = {0};
        uint8_t sk[64];
        char *pass = NULL, *text = NULL;
        size_t len = 0;
        int ret;

        if (access(path, F_OK) == 0) {
                fprintf(stderr,
                        "backup-genesis-key: '%s' exists; a backup never overwrites a file\n",
                        path);
                return -EEXIST;
        }
        ret = pair_genkey_genesis_state(state_dir, &f, sk);
        if (ret == 0 && !(pass = pair_genkey_passphrase("backup-genesis-key", passphrase_file)))
                ret = -EINVAL;
        if (ret == 0)
                ret = pair_genkey_format(&f, sk, pass, &pwseal_moderate, &text, &len);
        sodium_memzero(sk, sizeof(sk));
        if (ret == 0 && (ret = small_file_create(path, text, len, 0600)) < 0)
                fprintf(stderr, "backup-genesis-key: cannot write '%s': %s\n", path,
                        strerror(-ret));
        if (ret == 0)
                fprintf(out,
                        "genesis key of fleet '%s' (public key %s) sealed into '%s'; keep the "
                        "file and the passphrase apart\n",
                        f.fleet_id, f.genesis_public_key, path);
        free(text);
        if (pass)
                sodium_free(pass);
        return ret;
}

/* The backup's fleet against this node's verified roster: NULL when it is this fleet's, else
 * why not. */
static const char *pair_genkey_other_fleet(const char *state_dir, const struct pair_genkey_file *f,
                                           const struct pair_node_conf *c)
{
        struct roster *r;
        uint8_t pk[32];
        char err[256];
        const char *why = NULL;

        if (pair_genesis_pub_load(state_dir, pk) < 0)
                return "this node has no genesis.pub (is it a member of a fleet?)";
        r = pair_roster_load(state_dir, err, sizeof(err));
        if (!r || roster_verify(r, pk) < 0)
                why = "this node has no roster signed by its genesis key";
        else if (strcmp(r->fleet_id, f->fleet_id) != 0)
                why = "the file is for another fleet (its fleet id is not this roster's)";
        else if (sodium_memcmp(pk, f->pk, sizeof(pk)) != 0 ||
                 (r->genesis_public_key[0] &&
                  strcmp(r->genesis_public_key, f->genesis_public_key) != 0))
                why = "the file holds another genesis key than the one this fleet's roster trusts";
        else if (!roster_find_by_id(r, c->node_id))
                why = "this node is not in its fleet's roster";
        roster_free(r);
        return why;
}

/* Everything a restore checks before it opens the file; the parsed file in f, its text in
 * *ret_text (malloc'd). */
static int pair_genkey_restore_check(const char *state_dir, const char *path,
                                     struct pair_node_conf *c, struct pair_genkey_file *f,
                                     char **ret_text)
{
        char *keypath = NULL, err[256], *text = NULL;
        const char *why;
        size_t len = 0;
        bool held;
        int ret;

        if (pair_conf_load(state_dir, c) < 0) {
                fprintf(stderr, "restore-genesis-key: no node.conf in '%s'\n", state_dir);
                return -ENOENT;
        }
        held = pair_state_path(state_dir, "genesis.key", &keypath) < 0 ||
               access(keypath, F_OK) == 0; /* fails closed, as it did on a path too long */
        free(keypath);
        if (held) {
                fprintf(stderr,
                        "restore-genesis-key: '%s' holds a genesis key already; nothing "
                        "restored\n",
                        state_dir);
                return -EEXIST;
        }
        ret = small_file_read(path, PAIR_GENKEY_FILE_MAX, false, &text, &len);
        if (ret < 0) {
                fprintf(stderr, "restore-genesis-key: cannot read '%s': %s\n", path,
                        ret == -EFBIG ? "larger than a genesis key backup" : strerror(-ret));
                return ret;
        }
        ret = pair_genkey_parse(text, len, f, err, sizeof(err));
        if (ret < 0)
                fprintf(stderr, "restore-genesis-key: '%s' is %s\n", path, err);
        else if ((why = pair_genkey_other_fleet(state_dir, f, c))) {
                fprintf(stderr, "restore-genesis-key: '%s' is refused: %s\n", path, why);
                ret = -EPERM;
        }
        if (ret < 0) {
                free(text);
                return ret;
        }
        *ret_text = text;
        return 0;
}

/* Stores the key, then the address plan in node.conf (the key is taken back when that fails). */
static int pair_genkey_store(const char *state_dir, struct pair_node_conf *c,
                             const struct pair_genkey_file *f, const uint8_t sk[64])
{
        char *keypath = NULL;
        int ret = pair_genesis_key_create(state_dir, sk);

        if (ret == 0 && !c->subnet[0]) {
                snprintf(c->subnet, sizeof(c->subnet), "%s", f->subnet);
                ret = pair_conf_save(state_dir, c);
                if (ret < 0 && pair_state_path(state_dir, "genesis.key", &keypath) == 0)
                        unlink(keypath);
                free(keypath);
        }
        if (ret < 0)
                fprintf(stderr, "restore-genesis-key: cannot store the key in '%s': %s\n",
                        state_dir, strerror(-ret));
        return ret;
}

int pair_genkey_restore(const char *state_dir, const char *path, const char *passphrase_file,
                        FILE *out)
{
        struct pair_node_conf c;
        struct pair_genkey_file f;
        uint8_t sk[64];
        char *text = NULL, *pass = NULL;
        int ret = pair_genkey_restore_check(state_dir, path, &c, &f, &text);

        if (ret == 0 && !(pass = pair_genkey_passphrase("restore-genesis-key", passphrase_file)))
                ret = -EINVAL;
        if (ret == 0) {
                ret = pair_genkey_unseal(text, &f, pass, sk);
                if (ret < 0)
                        fprintf(stderr, "restore-genesis-key: cannot open '%s': %s\n", path,
                                ret == -EACCES ? "wrong passphrase, or the file was altered"
                                               : "its sealed part is cut short or malformed, or "
                                                 "holds another key than it names");
        }
        if (ret == 0)
                ret = pair_genkey_store(state_dir, &c, &f, sk);
        if (ret == 0)
                fprintf(out,
                        "genesis key of fleet '%s' (public key %s, made on '%s') restored on "
                        "'%s': this node now signs the roster\n",
                        f.fleet_id, f.genesis_public_key, f.made_on, c.node_id);
        sodium_memzero(sk, sizeof(sk));
        free(text);
        if (pass)
                sodium_free(pass);
        return ret;
}
