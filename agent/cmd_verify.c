/* `totebox-agent verify DIR` for an operator holding a copied vault offline, and
 * `totebox-agent seal DIR` (one inbox pass, for scripts and tests). verify opens the vault
 * read-only, checks everything the daemon checks, prints a human summary (or --json), and exits
 * 0 only when everything checks, 1 on mismatches, 2 when the vault cannot be read. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/agent.h"
#include "common/clock.h"
#include "common/small_file.h"
#include "common/tlog_checkpoint.h"

#define VERIFY_WITNESSES_MAX 8

struct verify_opts {
        bool json;
        bool copied;
        unsigned threads;
        bool have_pk;
        uint8_t pk[STH_PUBLIC_KEY_LEN];
        bool have_sth;
        struct sth sth;
        const char *checkpoint; /* --checkpoint FILE: a C2SP checkpoint of the vault key */
        const char *witness[VERIFY_WITNESSES_MAX]; /* --witness-key VKEY: must have cosigned it */
        unsigned n_witness;
        const char *dir;
};

static int verify_parse_pk(const char *b64, uint8_t pk[STH_PUBLIC_KEY_LEN])
{
        size_t len = 0;

        if (sodium_base642bin(pk, STH_PUBLIC_KEY_LEN, b64, strlen(b64), NULL, &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            len != STH_PUBLIC_KEY_LEN)
                return -EINVAL;
        return 0;
}

/* --trusted-sth FILE: a tree head the operator accepted earlier, as the host stores it. */
static int verify_parse_sth(const char *path, struct sth *s)
{
        const char *slash = strrchr(path, '/');
        const char *name = slash ? slash + 1 : path;
        char *dir;
        int fd, r;

        if (strcmp(name, "sth.json") != 0) {
                fprintf(stderr,
                        "totebox-agent verify: --trusted-sth '%s': not a file named "
                        "sth.json\n",
                        path);
                return -EINVAL;
        }
        dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        if (!dir) {
                fprintf(stderr, "totebox-agent verify: --trusted-sth '%s': %s\n", path,
                        strerror(ENOMEM));
                return -ENOMEM;
        }
        fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = fd < 0 ? -errno : vault_sth_load(fd, s); /* a regular file only, never blocking */
        free(dir);
        if (fd >= 0)
                close(fd);
        if (r < 0)
                fprintf(stderr, "totebox-agent verify: --trusted-sth '%s': %s\n", path,
                        r == -EINVAL ? "not a signed tree head" : agent_strerror(r));
        return r;
}

static void verify_usage(FILE *out)
{
        fprintf(
            out,
            "usage: totebox-agent verify [--json] [--threads N] [--public-key BASE64]\n"
            "                            [--trusted-sth DIR/sth.json]\n"
            "                            [--checkpoint FILE [--witness-key VKEY]...] [--copied]\n"
            "                            VAULT_DIR\n"
            "Checks a vault offline; exit 0 when everything checks, 1 on mismatches,\n"
            "2 when the vault cannot be read. --checkpoint: a C2SP checkpoint signed by\n"
            "the vault key (an export's 'checkpoint' member), which the ledger must\n"
            "extend; each --witness-key (a cosigner's vkey) must have cosigned it.\n"
            "--copied: VAULT_DIR is a file copy (debugfs rdump of an export's disk):\n"
            "inode flags, which no copy keeps, are not checked.\n");
}

static int verify_parse_args(int argc, char **argv, struct verify_opts *o)
{
        static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"public-key", required_argument, NULL, 'k'},
                                             {"trusted-sth", required_argument, NULL, 's'},
                                             {"checkpoint", required_argument, NULL, 'c'},
                                             {"copied", no_argument, NULL, 'C'},
                                             {"witness-key", required_argument, NULL, 'w'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int c;

        optind = 1;
        while ((c = getopt_long(argc, argv, "jt:k:s:c:Cw:h", opts, NULL)) != -1) {
                if (c == 'j')
                        o->json = true;
                else if (c == 't')
                        o->threads = (unsigned)strtoul(optarg, NULL, 10);
                else if (c == 'k' && verify_parse_pk(optarg, o->pk) == 0)
                        o->have_pk = true;
                else if (c == 's' && verify_parse_sth(optarg, &o->sth) == 0)
                        o->have_sth = true;
                else if (c == 'C')
                        o->copied = true;
                else if (c == 'c' && !o->have_sth)
                        o->checkpoint = optarg;
                else if (c == 'w' && o->n_witness < VERIFY_WITNESSES_MAX)
                        o->witness[o->n_witness++] = optarg;
                else {
                        if (c != 'h')
                                fprintf(stderr, "totebox-agent verify: bad option or value\n");
                        verify_usage(c == 'h' ? stdout : stderr);
                        return c == 'h' ? 1 : -EINVAL;
                }
        }
        if (optind + 1 != argc || (o->n_witness && !o->checkpoint) ||
            (o->checkpoint && o->have_sth)) {
                verify_usage(stderr);
                return -EINVAL;
        }
        o->dir = argv[optind];
        return 0;
}

static void verify_print_human(const struct vault *v, const struct verify_result *vr)
{
        char root[65], pk[64];
        merkle_hash r;

        ledger_root(&v->ledger, v->ledger.n, r);
        sodium_bin2hex(root, sizeof(root), r, MERKLE_HASH_LEN);
        sodium_bin2base64(pk, sizeof(pk), v->pk, STH_PUBLIC_KEY_LEN,
                          sodium_base64_VARIANT_ORIGINAL);
        printf("vault '%s': %" PRIu64 " records, %" PRIu64 " bytes, verified in %" PRIu64 " ms\n",
               v->dir, vr->records, vr->bytes, vr->duration_ms);
        printf("tree: size %zu, root %s\n", v->ledger.n, root);
        printf("public key: %s\n", v->have_key ? pk : "(missing)");
        for (size_t i = 0; i < vr->mm.n; i++)
                printf("MISMATCH %s '%s': %s\n", vr->mm.items[i].kind, vr->mm.items[i].path,
                       vr->mm.items[i].detail);
        if (vr->mm.total > vr->mm.n)
                printf("... and %" PRIu64 " more mismatches\n", vr->mm.total - vr->mm.n);
        if (vr->mm.total == 0)
                printf("result: OK, everything checks\n");
        else
                printf("result: %" PRIu64 " mismatches\n", vr->mm.total);
}

static void verify_print_json(const struct vault *v, const struct verify_result *vr)
{
        char root[65], pk[64];
        merkle_hash r;
        json_t *o, *a = json_array();

        ledger_root(&v->ledger, v->ledger.n, r);
        sodium_bin2hex(root, sizeof(root), r, MERKLE_HASH_LEN);
        sodium_bin2base64(pk, sizeof(pk), v->pk, STH_PUBLIC_KEY_LEN,
                          sodium_base64_VARIANT_ORIGINAL);
        for (size_t i = 0; i < vr->mm.n; i++)
                json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "kind", vr->mm.items[i].kind,
                                                   "path", vr->mm.items[i].path, "detail",
                                                   vr->mm.items[i].detail));
        o = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:s, s:s?, s:I, s:o}", "vault", v->dir, "ok",
                      vr->mm.total == 0, "records", (json_int_t)vr->records, "bytes",
                      (json_int_t)vr->bytes, "duration_ms", (json_int_t)vr->duration_ms,
                      "tree_size", (json_int_t)v->ledger.n, "root", root, "public_key",
                      v->have_key ? pk : NULL, "mismatch_count", (json_int_t)vr->mm.total,
                      "mismatches", a);
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
}

/* --checkpoint: opens the note with the vault key (the trusted one, else the vault's own) and
 * each witness's cosignature; the checkpoint's size and root become the trusted tree head.
 * -1 with a message when the note cannot stand for the vault (exit 1: a mismatch, not a read
 * failure: the vault was read, the evidence does not match it). */
static int verify_load_checkpoint(const struct vault *v, struct verify_opts *o)
{
        const uint8_t *pk = o->have_pk ? o->pk : v->pk;
        struct tlog_checkpoint cp;
        struct tlog_key wk;
        char *note = NULL;
        size_t len = 0;
        uint64_t t;
        int r;

        r = small_file_read(o->checkpoint, TLOG_NOTE_MAX, false, &note, &len);
        if (r < 0) {
                fprintf(stderr, "totebox-agent verify: --checkpoint '%s': %s\n", o->checkpoint,
                        strerror(-r));
                return -2;
        }
        r = o->have_pk || v->have_key ? sth_checkpoint_open(note, len, pk, &cp) : -ENOKEY;
        if (r < 0)
                fprintf(stderr,
                        "totebox-agent verify: --checkpoint '%s': not a checkpoint signed by the "
                        "vault key (%s)\n",
                        o->checkpoint,
                        r == -EKEYREJECTED ? "bad signature"
                        : r == -ENOKEY     ? "no signature by that key"
                                           : "malformed");
        for (unsigned i = 0; r == 0 && i < o->n_witness; i++) {
                r = tlog_cosig_vkey_parse(o->witness[i], &wk);
                if (r < 0)
                        fprintf(stderr,
                                "totebox-agent verify: --witness-key '%s': not a "
                                "cosignature verifier key\n",
                                o->witness[i]);
                else if ((r = tlog_note_cosig_verify(note, len, &wk, &t)) < 0)
                        fprintf(stderr,
                                "totebox-agent verify: --checkpoint '%s': witness '%s' %s\n",
                                o->checkpoint, wk.name,
                                r == -ENOKEY ? "did not cosign it" : "has a bad cosignature");
        }
        free(note);
        if (r < 0)
                return -1;
        memset(&o->sth, 0, sizeof(o->sth));
        o->sth.size = cp.size;
        memcpy(o->sth.root, cp.root, MERKLE_HASH_LEN);
        o->have_sth = true;
        return 0;
}

int agent_cmd_verify(int argc, char **argv)
{
        struct verify_opts o = {0};
        struct mismatch_list scratch;
        struct verify_result vr;
        struct vault *v = calloc(1, sizeof(*v)); /* 4 KiB of path and more: not on the stack */
        char err[512];
        int r = verify_parse_args(argc, argv, &o);

        if (r != 0 || !v) {
                free(v);
                return r < 0 || !v ? 2 : 0;
        }
        mismatch_list_init(&scratch);
        r = vault_open(v, o.dir, "", true, &scratch, err, sizeof(err));
        v->copied = o.copied;
        if (r == 0)
                r = agent_drop_privileges(agent_caps_verify, NULL, err, sizeof(err));
        mismatch_list_done(&scratch);
        if (r < 0) {
                fprintf(stderr, "totebox-agent verify: %s\n", err);
                vault_close(v);
                free(v);
                return 2;
        }
        if (o.checkpoint && (r = verify_load_checkpoint(v, &o)) < 0) {
                vault_close(v);
                free(v);
                return r == -2 ? 2 : 1;
        }
        verify_vault_at(v, o.threads, o.have_pk ? o.pk : NULL, o.have_sth ? &o.sth : NULL,
                        o.checkpoint != NULL, &vr);
        if (o.json)
                verify_print_json(v, &vr);
        else
                verify_print_human(v, &vr);
        r = vr.mm.total == 0 ? 0 : 1;
        verify_result_done(&vr);
        vault_close(v);
        free(v);
        return r;
}

int agent_cmd_seal(int argc, char **argv)
{
        struct mismatch_list scratch, log;
        struct seal_result sr = {0};
        struct vault *v = calloc(1, sizeof(*v)); /* as verify's */
        unsigned long batch = SEAL_BATCH_MAX;
        struct sth s;
        char err[512], *end = NULL;
        int r;

        int at = 1;

        if (argc == 4 && strcmp(argv[1], "--batch") == 0) {
                errno = 0;
                batch = strtoul(argv[2], &end, 10);
                at = errno || *end || batch < 1 || batch > SEAL_BATCH_MAX ? 0 : 3;
        }
        if (at == 0 || argc != at + 1) {
                fprintf(stderr,
                        "usage: totebox-agent seal [--batch N] VAULT_DIR  (one pass over "
                        "the inbox; N records a seal, 1..%d, default %d)\n",
                        SEAL_BATCH_MAX, SEAL_BATCH_MAX);
                return 2;
        }
        if (!v) {
                fprintf(stderr, "totebox-agent seal: out of memory\n");
                return 1;
        }
        mismatch_list_init(&scratch);
        mismatch_list_init(&log);
        r = vault_open(v, argv[at], "", false, &scratch, err, sizeof(err));
        v->seal_batch = (unsigned)batch;
        if (r == 0)
                r = agent_drop_privileges(agent_caps_daemon, NULL, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "totebox-agent seal: %s\n", err);
        } else {
                r = seal_scan_inbox(v, UINT64_MAX / 2, &sr, &log);
                if (r == -ENOTRECOVERABLE || (r == 0 && !v->head_ok))
                        fprintf(stderr,
                                "totebox-agent seal: the ledger does not verify against the last "
                                "signed tree head (%s); nothing sealed, the head is kept\n",
                                v->head_why);
                else if (r == -EUCLEAN)
                        fprintf(stderr, "totebox-agent seal: the ledger does not end with a "
                                        "newline; nothing sealed\n");
                else if (r < 0)
                        fprintf(stderr, "totebox-agent seal: %s\n", agent_strerror(r));
                if (r == 0)
                        r = vault_sign_sth(v, clock_realtime_ms(), true, &s);
                for (size_t i = 0; i < log.n; i++)
                        fprintf(stderr, "%s '%s': %s\n", log.items[i].kind, log.items[i].path,
                                log.items[i].detail);
                printf("sealed %zu, skipped %zu, failed %zu; ledger size %zu\n", sr.sealed,
                       sr.skipped, sr.failed, v->ledger.n);
        }
        mismatch_list_done(&scratch);
        mismatch_list_done(&log);
        vault_close(v);
        free(v);
        return r < 0 || sr.failed ? 1 : 0;
}
