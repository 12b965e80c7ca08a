/* Backups of fleetd's state (backup.h). The database is copied with SQLite's online backup API
 * from a read-only connection of its own: in WAL mode that connection reads one committed
 * snapshot while fleetd's writers go on, so a confirmation is in the copy whole or not at all.
 * The copy is opened and its audit chain verified before it is shipped. The other files are the
 * state directory's regular files (keys, their public halves, the audit checkpoint); its
 * directories (images/, the staged base images; diode/, unlinked spool files) are left out and
 * named in the manifest.
 *
 * Archive: BACKUP_MAGIC, the manifest's length (4 bytes, big-endian), the manifest (JSON), each
 * file's bytes in manifest order, and SHA-256 over everything before it. A sealed archive is
 * BACKUP_SEALED_MAGIC, the Argon2id salt and limits, a secretstream header, then chunks (4-byte
 * length, ciphertext) of the plain archive, the last one tagged FINAL. */
#include "fleetd/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

#define BACKUP_CHUNK  (64u * 1024)
#define BACKUP_DB_MAX (1024ull * 1024 * 1024)

struct backup_file {
        char name[BACKUP_NAME_MAX + 1];
        uint8_t *data; /* owned */
        size_t size;
};

struct backup_set {
        struct backup_file files[BACKUP_FILES_MAX];
        size_t n;
        json_t *left_out; /* [{name, why}] */
};

static void backup_set_done(struct backup_set *b)
{
        for (size_t i = 0; i < b->n; i++)
                free(b->files[i].data);
        json_decref(b->left_out);
}

static int backup_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        uint8_t *buf = NULL;
        int r = 0;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > max) {
                r = -EFBIG;
                goto cleanup;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto cleanup;
        }
        if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
                r = -EIO;
                goto cleanup;
        }
        *ret = buf;
        *ret_len = (size_t)st.st_size;
        buf = NULL;
cleanup:
        free(buf);
        close(fd);
        return r;
}

/* Copies dir/fleetd.db into tmpdir/fleetd.db through a read-only connection of its own. */
static int backup_copy_db(const char *dir, const char *tmpdir)
{
        char src_path[4400], dst_path[4400];
        sqlite3 *src = NULL, *dst = NULL;
        sqlite3_backup *b;
        int r = -EIO;

        snprintf(src_path, sizeof(src_path), "%s/%s", dir, STORE_FILE);
        snprintf(dst_path, sizeof(dst_path), "%s/%s", tmpdir, STORE_FILE);
        if (sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            sqlite3_open_v2(dst_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
                SQLITE_OK)
                goto cleanup;
        sqlite3_busy_timeout(src, 5000);
        b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b)
                goto cleanup;
        /* one step: the whole database from one read transaction, so one snapshot */
        r = sqlite3_backup_step(b, -1) == SQLITE_DONE ? 0 : -EIO;
        if (sqlite3_backup_finish(b) != SQLITE_OK)
                r = -EIO;
cleanup:
        sqlite3_close(dst);
        sqlite3_close(src);
        if (r == 0)
                chmod(dst_path, 0600);
        return r;
}

/* Opens the copy as fleetd would and verifies its chain: the count and fleet id go into the
 * manifest. The copy is then read back as one file (journal mode DELETE: no -wal beside it). */
static int backup_check_copy(const char *tmpdir, json_t *manifest, char *err, size_t errsize)
{
        struct store *s = NULL;
        char fleet_id[128] = "";
        uint64_t n = 0;
        int r = store_open(tmpdir, &s);

        if (r < 0) {
                snprintf(err, errsize, "cannot open the copy of the database: %s", strerror(-r));
                return r;
        }
        r = audit_verify(s, &n, err, errsize);
        if (r == 0 && store_meta_get(s, "fleet_id", fleet_id, sizeof(fleet_id)) == 0)
                json_object_set_new(manifest, "store_fleet_id", json_string(fleet_id));
        if (r == 0 &&
            sqlite3_exec(s->db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
                snprintf(err, errsize, "cannot take the copy out of WAL mode");
                r = -EIO;
        }
        json_object_set_new(manifest, "audit_entries", json_integer((json_int_t)n));
        store_close(s);
        return r;
}

static bool backup_name_is_db(const char *name)
{
        return strncmp(name, STORE_FILE, strlen(STORE_FILE)) == 0;
}

/* The state directory's own files: every regular file but the database and its journals. */
static int backup_collect(const char *dir, struct backup_set *b, char *err, size_t errsize)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        int r = 0;

        if (!d) {
                snprintf(err, errsize, "cannot read the state directory '%s': %s", dir,
                         strerror(errno));
                return -errno;
        }
        while (r == 0 && (e = readdir(d))) {
                char path[4400];
                struct stat st;
                struct backup_file *bf;

                size_t len = strlen(e->d_name);

                /* hidden files, the database and its journals, and small_file.c's half-written
                 * ".tmp" files (renamed over the real one when complete) */
                if (e->d_name[0] == '.' || backup_name_is_db(e->d_name) ||
                    (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0))
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (lstat(path, &st) < 0)
                        continue;
                if (!S_ISREG(st.st_mode) || strlen(e->d_name) > BACKUP_NAME_MAX ||
                    (uint64_t)st.st_size > BACKUP_SMALL_MAX || b->n == BACKUP_FILES_MAX - 1) {
                        json_array_append_new(
                            b->left_out,
                            json_pack("{s:s, s:s}", "name", e->d_name, "why",
                                      S_ISDIR(st.st_mode) ? "a directory (see docs/operations.md)"
                                      : !S_ISREG(st.st_mode) ? "not a regular file"
                                                             : "too large or too many files"));
                        continue;
                }
                bf = &b->files[b->n];
                snprintf(bf->name, sizeof(bf->name), "%s", e->d_name);
                r = backup_read_file(path, BACKUP_SMALL_MAX, &bf->data, &bf->size);
                if (r < 0)
                        snprintf(err, errsize, "cannot read '%s': %s", path, strerror(-r));
                else
                        b->n++;
        }
        closedir(d);
        return r;
}

static json_t *backup_file_entry(const struct backup_file *bf)
{
        uint8_t h[crypto_hash_sha256_BYTES];
        char hex[2 * sizeof(h) + 1];

        crypto_hash_sha256(h, bf->data, bf->size);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        return json_pack("{s:s, s:I, s:s}", "name", bf->name, "size", (json_int_t)bf->size,
                         "sha256", hex);
}

static int backup_put(int fd, crypto_hash_sha256_state *h, const void *p, size_t n)
{
        const uint8_t *q = p;

        crypto_hash_sha256_update(h, q, n);
        while (n > 0) {
                ssize_t w = write(fd, q, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                q += w;
                n -= (size_t)w;
        }
        return 0;
}

static int backup_emit(int fd, json_t *manifest, const struct backup_set *b)
{
        crypto_hash_sha256_state h;
        uint8_t len_be[4], digest[crypto_hash_sha256_BYTES];
        char *text = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
        size_t n = text ? strlen(text) : 0;
        int r = text && n <= BACKUP_MANIFEST_MAX ? 0 : -EMSGSIZE;

        crypto_hash_sha256_init(&h);
        len_be[0] = (uint8_t)(n >> 24);
        len_be[1] = (uint8_t)(n >> 16);
        len_be[2] = (uint8_t)(n >> 8);
        len_be[3] = (uint8_t)n;
        r = r ?: backup_put(fd, &h, BACKUP_MAGIC, BACKUP_MAGIC_LEN);
        r = r ?: backup_put(fd, &h, len_be, 4);
        r = r ?: backup_put(fd, &h, text, n);
        for (size_t i = 0; r == 0 && i < b->n; i++)
                r = backup_put(fd, &h, b->files[i].data, b->files[i].size);
        crypto_hash_sha256_final(&h, digest);
        r = r ?: backup_put(fd, &h, digest, sizeof(digest));
        free(text);
        return r;
}

static void backup_rm_tmp(const char *tmpdir)
{
        char path[4400];
        static const char *const names[] = {STORE_FILE, STORE_FILE "-wal", STORE_FILE "-shm",
                                            STORE_FILE "-journal"};

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
                unlink(path);
        }
        rmdir(tmpdir);
}

int backup_write(struct fleetd *f, int fd, char *err, size_t errsize)
{
        struct backup_set b = {.left_out = json_array()};
        char tmpdir[4200], db_path[4300];
        json_t *manifest = NULL, *files;
        int r;

        snprintf(tmpdir, sizeof(tmpdir), "%s/.backup-XXXXXX", f->cfg.state_dir);
        if (!mkdtemp(tmpdir)) {
                snprintf(err, errsize, "cannot make a directory in '%s': %s", f->cfg.state_dir,
                         strerror(errno));
                json_decref(b.left_out);
                return -errno;
        }
        pthread_mutex_lock(&f->lock);
        manifest =
            json_pack("{s:i, s:s, s:s, s:i, s:s, s:I}", "v", 1, "kind", "totebox-fleetd-backup",
                      "fleet_id", f->table.roster->fleet_id, "schema", STORE_SCHEMA_VERSION,
                      "fleetd", TOTEBOX_VERSION, "created_ms", (json_int_t)clock_realtime_ms());
        pthread_mutex_unlock(&f->lock);
        /* the other files first: the audit checkpoint file must not be newer than the copy of
         * the record (fleetd refuses to start on a record shorter than its checkpoint), and one
         * read before the snapshot is older or the same */
        b.n = 1; /* files[0] is the database, read below */
        snprintf(b.files[0].name, sizeof(b.files[0].name), "%s", STORE_FILE);
        r = backup_collect(f->cfg.state_dir, &b, err, errsize);
        if (r == 0 && (r = backup_copy_db(f->cfg.state_dir, tmpdir)) < 0)
                snprintf(err, errsize, "cannot copy the state database");
        r = r ?: backup_check_copy(tmpdir, manifest, err, errsize);
        snprintf(db_path, sizeof(db_path), "%s/%s", tmpdir, STORE_FILE);
        if (r == 0) {
                r = backup_read_file(db_path, BACKUP_DB_MAX, &b.files[0].data, &b.files[0].size);
                if (r < 0)
                        snprintf(err, errsize, "cannot read the copy: %s", strerror(-r));
        }
        files = json_array();
        for (size_t i = 0; r == 0 && i < b.n; i++)
                json_array_append_new(files, backup_file_entry(&b.files[i]));
        json_object_set_new(manifest, "files", files);
        json_object_set(manifest, "left_out", b.left_out);
        if (r == 0) {
                r = backup_emit(fd, manifest, &b);
                if (r < 0)
                        snprintf(err, errsize, "cannot write the archive: %s", strerror(-r));
        }
        json_decref(manifest);
        backup_set_done(&b);
        backup_rm_tmp(tmpdir);
        return r;
}

void api_backup_get(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        char err[512] = "";
        struct stat st;
        int fd = open(f->cfg.state_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        int r = fd < 0 ? -errno : backup_write(f, fd, err, sizeof(err));

        if (r == 0 && (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0))
                r = -errno;
        if (r < 0) {
                log_error("backup for '%s' failed: %s", req->actor, err[0] ? err : strerror(-r));
                api_problem(resp, 500, "backup-failed", "the backup failed: %s",
                            err[0] ? err : strerror(-r));
                if (fd >= 0)
                        close(fd);
                return;
        }
        log_info("backup of %llu bytes taken by '%s'", (unsigned long long)st.st_size, req->actor);
        audit_append(f->store, false, "fleetd.backup", "", req->actor,
                     json_pack("{s:I}", "bytes", (json_int_t)st.st_size));
        resp->status = 200;
        resp->has_file = true;
        resp->file_fd = fd;
        resp->file_len = (uint64_t)st.st_size;
        resp->content_type = "application/vnd.totebox.fleetd-backup";
}

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
                uint8_t h[crypto_hash_sha256_BYTES];
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
                crypto_hash_sha256(h, be->data, be->size);
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
        uint8_t digest[crypto_hash_sha256_BYTES];
        size_t mlen, end;
        int r;

        if (len < BACKUP_MAGIC_LEN + 4 + sizeof(digest) ||
            memcmp(buf, BACKUP_MAGIC, BACKUP_MAGIC_LEN) != 0) {
                snprintf(err, errsize, "not a fleetd backup (or cut short before its manifest)");
                return -EBADMSG;
        }
        end = len - sizeof(digest);
        crypto_hash_sha256(digest, buf, end);
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
