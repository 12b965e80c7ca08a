/* The backup archive's format (backup.h): parsed and checked, sealed and unsealed. Part of
 * fleetd_shared (fleetd/CMakeLists.txt): fleetctl's restore reads what fleetd's backup.c writes.
 *
 * Archive: BACKUP_MAGIC, the manifest's length (4 bytes, big-endian), the manifest (JSON), each
 * file's bytes in manifest order, and SHA-256 over everything before it. A sealed archive is the
 * plain one sealed by common/pwseal.h under BACKUP_SEALED_MAGIC (fleetctl seals and opens it). */
#include "fleetd/backup.h"

#include <errno.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"
#include "fleetd/store.h"

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
        a->files = calloc(json_array_size(files), sizeof(*a->files));
        if (!a->files) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
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
                backup_archive_done(&a);
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
        free(a->files);
        a->files = NULL;
        a->n_files = 0;
}
