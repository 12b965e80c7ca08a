/* The genesis key's backup, adversary first. The sealing (common/pwseal.h): a wrong passphrase,
 * every byte flipped, every truncation, a byte appended, another magic or additional data, and
 * limits a crafted file could ask for are all refused; fleetd's sealed backups (no additional
 * data) still open. The file (provision/pairing_genkey.c): every character changed, every
 * truncation, a wrong passphrase, a key that is not the one the file names. The restore on a
 * member's state directory: a file of another fleet, of another genesis key under the same
 * fleet id, a wrong passphrase, a truncated file and a node that already holds a key are
 * refused with nothing written; a good restore leaves the genesis' key, 0600, and the address
 * plan, and what the restored key signs every member accepts. Argon2id runs at libsodium's
 * minimum limits here (the tool uses the moderate ones). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "common/pwseal.h"
#include "fleetd/backup.h"
#include "provision/pairing.h"

static const struct pwseal_limits fast = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
#define PASS "correct horse battery"

static void test_pwseal_round_trip(void **state)
{
        static const uint8_t plain[] = "the plain text", ad[] = "in clear";
        uint8_t *sealed = NULL, *out = NULL;
        size_t n = 0, m = 0;

        assert_int_equal(pwseal_seal(BACKUP_SEALED_MAGIC, NULL, 0, plain, sizeof(plain), PASS,
                                     &fast, &sealed, &n),
                         0);
        assert_int_equal(n, PWSEAL_HEAD_LEN + 4 + sizeof(plain) + 17);
        assert_memory_equal(sealed, BACKUP_SEALED_MAGIC, PWSEAL_MAGIC_LEN);
        assert_int_equal(pwseal_open(BACKUP_SEALED_MAGIC, NULL, 0, sealed, n, PASS, &out, &m), 0);
        assert_int_equal(m, sizeof(plain));
        assert_memory_equal(out, plain, m);
        free(out);
        /* additional data the sealed bytes were not made with, another magic */
        assert_int_equal(
            pwseal_open(BACKUP_SEALED_MAGIC, ad, sizeof(ad), sealed, n, PASS, &out, &m), -EACCES);
        assert_int_equal(pwseal_open(PAIR_GENKEY_MAGIC, NULL, 0, sealed, n, PASS, &out, &m),
                         -EBADMSG);
        assert_int_equal(
            pwseal_open(BACKUP_SEALED_MAGIC, NULL, 0, sealed, n, "wrong passphrase", &out, &m),
            -EACCES);
        free(sealed);
        assert_int_equal(pwseal_seal(PAIR_GENKEY_MAGIC, ad, sizeof(ad), plain, sizeof(plain), PASS,
                                     &fast, &sealed, &n),
                         0);
        assert_int_equal(
            pwseal_open(PAIR_GENKEY_MAGIC, ad, sizeof(ad) - 1, sealed, n, PASS, &out, &m), -EACCES);
        assert_int_equal(pwseal_open(PAIR_GENKEY_MAGIC, ad, sizeof(ad), sealed, n, PASS, &out, &m),
                         0);
        free(out);
        free(sealed);
}

/* Every byte flipped (one bit, all bits), every truncation, one byte more: never opens. */
static void test_pwseal_tampered(void **state)
{
        uint8_t key[64], *sealed = NULL, *bad, *out = NULL;
        size_t n = 0, m = 0;

        randombytes_buf(key, sizeof(key));
        assert_int_equal(pwseal_seal(PAIR_GENKEY_MAGIC, (const uint8_t *)"ad", 2, key, sizeof(key),
                                     PASS, &fast, &sealed, &n),
                         0);
        bad = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
                for (unsigned x = 0x01; x <= 0xff; x = x == 0x01   ? 0x80
                                                       : x == 0x80 ? 0xff
                                                                   : 0x100) {
                        memcpy(bad, sealed, n);
                        bad[i] ^= (uint8_t)x;
                        assert_true(pwseal_open(PAIR_GENKEY_MAGIC, (const uint8_t *)"ad", 2, bad, n,
                                                PASS, &out, &m) < 0);
                }
        }
        for (size_t len = 0; len < n; len++)
                assert_true(pwseal_open(PAIR_GENKEY_MAGIC, (const uint8_t *)"ad", 2, sealed, len,
                                        PASS, &out, &m) < 0);
        memcpy(bad, sealed, n);
        bad[n] = 0;
        assert_int_equal(
            pwseal_open(PAIR_GENKEY_MAGIC, (const uint8_t *)"ad", 2, bad, n + 1, PASS, &out, &m),
            -EBADMSG);
        free(bad);
        free(sealed);
}

/* Limits beyond libsodium's sensitive ones are refused before any derivation. */
static void test_pwseal_limits(void **state)
{
        const struct pwseal_limits huge = {crypto_pwhash_OPSLIMIT_MIN,
                                           (uint64_t)crypto_pwhash_MEMLIMIT_SENSITIVE * 2};
        uint8_t *sealed = NULL, *out = NULL, *mem;
        size_t n = 0, m = 0;

        assert_int_equal(pwseal_seal(BACKUP_SEALED_MAGIC, NULL, 0, (const uint8_t *)"x", 1, PASS,
                                     &huge, &sealed, &n),
                         -EINVAL);
        assert_int_equal(pwseal_seal(BACKUP_SEALED_MAGIC, NULL, 0, (const uint8_t *)"x", 1, PASS,
                                     &fast, &sealed, &n),
                         0);
        mem = sealed + PWSEAL_MAGIC_LEN + crypto_pwhash_SALTBYTES + 8;
        mem[0] = 0x40; /* 2^62 bytes */
        assert_int_equal(pwseal_open(BACKUP_SEALED_MAGIC, NULL, 0, sealed, n, PASS, &out, &m),
                         -EBADMSG);
        free(sealed);
}

static void test_passphrase_file(void **state)
{
        char path[] = "/tmp/test_genkey_pass.XXXXXX", *pass = NULL;
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, "short\nmore\n", 11), 11);
        close(fd);
        assert_int_equal(pwseal_passphrase_load(path, &pass), -EINVAL);
        fd = open(path, O_WRONLY | O_TRUNC);
        assert_int_equal(write(fd, "long enough one\nsecond line\n", 28), 28);
        close(fd);
        assert_int_equal(pwseal_passphrase_load(path, &pass), 0);
        assert_string_equal(pass, "long enough one");
        sodium_free(pass);
        unlink(path);
        assert_int_equal(pwseal_passphrase_load(path, &pass), -ENOENT);
}

/* A backup of sk (its public key named in the file) for fleet, made with the fast limits. */
static char *genkey_text(const char *fleet, const uint8_t sk[64], const uint8_t named_pk[32],
                         const char *pass, size_t *ret_len)
{
        struct pair_genkey_file f = {0};
        char *text = NULL;

        snprintf(f.fleet_id, sizeof(f.fleet_id), "%s", fleet);
        snprintf(f.subnet, sizeof(f.subnet), "10.77.0.0/24");
        snprintf(f.made_on, sizeof(f.made_on), "laptop-a");
        sodium_bin2base64(f.genesis_public_key, sizeof(f.genesis_public_key), named_pk, 32,
                          sodium_base64_VARIANT_ORIGINAL);
        assert_int_equal(pair_genkey_format(&f, sk, pass, &fast, &text, ret_len), 0);
        return text;
}

/* 0 when text parses and opens into sk, else the first negative errno. */
static int genkey_open(const char *text, size_t len, uint8_t sk[64])
{
        struct pair_genkey_file f;
        char err[256];
        int r = pair_genkey_parse(text, len, &f, err, sizeof(err));

        return r ?: pair_genkey_unseal(text, &f, PASS, sk);
}

static void test_genkey_file_round_trip(void **state)
{
        uint8_t pk[32], sk[64], out[64];
        struct pair_genkey_file f;
        char err[256], *text;
        size_t len;

        crypto_sign_keypair(pk, sk);
        text = genkey_text("fleet-one", sk, pk, PASS, &len);
        assert_non_null(strstr(text, "\nfleet_id=fleet-one\n"));
        assert_non_null(strstr(text, "\nformat=" PAIR_GENKEY_FORMAT "\n"));
        assert_int_equal(pair_genkey_parse(text, len, &f, err, sizeof(err)), 0);
        assert_string_equal(f.fleet_id, "fleet-one");
        assert_string_equal(f.subnet, "10.77.0.0/24");
        assert_memory_equal(f.pk, pk, 32);
        /* the secret key appears nowhere in clear: neither raw nor in base64 */
        assert_null(memmem(text, len, sk, 32));
        assert_int_equal(pair_genkey_unseal(text, &f, "wrong passphrase", out), -EACCES);
        assert_int_equal(pair_genkey_unseal(text, &f, PASS, out), 0);
        assert_memory_equal(out, sk, 64);
        free(text);
}

/* Each character of the file replaced by another printable one (a base64 letter by another
 * base64 letter, so that the change reaches the ciphertext), and every truncation. */
static void test_genkey_file_tampered(void **state)
{
        uint8_t pk[32], sk[64], out[64];
        size_t len;
        char *text, *bad;

        crypto_sign_keypair(pk, sk);
        text = genkey_text("fleet-one", sk, pk, PASS, &len);
        bad = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
                memcpy(bad, text, len + 1);
                bad[i] = bad[i] == 'A' ? 'B' : bad[i] == '\n' ? ' ' : 'A';
                assert_true(genkey_open(bad, len, out) < 0);
        }
        for (size_t n = 0; n < len; n++) {
                memcpy(bad, text, n);
                bad[n] = '\0';
                assert_true(genkey_open(bad, n, out) < 0);
        }
        /* a line after the sealed one */
        memcpy(bad, text, len + 1);
        free(text);
        text = malloc(len + 8);
        snprintf(text, len + 8, "%sx=y\n", bad);
        assert_int_equal(genkey_open(text, strlen(text), out), -EBADMSG);
        free(text);
        free(bad);
}

/* A file naming one public key but holding another key opens, and is still refused. */
static void test_genkey_file_other_key(void **state)
{
        uint8_t pk[32], sk[64], pk2[32], sk2[64], out[64];
        size_t len;
        char *text;

        crypto_sign_keypair(pk, sk);
        crypto_sign_keypair(pk2, sk2);
        text = genkey_text("fleet-one", sk2, pk, PASS, &len);
        assert_int_equal(genkey_open(text, len, out), -EBADMSG);
        free(text);
}

/* --- the restore on a member's state directory --- */

struct fixture {
        char genesis[32], member[40], other[40], files[32];
        uint8_t pk[32], sk[64];
};

static void dir_remove(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        char path[512];

        while (d && (e = readdir(d))) {
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (e->d_name[0] != '.')
                        unlink(path);
        }
        if (d)
                closedir(d);
        rmdir(dir);
}

/* Every file of dir, names and contents, as one string (malloc'd): "nothing written". */
static char *dir_snapshot(const char *dir)
{
        struct dirent **names;
        char *buf = NULL, path[512], data[8192];
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        int n = scandir(dir, &names, NULL, alphasort);

        for (int i = 0; i < n; i++) {
                FILE *f;
                size_t k;

                snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
                f = names[i]->d_name[0] != '.' ? fopen(path, "r") : NULL;
                k = f ? fread(data, 1, sizeof(data), f) : 0;
                fprintf(m, "%s:%zu:", names[i]->d_name, k);
                fwrite(data, 1, k, m);
                if (f)
                        fclose(f);
                free(names[i]);
        }
        free(names);
        fclose(m);
        return buf;
}

static void genesis_make(const char *dir, const char *fleet)
{
        struct pair_genesis_opts o = {.state_dir = dir,
                                      .name = "laptop-a",
                                      .ifname = "wg0",
                                      .wg_port = 51820,
                                      .subnet = "10.77.0.0/24",
                                      .fleet_id = fleet,
                                      .no_wg = true,
                                      .out = stderr};

        assert_int_equal(pair_genesis_init(&o), 0);
}

/* A member of the genesis' fleet: its copy of genesis.pub, a roster (version 2, signed) with
 * laptop-b in it, and laptop-b's node.conf (no address plan, no genesis key). */
static void member_make(const struct fixture *fx)
{
        struct pair_node_conf c = {.wg_port = 51820};
        uint8_t wgk[WG_KEY_LEN], wgpub[WG_KEY_LEN];
        char err[256], wgpub64[WG_KEY_B64_SIZE];
        struct roster *cur = pair_roster_load(fx->genesis, err, sizeof(err)), *next;
        json_t *o = roster_to_json(cur);

        assert_int_equal(mkdir(fx->member, 0700), 0);
        wg_key_generate_private(wgk);
        wg_key_public_from_private(wgpub, wgk);
        wg_key_to_base64(wgpub64, wgpub);
        json_object_del(o, "signature");
        json_object_set_new(o, "version", json_integer(2));
        json_array_append_new(json_object_get(o, "nodes"),
                              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", "laptop-b", "name",
                                        "laptop-b", "role", "relay", "wg_public_key", wgpub64,
                                        "mesh_address", "10.77.0.2", "endpoint", ""));
        next = roster_from_json_signed(o, fx->sk, err, sizeof(err));
        assert_non_null(next);
        assert_int_equal(pair_genesis_pub_save(fx->member, fx->pk), 0);
        assert_int_equal(pair_roster_store(fx->member, next), 0);
        snprintf(c.node_id, sizeof(c.node_id), "laptop-b");
        snprintf(c.ifname, sizeof(c.ifname), "wg0");
        snprintf(c.role, sizeof(c.role), "relay");
        snprintf(c.mesh_address, sizeof(c.mesh_address), "10.77.0.2");
        assert_int_equal(pair_conf_save(fx->member, &c), 0);
        roster_free(cur);
        roster_free(next);
}

static void file_write(const char *dir, const char *name, const char *text, size_t len)
{
        char path[128];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        fclose(f);
}

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));

        snprintf(fx->genesis, sizeof(fx->genesis), "/tmp/test_genkey.XXXXXX");
        snprintf(fx->files, sizeof(fx->files), "/tmp/test_genkey.XXXXXX");
        if (!mkdtemp(fx->genesis) || !mkdtemp(fx->files))
                return -1;
        snprintf(fx->member, sizeof(fx->member), "%s/b", fx->files);
        snprintf(fx->other, sizeof(fx->other), "%s/o", fx->files);
        genesis_make(fx->genesis, "fleet-one");
        if (pair_genesis_key_load(fx->genesis, fx->sk) < 0 ||
            pair_genesis_pub_load(fx->genesis, fx->pk) < 0)
                return -1;
        member_make(fx);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        dir_remove(fx->genesis);
        dir_remove(fx->member);
        dir_remove(fx->other);
        dir_remove(fx->files);
        free(fx);
        return 0;
}

/* restore-genesis-key of files/name into the member, the passphrase from files/pass. */
static int restore(const struct fixture *fx, const char *name)
{
        char path[128], pass[128];

        snprintf(path, sizeof(path), "%s/%s", fx->files, name);
        snprintf(pass, sizeof(pass), "%s/pass", fx->files);
        return pair_genkey_restore(fx->member, path, pass, stderr);
}

static void test_restore_refusals_write_nothing(void **state)
{
        struct fixture *fx = *state;
        uint8_t opk[32], osk[64];
        char *text, *before, *after;
        size_t len;

        file_write(fx->files, "pass", PASS "\n", sizeof(PASS));
        /* another fleet: its own genesis, its own fleet id */
        genesis_make(fx->other, "fleet-two");
        assert_int_equal(pair_genesis_key_load(fx->other, osk), 0);
        assert_int_equal(pair_genesis_pub_load(fx->other, opk), 0);
        text = genkey_text("fleet-two", osk, opk, PASS, &len);
        file_write(fx->files, "other-fleet", text, len);
        free(text);
        /* this fleet's id, another genesis key */
        text = genkey_text("fleet-one", osk, opk, PASS, &len);
        file_write(fx->files, "other-key", text, len);
        free(text);
        text = genkey_text("fleet-one", fx->sk, fx->pk, "another passphrase", &len);
        file_write(fx->files, "wrong-pass", text, len);
        free(text);
        text = genkey_text("fleet-one", fx->sk, fx->pk, PASS, &len);
        file_write(fx->files, "truncated", text, len - 10);
        text[len - 5] = text[len - 5] == 'A' ? 'B' : 'A';
        file_write(fx->files, "altered", text, len);
        free(text);
        before = dir_snapshot(fx->member);
        assert_int_equal(restore(fx, "other-fleet"), -EPERM);
        assert_int_equal(restore(fx, "other-key"), -EPERM);
        assert_int_equal(restore(fx, "wrong-pass"), -EACCES);
        assert_int_equal(restore(fx, "truncated"), -EBADMSG);
        assert_int_equal(restore(fx, "altered"), -EACCES);
        assert_int_equal(restore(fx, "no-such-file"), -ENOENT);
        after = dir_snapshot(fx->member);
        assert_string_equal(before, after);
        free(after);
        free(before);
}

static void test_restore_then_sign(void **state)
{
        struct fixture *fx = *state;
        struct pair_node_conf c;
        struct roster *cur, *next;
        uint8_t sk[64];
        char path[128], err[256], *text, *before, *after;
        struct stat st;
        size_t len;

        file_write(fx->files, "pass", PASS "\n", sizeof(PASS));
        text = genkey_text("fleet-one", fx->sk, fx->pk, PASS, &len);
        file_write(fx->files, "good", text, len);
        free(text);
        assert_int_equal(restore(fx, "good"), 0);
        snprintf(path, sizeof(path), "%s/genesis.key", fx->member);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(pair_genesis_key_load(fx->member, sk), 0);
        assert_memory_equal(sk, fx->sk, 64);
        assert_int_equal(pair_conf_load(fx->member, &c), 0);
        assert_string_equal(c.subnet, "10.77.0.0/24");
        assert_string_equal(c.node_id, "laptop-b");
        /* a node holding a key: refused, nothing written */
        before = dir_snapshot(fx->member);
        assert_int_equal(restore(fx, "good"), -EEXIST);
        after = dir_snapshot(fx->member);
        assert_string_equal(before, after);
        free(after);
        free(before);
        /* what the restored key signs, the old genesis' copy (any member) accepts */
        cur = pair_roster_load(fx->member, err, sizeof(err));
        next = roster_from_json_signed(
            json_pack("{s:i, s:i, s:s, s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:s, s:s}]}", "v", 1,
                      "version", 3, "fleet_id", cur->fleet_id, "controller", "laptop-b",
                      "genesis_public_key", cur->genesis_public_key, "nodes", "id", "laptop-b",
                      "name", "laptop-b", "role", "relay", "wg_public_key",
                      cur->nodes[1].wg_public_key, "mesh_address", "10.77.0.2", "endpoint", ""),
            sk, err, sizeof(err));
        assert_non_null(next);
        assert_int_equal(pair_roster_accept(fx->genesis, next, err, sizeof(err)), 0);
        sodium_memzero(sk, sizeof(sk));
        roster_free(cur);
        roster_free(next);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pwseal_round_trip),
            cmocka_unit_test(test_pwseal_tampered),
            cmocka_unit_test(test_pwseal_limits),
            cmocka_unit_test(test_passphrase_file),
            cmocka_unit_test(test_genkey_file_round_trip),
            cmocka_unit_test(test_genkey_file_tampered),
            cmocka_unit_test(test_genkey_file_other_key),
            cmocka_unit_test_setup_teardown(test_restore_refusals_write_nothing, setup, teardown),
            cmocka_unit_test_setup_teardown(test_restore_then_sign, setup, teardown),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
