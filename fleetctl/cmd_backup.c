/* fleetctl backup FILE: fetches GET /v1/backup, checks the archive, optionally seals it with a
 * passphrase, and writes it 0600 (never over an existing file). fleetctl restore FILE: opens
 * (unseals) and checks an archive, writes it into a new directory beside the state directory,
 * checks the database there as fleetd would (integrity_check, schema version, the audit chain,
 * the fleet id against the roster), and only then renames it into place: a refused restore
 * leaves nothing behind. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/http_body.h"
#include "common/pwseal.h"
#include "common/roster.h"
#include "common/small_file.h"
#include "fleetctl/fleetctl.h"
#include "fleetd/backup.h"
#include "fleetd/store.h"

#define CTL_BACKUP_MAX (1024u * 1024 * 1024)

/* GET path into d; the HTTP status, or -1 (printed) when fleetd cannot be reached. */
static long ctl_download(struct ctl *c, const char *path, struct http_answer *d)
{
        struct curl_slist *h = NULL;
        CURL *e = curl_easy_init();
        long status = -1;
        CURLcode rc = ctl_curl_target(c, e, path, &h);

        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 600L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_answer_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, d);
        rc = rc ?: curl_easy_perform(e);
        if (rc == CURLE_OK)
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        else
                fprintf(stderr, "fleetctl: cannot reach fleetd at '%s': %s\n", c->url,
                        d->body.too_large ? "the backup exceeds 1 GiB" : curl_easy_strerror(rc));
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        return status;
}

/* The passphrase from --passphrase-file (its first line); NULL with a message on error. */
static char *ctl_passphrase(const struct ctl *c)
{
        char *pass = NULL;
        int r = pwseal_passphrase_load(c->passphrase_file, &pass);

        if (r == -EINVAL)
                fprintf(stderr, "fleetctl: the passphrase in '%s' is shorter than %d characters\n",
                        c->passphrase_file, PWSEAL_PASS_MIN);
        else if (r < 0)
                fprintf(stderr, "fleetctl: cannot read the passphrase file '%s': %s\n",
                        c->passphrase_file, strerror(-r));
        return r < 0 ? NULL : pass;
}

static int ctl_write_new(const char *path, const uint8_t *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        size_t off = 0;
        int r = 0;

        if (fd < 0)
                return -errno;
        while (r == 0 && off < len) {
                ssize_t w = write(fd, data + off, len - off);

                if (w <= 0)
                        r = w < 0 ? -errno : -EIO;
                else
                        off += (size_t)w;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r < 0)
                unlink(path);
        return r;
}

int ctl_cmd_backup(struct ctl *c)
{
        struct http_answer dl = {.limit = CTL_BACKUP_MAX};
        struct http_body *d = &dl.body;
        struct backup_archive a = {0};
        uint8_t *sealed = NULL;
        size_t sealed_len = 0;
        char err[512], *pass = NULL;
        long status;
        int r = 1;

        if (c->argc != 1) {
                fprintf(stderr, "usage: fleetctl backup FILE [--passphrase-file F]\n");
                return 2;
        }
        if (sodium_init() < 0)
                return 1;
        if (c->passphrase_file && !(pass = ctl_passphrase(c)))
                return 1;
        if (access(c->argv[0], F_OK) == 0) {
                fprintf(stderr, "fleetctl: '%s' exists; a backup never overwrites a file\n",
                        c->argv[0]);
                goto cleanup;
        }
        status = ctl_download(c, "/v1/backup", &dl);
        if (status < 0) {
                r = 3;
                goto cleanup;
        }
        if (status != 200) {
                json_t *p = d->data ? json_loadb(d->data, d->len, 0, NULL) : NULL;

                r = ctl_problem(c, status, p);
                json_decref(p);
                goto cleanup;
        }
        if (backup_parse((const uint8_t *)d->data, d->len, &a, err, sizeof(err)) < 0) {
                fprintf(stderr, "fleetctl: fleetd's answer is no valid backup: %s\n", err);
                goto cleanup;
        }
        if (pass && pwseal_seal(BACKUP_SEALED_MAGIC, NULL, 0, (const uint8_t *)d->data, d->len,
                                pass, &pwseal_moderate, &sealed, &sealed_len) < 0) {
                fprintf(stderr, "fleetctl: cannot seal the backup (out of memory?)\n");
                goto cleanup;
        }
        r = ctl_write_new(c->argv[0], sealed ? sealed : (const uint8_t *)d->data,
                          sealed ? sealed_len : d->len);
        if (r < 0) {
                fprintf(stderr, "fleetctl: cannot write '%s': %s\n", c->argv[0], strerror(-r));
                r = 1;
                goto cleanup;
        }
        printf("backup of fleet '%s' (schema %lld, %lld audit entries, %zu files) written to "
               "'%s'%s\n",
               json_string_value(json_object_get(a.manifest, "fleet_id")),
               (long long)json_integer_value(json_object_get(a.manifest, "schema")),
               (long long)json_integer_value(json_object_get(a.manifest, "audit_entries")),
               a.n_files, c->argv[0],
               sealed ? ", sealed with the passphrase"
                      : "; it holds fleetd's keys: keep it as secret as the state directory");
        r = 0;
cleanup:
        backup_archive_done(&a);
        http_body_done(d);
        free(sealed);
        if (pass)
                sodium_free(pass);
        return r;
}

/* Reads FILE and, when it is sealed, opens it with the passphrase: the plain archive. */
static int ctl_restore_open(const struct ctl *c, uint8_t **ret, size_t *ret_len)
{
        struct stat st;
        uint8_t *buf = NULL, *plain = NULL;
        size_t plain_len = 0;
        char *pass = NULL;
        FILE *fp = fopen(c->argv[0], "re");
        int r = 0;

        if (!fp || fstat(fileno(fp), &st) < 0 || st.st_size > CTL_BACKUP_MAX ||
            !(buf = malloc((size_t)st.st_size + 1)) ||
            fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
                fprintf(stderr, "fleetctl: cannot read '%s': %s\n", c->argv[0],
                        fp ? "too large or unreadable" : strerror(errno));
                r = -EIO;
                goto cleanup;
        }
        if ((size_t)st.st_size < BACKUP_MAGIC_LEN ||
            memcmp(buf, BACKUP_SEALED_MAGIC, BACKUP_MAGIC_LEN) != 0) {
                *ret = buf;
                *ret_len = (size_t)st.st_size;
                buf = NULL;
                goto cleanup;
        }
        if (!c->passphrase_file) {
                fprintf(stderr,
                        "fleetctl: '%s' is sealed with a passphrase: give "
                        "--passphrase-file\n",
                        c->argv[0]);
                r = -EACCES;
                goto cleanup;
        }
        pass = ctl_passphrase(c);
        r = pass ? pwseal_open(BACKUP_SEALED_MAGIC, NULL, 0, buf, (size_t)st.st_size, pass, &plain,
                               &plain_len)
                 : -EINVAL;
        if (r == -EACCES)
                fprintf(stderr,
                        "fleetctl: cannot open '%s': wrong passphrase, or the file is "
                        "damaged\n",
                        c->argv[0]);
        else if (r == -EBADMSG)
                fprintf(stderr,
                        "fleetctl: cannot open '%s': the sealed file is cut short or "
                        "malformed\n",
                        c->argv[0]);
        if (r == 0) {
                *ret = plain;
                *ret_len = plain_len;
        }
cleanup:
        if (fp)
                fclose(fp);
        free(buf);
        if (pass)
                sodium_free(pass);
        return r;
}

static int ctl_restore_write(const char *dir, const struct backup_archive *a)
{
        for (size_t i = 0; i < a->n_files; i++) {
                char *path = small_file_path(dir, a->files[i].name);
                int r = path ? ctl_write_new(path, a->files[i].data, a->files[i].size) : -ENOMEM;

                if (r < 0)
                        fprintf(stderr, "fleetctl: cannot write '%s/%s': %s\n", dir,
                                a->files[i].name, strerror(-r));
                free(path);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int ctl_restore_integrity(const char *dir)
{
        char *path = small_file_path(dir, STORE_FILE);
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int r = -EBADMSG;

        if (path && sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0)
                r = 0;
        if (r < 0)
                fprintf(stderr,
                        "fleetctl: the backup's database fails SQLite's integrity check: "
                        "%s\n",
                        st && sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0)
                                                         : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        sqlite3_close(db);
        free(path);
        return r;
}

/* The database in dir as fleetd will open it: its version, its chain, its fleet. */
static int ctl_restore_check(const struct ctl *c, const char *dir, const struct backup_archive *a)
{
        const char *fleet = json_string_value(json_object_get(a->manifest, "fleet_id"));
        json_t *want_n = json_object_get(a->manifest, "audit_entries");
        struct store *s = NULL;
        char err[512], held[128];
        uint64_t n = 0;
        int v = -1, r = ctl_restore_integrity(dir);

        r = r ?: store_file_version(dir, &v);
        if (r == 0 && v > STORE_SCHEMA_VERSION) {
                fprintf(stderr,
                        "fleetctl: the backup's schema version %d is newer than this "
                        "fleetctl knows (%d): restore it with the fleetd release that "
                        "made it\n",
                        v, STORE_SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        if (c->roster_file) {
                char rerr[256];
                struct roster *ro = roster_load_file(c->roster_file, rerr, sizeof(rerr));

                if (!ro) {
                        fprintf(stderr, "fleetctl: cannot read the roster '%s': %s\n",
                                c->roster_file, rerr);
                        return -EINVAL;
                }
                if (strcmp(ro->fleet_id, fleet) != 0) {
                        fprintf(stderr,
                                "fleetctl: the backup is of fleet '%s' but the roster "
                                "'%s' names fleet '%s'; refused\n",
                                fleet, c->roster_file, ro->fleet_id);
                        r = -EXDEV;
                }
                roster_free(ro);
        }
        r = r ?: store_open(dir, &s);
        if (r == 0 && audit_verify(s, &n, err, sizeof(err)) < 0) {
                fprintf(stderr, "fleetctl: the backup's audit record does not verify: %s\n", err);
                r = -EBADMSG;
        }
        if (r == 0 && json_is_integer(want_n) && (json_int_t)n < json_integer_value(want_n)) {
                fprintf(stderr,
                        "fleetctl: the backup's audit record holds %llu entries, its "
                        "manifest %lld\n",
                        (unsigned long long)n, (long long)json_integer_value(want_n));
                r = -EBADMSG;
        }
        if (r == 0 && store_meta_get(s, "fleet_id", held, sizeof(held)) == 0 &&
            strcmp(held, fleet) != 0) {
                fprintf(stderr,
                        "fleetctl: the backup's database belongs to fleet '%s', its "
                        "manifest says '%s'\n",
                        held, fleet);
                r = -EXDEV;
        }
        if (r == 0)
                printf("restored fleet '%s': schema %d, %llu audit entries verified, %zu files\n",
                       fleet, v, (unsigned long long)n, a->n_files);
        store_close(s);
        return r;
}

bool ctl_dir_empty_or_absent(const char *dir, bool remove)
{
        struct stat st;
        DIR *d;
        struct dirent *e;
        bool empty = true;

        if (stat(dir, &st) < 0)
                return errno == ENOENT;
        if (!S_ISDIR(st.st_mode) || !(d = opendir(dir)))
                return false;
        while (empty && (e = readdir(d)))
                empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
        closedir(d);
        return empty && (!remove || rmdir(dir) == 0);
}

static void ctl_rm_journals(const char *dir)
{
        static const char *const extra[] = {STORE_FILE "-wal", STORE_FILE "-shm",
                                            STORE_FILE "-journal"};
        for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
                char *path = small_file_path(dir, extra[i]);

                if (path)
                        unlink(path);
                free(path);
        }
}

int ctl_cmd_restore(struct ctl *c)
{
        struct backup_archive a = {0};
        uint8_t *plain = NULL;
        size_t len = 0;
        char err[512], *tmp = NULL;
        int r;

        if (c->argc != 1) {
                fprintf(stderr, "usage: fleetctl restore FILE [--passphrase-file F] [--roster "
                                "FILE] (into --state-dir, which must be empty or absent)\n");
                return 2;
        }
        if (sodium_init() < 0)
                return 1;
        if (!ctl_dir_empty_or_absent(c->state_dir, false)) {
                fprintf(stderr,
                        "fleetctl: the state directory '%s' is not empty: restore only "
                        "into a new controller's empty state directory\n",
                        c->state_dir);
                return 1;
        }
        if (ctl_restore_open(c, &plain, &len) < 0)
                return 1;
        r = backup_parse(plain, len, &a, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "fleetctl: '%s' is refused: %s\n", c->argv[0], err);
                goto cleanup;
        }
        if (asprintf(&tmp, "%s.restore-XXXXXX", c->state_dir) < 0)
                tmp = NULL; /* asprintf leaves it undefined on failure */
        if (!tmp || !mkdtemp(tmp)) {
                r = -errno;
                fprintf(stderr, "fleetctl: cannot make a directory beside '%s': %s\n", c->state_dir,
                        strerror(-r));
                goto cleanup;
        }
        r = ctl_restore_write(tmp, &a);
        r = r ?: ctl_restore_check(c, tmp, &a);
        ctl_rm_journals(tmp); /* the check's journals */
        if (r == 0 && !ctl_dir_empty_or_absent(c->state_dir, true)) {
                fprintf(stderr,
                        "fleetctl: the state directory '%s' is not empty: restore only "
                        "into a new controller's empty state directory\n",
                        c->state_dir);
                r = -EEXIST;
        }
        if (r == 0 && rename(tmp, c->state_dir) < 0) {
                fprintf(stderr, "fleetctl: cannot move the restored state to '%s': %s\n",
                        c->state_dir, strerror(errno));
                r = -errno;
        }
        if (r < 0) {
                for (size_t i = 0; i < a.n_files; i++) {
                        char *path = small_file_path(tmp, a.files[i].name);

                        if (path)
                                unlink(path);
                        free(path);
                }
                rmdir(tmp);
        }
cleanup:
        free(tmp);
        backup_archive_done(&a);
        if (plain) {
                sodium_memzero(plain, len);
                free(plain);
        }
        return r < 0 ? 1 : 0;
}
