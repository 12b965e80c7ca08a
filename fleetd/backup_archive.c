/* The backup archive's format (backup.h): parsed and checked, sealed and unsealed. Part of
 * fleetd_shared (fleetd/CMakeLists.txt): fleetctl's restore reads what fleetd's backup.c writes.
 *
 * Archive: BACKUP_MAGIC, the manifest's length (4 bytes, big-endian), the manifest (JSON), each
 * file's bytes in manifest order, and SHA-256 over everything before it. A sealed archive is
 * BACKUP_SEALED_MAGIC, the Argon2id salt and limits, a secretstream header, then chunks (4-byte
 * length, ciphertext) of the plain archive, the last one tagged FINAL. */
#include "fleetd/backup.h"

#include <errno.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "fleetd/store.h"

#define BACKUP_CHUNK (64u * 1024)

static uint32_t backup_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int backup_parse_files(const uint8_t *buf, size_t off, size_t end, struct backup_archive *a,
                              char *err, size_t errsize)
{
        json_t *files = json_object_get(a->manifest, "files");

        if (!json_is_array(files) || json_array_size(files) == 0 ||
            json_array_size(files) > BACKUP_FILES_MAX) {
                snprintf(err, errsize, "the manifest lists no files or too many");
                return -EBADMSG;
        }
        for (size_t i = 0; i < json_array_size(files); i++) {
                json_t *e = json_array_get(files, i);
                const char *name = json_string_value(json_object_get(e, "name"));
                const char *sha = json_string_value(json_object_get(e, "sha256"));
                json_t *size = json_object_get(e, "size");
                uint8_t h[SHA256_LEN];
                char hex[2 * sizeof(h) + 1];
                struct backup_entry *be = &a->files[i];

                if (!name || !sha || !json_is_integer(size) || json_integer_value(size) < 0 ||
                    strlen(name) > BACKUP_NAME_MAX || strchr(name, '/') || name[0] == '.' ||
                    (uint64_t)json_integer_value(size) > end - off) {
                        snprintf(err, errsize,
                                 "file %zu of the manifest is malformed or longer "
                                 "than the archive",
                                 i);
                        return -EBADMSG;
                }
                snprintf(be->name, sizeof(be->name), "%s", name);
                be->data = buf + off;
                be->size = (uint64_t)json_integer_value(size);
                off += be->size;
                sha256_digest(be->data, be->size, h);
                sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
                if (strcmp(hex, sha) != 0) {
                        snprintf(err, errsize, "file '%s' does not match its checksum", name);
                        return -EBADMSG;
                }
                a->n_files++;
        }
        if (off != end || strcmp(a->files[0].name, STORE_FILE) != 0) {
                snprintf(err, errsize,
                         "the archive's files do not fill it, or the database is "
                         "not first");
                return -EBADMSG;
        }
        return 0;
}

int backup_parse(const uint8_t *buf, size_t len, struct backup_archive *ret, char *err,
                 size_t errsize)
{
        struct backup_archive a = {0};
        uint8_t digest[SHA256_LEN];
        size_t mlen, end;
        int r;

        if (len < BACKUP_MAGIC_LEN + 4 + sizeof(digest) ||
            memcmp(buf, BACKUP_MAGIC, BACKUP_MAGIC_LEN) != 0) {
                snprintf(err, errsize, "not a fleetd backup (or cut short before its manifest)");
                return -EBADMSG;
        }
        end = len - sizeof(digest);
        sha256_digest(buf, end, digest);
        if (sodium_memcmp(digest, buf + end, sizeof(digest)) != 0) {
                snprintf(err, errsize,
                         "the archive's checksum does not match: it is damaged or "
                         "cut short");
                return -EBADMSG;
        }
        mlen = backup_be32(buf + BACKUP_MAGIC_LEN);
        if (mlen > BACKUP_MANIFEST_MAX || mlen > end - BACKUP_MAGIC_LEN - 4) {
                snprintf(err, errsize, "the manifest's length %zu is out of bounds", mlen);
                return -EBADMSG;
        }
        a.manifest = json_loadb((const char *)buf + BACKUP_MAGIC_LEN + 4, mlen, 0, NULL);
        if (!json_is_object(a.manifest) ||
            json_integer_value(json_object_get(a.manifest, "v")) != 1 ||
            !json_is_string(json_object_get(a.manifest, "fleet_id")) ||
            !json_is_integer(json_object_get(a.manifest, "schema"))) {
                snprintf(err, errsize, "the manifest is not a version 1 backup manifest");
                json_decref(a.manifest);
                return -EBADMSG;
        }
        r = backup_parse_files(buf, BACKUP_MAGIC_LEN + 4 + mlen, end, &a, err, errsize);
        if (r < 0) {
                json_decref(a.manifest);
                return r;
        }
        *ret = a;
        return 0;
}

void backup_archive_done(struct backup_archive *a)
{
        if (!a)
                return;
        json_decref(a->manifest);
        a->manifest = NULL;
}

#define BACKUP_SEAL_HEAD                                                                           \
        (BACKUP_MAGIC_LEN + crypto_pwhash_SALTBYTES + 16 +                                         \
         crypto_secretstream_xchacha20poly1305_HEADERBYTES)

static void backup_put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static uint64_t backup_get_be64(const uint8_t *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static int backup_derive(uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES],
                         const char *passphrase, const uint8_t *salt, uint64_t ops, uint64_t mem)
{
        return crypto_pwhash(key, crypto_secretstream_xchacha20poly1305_KEYBYTES, passphrase,
                             strlen(passphrase), salt, ops, (size_t)mem,
                             crypto_pwhash_ALG_ARGON2ID13) == 0
                   ? 0
                   : -ENOMEM;
}

int backup_seal(const uint8_t *plain, size_t len, const char *passphrase, uint8_t **ret,
                size_t *ret_len)
{
        uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
        crypto_secretstream_xchacha20poly1305_state st;
        size_t chunks = len / BACKUP_CHUNK + 1, off = 0, n = BACKUP_SEAL_HEAD;
        uint8_t *out = malloc(BACKUP_SEAL_HEAD + len +
                              chunks * (4 + crypto_secretstream_xchacha20poly1305_ABYTES));
        uint8_t *salt = out + BACKUP_MAGIC_LEN;
        int r;

        if (!out)
                return -ENOMEM;
        memcpy(out, BACKUP_SEALED_MAGIC, BACKUP_MAGIC_LEN);
        randombytes_buf(salt, crypto_pwhash_SALTBYTES);
        backup_put_be64(salt + crypto_pwhash_SALTBYTES, crypto_pwhash_OPSLIMIT_MODERATE);
        backup_put_be64(salt + crypto_pwhash_SALTBYTES + 8, crypto_pwhash_MEMLIMIT_MODERATE);
        r = backup_derive(key, passphrase, salt, crypto_pwhash_OPSLIMIT_MODERATE,
                          crypto_pwhash_MEMLIMIT_MODERATE);
        if (r < 0) {
                free(out);
                return r;
        }
        crypto_secretstream_xchacha20poly1305_init_push(
            &st, out + BACKUP_SEAL_HEAD - crypto_secretstream_xchacha20poly1305_HEADERBYTES, key);
        for (size_t i = 0; i < chunks; i++) {
                size_t m = len - off < BACKUP_CHUNK ? len - off : BACKUP_CHUNK;
                size_t c = m + crypto_secretstream_xchacha20poly1305_ABYTES;
                uint8_t tag = i + 1 == chunks ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;

                out[n] = (uint8_t)(c >> 24);
                out[n + 1] = (uint8_t)(c >> 16);
                out[n + 2] = (uint8_t)(c >> 8);
                out[n + 3] = (uint8_t)c;
                /* the header is the first chunk's additional data: limits and salt are bound */
                crypto_secretstream_xchacha20poly1305_push(&st, out + n + 4, NULL, plain + off, m,
                                                           i == 0 ? out : NULL,
                                                           i == 0 ? BACKUP_SEAL_HEAD : 0, tag);
                n += 4 + c;
                off += m;
        }
        sodium_memzero(key, sizeof(key));
        *ret = out;
        *ret_len = n;
        return 0;
}

static int backup_unseal_chunks(crypto_secretstream_xchacha20poly1305_state *st,
                                const uint8_t *sealed, size_t len, uint8_t *out, size_t *ret_len)
{
        size_t off = BACKUP_SEAL_HEAD, n = 0;
        bool final = false;

        while (!final) {
                unsigned long long m;
                uint8_t tag;
                size_t c;

                if (len - off < 4)
                        return -EBADMSG; /* cut short: no FINAL chunk */
                c = backup_be32(sealed + off);
                if (c < crypto_secretstream_xchacha20poly1305_ABYTES || c > len - off - 4)
                        return -EBADMSG;
                if (crypto_secretstream_xchacha20poly1305_pull(
                        st, out + n, &m, &tag, sealed + off + 4, c,
                        off == BACKUP_SEAL_HEAD ? sealed : NULL,
                        off == BACKUP_SEAL_HEAD ? BACKUP_SEAL_HEAD : 0) != 0)
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

int backup_unseal(const uint8_t *sealed, size_t len, const char *passphrase, uint8_t **ret,
                  size_t *ret_len)
{
        uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
        crypto_secretstream_xchacha20poly1305_state st;
        const uint8_t *salt = sealed + BACKUP_MAGIC_LEN;
        uint64_t ops, mem;
        uint8_t *out;
        int r;

        if (len < BACKUP_SEAL_HEAD || memcmp(sealed, BACKUP_SEALED_MAGIC, BACKUP_MAGIC_LEN) != 0)
                return -EBADMSG;
        ops = backup_get_be64(salt + crypto_pwhash_SALTBYTES);
        mem = backup_get_be64(salt + crypto_pwhash_SALTBYTES + 8);
        /* limits from the file: within libsodium's sensitive ones, or a crafted file could ask
         * for any amount of memory */
        if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE ||
            mem < crypto_pwhash_MEMLIMIT_MIN || mem > crypto_pwhash_MEMLIMIT_SENSITIVE)
                return -EBADMSG;
        out = malloc(len);
        if (!out)
                return -ENOMEM;
        r = backup_derive(key, passphrase, salt, ops, mem);
        if (r == 0 &&
            crypto_secretstream_xchacha20poly1305_init_pull(
                &st, sealed + BACKUP_SEAL_HEAD - crypto_secretstream_xchacha20poly1305_HEADERBYTES,
                key) != 0)
                r = -EACCES;
        sodium_memzero(key, sizeof(key));
        r = r ?: backup_unseal_chunks(&st, sealed, len, out, ret_len);
        if (r < 0) {
                sodium_memzero(out, len);
                free(out);
                return r;
        }
        *ret = out;
        return 0;
}
