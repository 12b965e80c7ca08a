/* Backups of fleetd's state (backup.h). The database is copied with SQLite's online backup API
 * from a read-only connection of its own: in WAL mode that connection reads one committed
 * snapshot while fleetd's writers go on, so a confirmation is in the copy whole or not at all.
 * The copy is opened and its audit chain verified before it is shipped. The other files are the
 * state directory's regular files (keys, their public halves, the audit checkpoint); its
 * directories (images/, the staged base images; diode/, unlinked spool files) are left out and
 * named in the manifest. The archive's format, and sealing: backup_archive.c. */
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
#include "common/sha256.h"
#include "common/small_file.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

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
        char *src_path = small_file_path(dir, STORE_FILE);
        char *dst_path = small_file_path(tmpdir, STORE_FILE);
        sqlite3 *src = NULL, *dst = NULL;
        sqlite3_backup *b;
        int r = -EIO;

        if (!src_path || !dst_path)
                goto cleanup;
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
        free(src_path);
        free(dst_path);
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
                char *path;
                struct stat st;
                struct backup_file *bf;
                size_t len = strlen(e->d_name);
                int lr;

                /* hidden files, the database and its journals, and small_file.c's half-written
                 * ".tmp" files (renamed over the real one when complete) */
                if (e->d_name[0] == '.' || backup_name_is_db(e->d_name) ||
                    (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0))
                        continue;
                path = small_file_path(dir, e->d_name);
                lr = path ? lstat(path, &st) : -1;
                if (lr < 0) {
                        free(path);
                        continue;
                }
                if (!S_ISREG(st.st_mode) || strlen(e->d_name) > BACKUP_NAME_MAX ||
                    (uint64_t)st.st_size > BACKUP_SMALL_MAX || b->n == BACKUP_FILES_MAX - 1) {
                        json_array_append_new(
                            b->left_out,
                            json_pack("{s:s, s:s}", "name", e->d_name, "why",
                                      S_ISDIR(st.st_mode) ? "a directory (see docs/operations.md)"
                                      : !S_ISREG(st.st_mode) ? "not a regular file"
                                                             : "too large or too many files"));
                        free(path);
                        continue;
                }
                bf = &b->files[b->n];
                memcpy(bf->name, e->d_name, strlen(e->d_name) + 1); /* ≤ BACKUP_NAME_MAX */
                r = backup_read_file(path, BACKUP_SMALL_MAX, &bf->data, &bf->size);
                if (r < 0)
                        snprintf(err, errsize, "cannot read '%s': %s", path, strerror(-r));
                else
                        b->n++;
                free(path);
        }
        closedir(d);
        return r;
}

static json_t *backup_file_entry(const struct backup_file *bf)
{
        uint8_t h[SHA256_LEN];
        char hex[2 * sizeof(h) + 1];

        sha256_digest(bf->data, bf->size, h);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        return json_pack("{s:s, s:I, s:s}", "name", bf->name, "size", (json_int_t)bf->size,
                         "sha256", hex);
}

static int backup_put(int fd, struct sha256 *h, const void *p, size_t n)
{
        const uint8_t *q = p;

        sha256_update(h, q, n);
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
        struct sha256 h;
        uint8_t len_be[4], digest[SHA256_LEN];
        char *text = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
        size_t n = text ? strlen(text) : 0;
        int r = text && n <= BACKUP_MANIFEST_MAX ? 0 : -EMSGSIZE;

        sha256_init(&h);
        len_be[0] = (uint8_t)(n >> 24);
        len_be[1] = (uint8_t)(n >> 16);
        len_be[2] = (uint8_t)(n >> 8);
        len_be[3] = (uint8_t)n;
        r = r ?: backup_put(fd, &h, BACKUP_MAGIC, BACKUP_MAGIC_LEN);
        r = r ?: backup_put(fd, &h, len_be, 4);
        r = r ?: backup_put(fd, &h, text, n);
        for (size_t i = 0; r == 0 && i < b->n; i++)
                r = backup_put(fd, &h, b->files[i].data, b->files[i].size);
        sha256_final(&h, digest);
        r = r ?: backup_put(fd, &h, digest, sizeof(digest));
        free(text);
        return r;
}

static void backup_rm_tmp(const char *tmpdir)
{
        static const char *const names[] = {STORE_FILE, STORE_FILE "-wal", STORE_FILE "-shm",
                                            STORE_FILE "-journal"};

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *path = small_file_path(tmpdir, names[i]);

                if (path)
                        unlink(path);
                free(path);
        }
        rmdir(tmpdir);
}

int backup_write(struct fleetd *f, int fd, char *err, size_t errsize)
{
        struct backup_set *b = calloc(1, sizeof(*b)); /* the files' table: not on the stack */
        char *tmpdir = small_file_path(f->cfg.state_dir, ".backup-XXXXXX"), *db_path;
        json_t *manifest = NULL, *files;
        int r;

        if (!b || !tmpdir || !mkdtemp(tmpdir)) {
                r = b && tmpdir ? -errno : -ENOMEM;
                snprintf(err, errsize, "cannot make a directory in '%s': %s", f->cfg.state_dir,
                         strerror(-r));
                free(b);
                free(tmpdir);
                return r;
        }
        b->left_out = json_array();
        pthread_mutex_lock(&f->lock);
        manifest =
            json_pack("{s:i, s:s, s:s, s:i, s:s, s:I}", "v", 1, "kind", "totebox-fleetd-backup",
                      "fleet_id", f->table.roster->fleet_id, "schema", STORE_SCHEMA_VERSION,
                      "fleetd", TOTEBOX_VERSION, "created_ms", (json_int_t)clock_realtime_ms());
        pthread_mutex_unlock(&f->lock);
        /* the other files first: the audit checkpoint file must not be newer than the copy of
         * the record (fleetd refuses to start on a record shorter than its checkpoint), and one
         * read before the snapshot is older or the same */
        b->n = 1; /* files[0] is the database, read below */
        snprintf(b->files[0].name, sizeof(b->files[0].name), "%s", STORE_FILE);
        r = backup_collect(f->cfg.state_dir, b, err, errsize);
        if (r == 0 && (r = backup_copy_db(f->cfg.state_dir, tmpdir)) < 0)
                snprintf(err, errsize, "cannot copy the state database");
        r = r ?: backup_check_copy(tmpdir, manifest, err, errsize);
        db_path = small_file_path(tmpdir, STORE_FILE);
        if (r == 0 && !db_path)
                r = -ENOMEM;
        if (r == 0) {
                r = backup_read_file(db_path, BACKUP_DB_MAX, &b->files[0].data, &b->files[0].size);
                if (r < 0)
                        snprintf(err, errsize, "cannot read the copy: %s", strerror(-r));
        }
        files = json_array();
        for (size_t i = 0; r == 0 && i < b->n; i++)
                json_array_append_new(files, backup_file_entry(&b->files[i]));
        json_object_set_new(manifest, "files", files);
        json_object_set(manifest, "left_out", b->left_out);
        if (r == 0) {
                r = backup_emit(fd, manifest, b);
                if (r < 0)
                        snprintf(err, errsize, "cannot write the archive: %s", strerror(-r));
        }
        json_decref(manifest);
        backup_set_done(b);
        free(b);
        backup_rm_tmp(tmpdir);
        free(db_path);
        free(tmpdir);
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
                api_fail(resp, r, "backup-failed", "the backup failed: %s",
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
