/* Passphrase sealing (pwseal.h): Argon2id and XChaCha20-Poly1305 secretstream, and the
 * passphrase file. Moved here from fleetd/backup_archive.c when totebox-pair began sealing the
 * genesis key: one implementation for both, and fleetd's sealed backups are unchanged (an empty
 * ad leaves the first chunk's additional data the head alone, as before). */
#include "common/pwseal.h"

#include <errno.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PWSEAL_CHUNK  (64u * 1024)
#define PWSEAL_SALT   crypto_pwhash_SALTBYTES
#define PWSEAL_KEY    crypto_secretstream_xchacha20poly1305_KEYBYTES
#define PWSEAL_HDR    crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define PWSEAL_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

_Static_assert(PWSEAL_HEAD_LEN == PWSEAL_MAGIC_LEN + PWSEAL_SALT + 16 + PWSEAL_HDR,
               "the head's layout");

const struct pwseal_limits pwseal_moderate = {crypto_pwhash_OPSLIMIT_MODERATE,
                                              crypto_pwhash_MEMLIMIT_MODERATE};

static uint32_t pwseal_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void pwseal_put_be32(uint8_t *p, uint32_t v)
{
        for (int i = 3; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static void pwseal_put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static uint64_t pwseal_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

int pwseal_limits_get(const uint8_t *sealed, size_t len, struct pwseal_limits *ret)
{
        if (len < PWSEAL_HEAD_LEN)
                return -EBADMSG;
        ret->ops = pwseal_be64(sealed + PWSEAL_MAGIC_LEN + PWSEAL_SALT);
        ret->mem = pwseal_be64(sealed + PWSEAL_MAGIC_LEN + PWSEAL_SALT + 8);
        return 0;
}

static bool pwseal_limits_ok(uint64_t ops, uint64_t mem)
{
        return ops >= crypto_pwhash_OPSLIMIT_MIN && ops <= crypto_pwhash_OPSLIMIT_SENSITIVE &&
               mem >= crypto_pwhash_MEMLIMIT_MIN && mem <= crypto_pwhash_MEMLIMIT_SENSITIVE;
}

static int pwseal_derive(uint8_t key[PWSEAL_KEY], const char *passphrase, const uint8_t *salt,
                         uint64_t ops, uint64_t mem)
{
        return crypto_pwhash(key, PWSEAL_KEY, passphrase, strlen(passphrase), salt, ops,
                             (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) == 0
                   ? 0
                   : -ENOMEM;
}

/* The first chunk's additional data: the head, then the caller's ad (malloc'd). */
static uint8_t *pwseal_first_ad(const uint8_t *head, const uint8_t *ad, size_t ad_len)
{
        uint8_t *buf = malloc(PWSEAL_HEAD_LEN + ad_len);

        if (buf) {
                memcpy(buf, head, PWSEAL_HEAD_LEN);
                if (ad_len)
                        memcpy(buf + PWSEAL_HEAD_LEN, ad, ad_len);
        }
        return buf;
}

static void pwseal_push_chunks(crypto_secretstream_xchacha20poly1305_state *st,
                               const uint8_t *plain, size_t len, const uint8_t *first_ad,
                               size_t first_ad_len, uint8_t *out, size_t *ret_len)
{
        size_t chunks = len / PWSEAL_CHUNK + 1, off = 0, n = PWSEAL_HEAD_LEN;

        for (size_t i = 0; i < chunks; i++) {
                size_t m = len - off < PWSEAL_CHUNK ? len - off : PWSEAL_CHUNK;
                uint8_t tag = i + 1 == chunks ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;

                pwseal_put_be32(out + n, (uint32_t)(m + PWSEAL_ABYTES));
                crypto_secretstream_xchacha20poly1305_push(st, out + n + 4, NULL, plain + off, m,
                                                           i == 0 ? first_ad : NULL,
                                                           i == 0 ? first_ad_len : 0, tag);
                n += 4 + m + PWSEAL_ABYTES;
                off += m;
        }
        *ret_len = n;
}

int pwseal_seal(const char magic[PWSEAL_MAGIC_LEN], const uint8_t *ad, size_t ad_len,
                const uint8_t *plain, size_t len, const char *passphrase,
                const struct pwseal_limits *limits, uint8_t **ret, size_t *ret_len)
{
        uint8_t key[PWSEAL_KEY], *salt, *first_ad = NULL, *out = NULL;
        crypto_secretstream_xchacha20poly1305_state st;
        size_t chunks = len / PWSEAL_CHUNK + 1;
        int r = -ENOMEM;

        if (!pwseal_limits_ok(limits->ops, limits->mem))
                return -EINVAL;
        out = malloc(PWSEAL_HEAD_LEN + len + chunks * (4 + PWSEAL_ABYTES));
        if (!out)
                goto cleanup;
        salt = out + PWSEAL_MAGIC_LEN;
        memcpy(out, magic, PWSEAL_MAGIC_LEN);
        randombytes_buf(salt, PWSEAL_SALT);
        pwseal_put_be64(salt + PWSEAL_SALT, limits->ops);
        pwseal_put_be64(salt + PWSEAL_SALT + 8, limits->mem);
        r = pwseal_derive(key, passphrase, salt, limits->ops, limits->mem);
        if (r < 0)
                goto cleanup;
        crypto_secretstream_xchacha20poly1305_init_push(&st, out + PWSEAL_HEAD_LEN - PWSEAL_HDR,
                                                        key);
        sodium_memzero(key, sizeof(key));
        first_ad = pwseal_first_ad(out, ad, ad_len);
        if (!first_ad) {
                r = -ENOMEM;
                goto cleanup;
        }
        pwseal_push_chunks(&st, plain, len, first_ad, PWSEAL_HEAD_LEN + ad_len, out, ret_len);
        *ret = out;
        out = NULL;
cleanup:
        sodium_memzero(&st, sizeof(st));
        free(first_ad);
        free(out);
        return r;
}

static int pwseal_pull_chunks(crypto_secretstream_xchacha20poly1305_state *st,
                              const uint8_t *sealed, size_t len, const uint8_t *first_ad,
                              size_t first_ad_len, uint8_t *out, size_t *ret_len)
{
        size_t off = PWSEAL_HEAD_LEN, n = 0;
        bool final = false;

        while (!final) {
                unsigned long long m;
                uint8_t tag;
                size_t c;

                if (len - off < 4)
                        return -EBADMSG; /* cut short: no FINAL chunk */
                c = pwseal_be32(sealed + off);
                if (c < PWSEAL_ABYTES || c > len - off - 4)
                        return -EBADMSG;
                if (crypto_secretstream_xchacha20poly1305_pull(
                        st, out + n, &m, &tag, sealed + off + 4, c,
                        off == PWSEAL_HEAD_LEN ? first_ad : NULL,
                        off == PWSEAL_HEAD_LEN ? first_ad_len : 0) != 0)
                        return -EACCES;
                final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
                n += m;
                off += 4 + c;
        }
        if (off != len)
                return -EBADMSG; /* bytes after the end */
        *ret_len = n;
        return 0;
}

int pwseal_open(const char magic[PWSEAL_MAGIC_LEN], const uint8_t *ad, size_t ad_len,
                const uint8_t *sealed, size_t len, const char *passphrase, uint8_t **ret,
                size_t *ret_len)
{
        uint8_t key[PWSEAL_KEY], *first_ad = NULL, *out = NULL;
        crypto_secretstream_xchacha20poly1305_state st;
        struct pwseal_limits l;
        int r;

        if (pwseal_limits_get(sealed, len, &l) < 0 ||
            memcmp(sealed, magic, PWSEAL_MAGIC_LEN) != 0 || !pwseal_limits_ok(l.ops, l.mem))
                return -EBADMSG;
        out = malloc(len);
        first_ad = pwseal_first_ad(sealed, ad, ad_len);
        r = out && first_ad ? 0 : -ENOMEM;
        if (r == 0)
                r = pwseal_derive(key, passphrase, sealed + PWSEAL_MAGIC_LEN, l.ops, l.mem);
        if (r == 0 && crypto_secretstream_xchacha20poly1305_init_pull(
                          &st, sealed + PWSEAL_HEAD_LEN - PWSEAL_HDR, key) != 0)
                r = -EACCES;
        sodium_memzero(key, sizeof(key));
        if (r == 0)
                r = pwseal_pull_chunks(&st, sealed, len, first_ad, PWSEAL_HEAD_LEN + ad_len, out,
                                       ret_len);
        sodium_memzero(&st, sizeof(st));
        free(first_ad);
        if (r < 0) {
                if (out)
                        sodium_memzero(out, len);
                free(out);
                return r;
        }
        *ret = out;
        return 0;
}

int pwseal_passphrase_load(const char *path, char **ret)
{
        FILE *fp = fopen(path, "re");
        char *buf, *nl;
        size_t len;

        if (!fp)
                return -errno;
        buf = sodium_malloc(PWSEAL_PASS_MAX + 1);
        if (!buf) {
                fclose(fp);
                return -ENOMEM;
        }
        len = fread(buf, 1, PWSEAL_PASS_MAX, fp);
        fclose(fp);
        buf[len] = '\0';
        nl = strchr(buf, '\n');
        if (nl)
                *nl = '\0';
        if (strlen(buf) < PWSEAL_PASS_MIN) {
                sodium_free(buf);
                return -EINVAL;
        }
        *ret = buf;
        return 0;
}
