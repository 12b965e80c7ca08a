/* Sealing: a record that has been renamed into app-console-input/ is hashed (BLAKE2b-256, the
 * hash `b2sum -l 256` prints), moved into assets/ under its sequence number, made immutable (or
 * read-only where the file system refuses the flag), and appended to the ledger. Files still
 * being written are left alone: dot-files and names ending in .part or .tmp, files someone holds
 * open for writing (a read lease cannot be taken), and files that change while being hashed. The
 * work per record is O(record size + log n). Each seal is made crash-safe by an intent record
 * stored before the move (intent.c) and completed after a crash by recover.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/clock.h"

static void seal_check_ledger_size(struct vault *v);

#define SEAL_SUFFIX ".supersedes-"

uint64_t seal_parse_supersedes(const char *name, char *ret_name, size_t size)
{
        const char *p = strstr(name, SEAL_SUFFIX);
        const char *digits;
        char *end;
        unsigned long long n;

        snprintf(ret_name, size, "%s", name);
        if (!p)
                return 0;
        while (strstr(p + 1, SEAL_SUFFIX))
                p = strstr(p + 1, SEAL_SUFFIX);
        digits = p + strlen(SEAL_SUFFIX);
        if (*digits < '1' || *digits > '9')
                return 0;
        errno = 0;
        n = strtoull(digits, &end, 10);
        if (*end || errno || n > INT64_MAX)
                return 0;
        if ((size_t)(p - name) < size)
                ret_name[p - name] = '\0';
        return n;
}

static bool seal_name_in_progress(const char *name)
{
        size_t len = strlen(name);

        if (name[0] == '.')
                return true;
        return (len > 5 && strcmp(name + len - 5, ".part") == 0) ||
               (len > 4 && strcmp(name + len - 4, ".tmp") == 0);
}

/* The asset's file name: the sequence number, then the inbox name with anything outside
 * [A-Za-z0-9._-] replaced, so every ledger path is plain ASCII needing no escaping. */
static void seal_asset_name(uint64_t seq, const char *name, char *buf, size_t size)
{
        size_t n = (size_t)snprintf(buf, size, "%08" PRIu64 "-", seq);
        size_t max = LEDGER_PATH_MAX - 7;

        if (max > size - 1)
                max = size - 1;
        for (const char *p = name; *p && n < max; p++) {
                char c = *p;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                buf[n++] = ok ? c : '_';
        }
        buf[n] = '\0';
}

/* Nobody may hold the file open for writing: the kernel refuses a read lease then. */
static bool seal_writer_open(int fd)
{
        if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0)
                return errno == EAGAIN || errno == EBUSY;
        fcntl(fd, F_SETLEASE, F_UNLCK);
        return false;
}

static bool seal_supersedes_known(const struct ledger *l, uint64_t seq)
{
        for (size_t i = l->kept; i-- > 0;)
                if (ledger_seq_at(l, i) == seq)
                        return true;
        return false;
}

int seal_append_line(struct vault *v, const struct ledger_entry *e, const char *line, size_t len,
                     size_t from)
{
        char buf[LEDGER_LINE_MAX + 1];
        size_t n = len - from + 1;

        if (len > LEDGER_LINE_MAX || from > len)
                return -EINVAL;
        memcpy(buf, line + from, len - from);
        buf[len - from] = '\n';
        if (agent_fault_hit("torn")) {
                if (write(v->ledger_fd, buf, n / 2) >= 0)
                        fdatasync(v->ledger_fd);
                agent_fault_die();
        }
        errno = 0;
        if (write(v->ledger_fd, buf, n) != (ssize_t)n) {
                v->ledger.ends_clean = false;
                return errno ? -errno : -EIO;
        }
        v->ledger.file_size -= from; /* counted when loaded; ledger_push adds the whole line */
        agent_fault_point("appended");
        if (fdatasync(v->ledger_fd) < 0)
                return -errno;
        v->ledger.ends_clean = true;
        return ledger_push(&v->ledger, e, line, len);
}

int seal_store_head(struct vault *v)
{
        struct sth s;

        return vault_sign_sth(v, clock_realtime_ms(), true, &s);
}

int seal_protect(int fd, struct ledger_entry *e)
{
        /* the agent's own, read-only; best effort (unprivileged, the record is already ours
         * or verification names it) */
        (void)!fchown(fd, geteuid(), getegid());
        fchmod(fd, 0444);
        e->protect = vault_set_flag(fd, FS_IMMUTABLE_FL) == 0 ? LEDGER_PROTECT_IMMUTABLE
                                                              : LEDGER_PROTECT_READ_ONLY;
        return fsync(fd) < 0 ? -errno : 0;
}

/* Names the asset and the superseded record; fills e's path and supersedes. */
static void seal_plan(const struct vault *v, const char *name, struct ledger_entry *e)
{
        char kept[256], asset[LEDGER_PATH_MAX];

        e->supersedes = seal_parse_supersedes(name, kept, sizeof(kept));
        if (e->supersedes && !seal_supersedes_known(&v->ledger, e->supersedes)) {
                e->supersedes = 0;
                snprintf(kept, sizeof(kept), "%s", name);
        }
        seal_asset_name(e->seq, kept, asset, sizeof(asset));
        snprintf(e->path, sizeof(e->path), "assets/%.*s", LEDGER_PATH_MAX - 7, asset);
}

/* The durable part of a seal, in the order recovery relies on: the content is on disk, the
 * intent is on disk, the move is on disk (both directories), the protection is on disk, the
 * ledger line is on disk, and only then is the intent removed. A kill between any two steps
 * leaves a state recover.c completes or abandons. */
static int seal_commit(struct vault *v, int fd, const char *name, struct ledger_entry *e)
{
        struct seal_intent in = {.e = *e};
        char line[LEDGER_LINE_MAX + 1];
        int r, len;

        if (fdatasync(fd) < 0)
                return -errno;
        agent_fault_point("hashed");
        snprintf(in.inbox, sizeof(in.inbox), "%s", name);
        r = intent_store(v->state_fd, &in, v->sk);
        if (r < 0)
                return r;
        v->intent_pending = true;
        agent_fault_point("intent");
        if (renameat2(v->inbox_fd, name, v->assets_fd, e->path + 7, RENAME_NOREPLACE) < 0) {
                r = -errno;
                if (intent_remove(v->state_fd) == 0)
                        v->intent_pending = false;
                return r;
        }
        if (fsync(v->assets_fd) < 0 || fsync(v->inbox_fd) < 0)
                return -errno;
        agent_fault_point("renamed");
        r = seal_protect(fd, e);
        if (r < 0)
                return r;
        agent_fault_point("protected");
        len = ledger_entry_format(e, line, sizeof(line) - 1);
        if (len < 0)
                return len;
        r = seal_append_line(v, e, line, (size_t)len, 0);
        if (r < 0)
                return r;
        agent_fault_point("synced");
        /* the head covers the line before the intent goes: after a crash in between, recovery
         * finds the intent's line just past the head and signs it; no other line ever is */
        r = seal_store_head(v);
        if (r < 0)
                return r;
        r = intent_remove(v->state_fd);
        if (r == 0)
                v->intent_pending = false;
        agent_fault_point("done");
        return r;
}

/* The content's hash: the one the agent computed as it wrote the file when the file is still
 * that inode (its own 0600 file, one link, no writer now: nobody else can have changed it), else
 * hashed from disk. */
static int seal_hash(int fd, const struct stat *st, const struct seal_expect *x,
                     uint8_t ret[AGENT_HASH_LEN], uint64_t *ret_size)
{
        if (x && x->known && st->st_dev == x->dev && st->st_ino == x->ino &&
            (uint64_t)st->st_size == x->size) {
                memcpy(ret, x->hash, AGENT_HASH_LEN);
                *ret_size = x->size;
                return 0;
        }
        return verify_hash_fd(fd, ret, ret_size);
}

/* 0 sealed, 1 skipped (not ready or not eligible), <0 failed. plan_name names the asset (and
 * the superseded record); x (may be NULL) is the hash the content must have: -EBADMSG before
 * anything is stored when it differs. */
static int seal_one_as(struct vault *v, const char *name, const char *plan_name, uint64_t max_bytes,
                       const struct seal_expect *x, struct ledger_entry *ret)
{
        const uint8_t *expect = x ? x->hash : NULL;
        struct ledger_entry e;
        struct stat st, st2;
        uint64_t size = 0;
        int fd, r;

        fd = openat(v->inbox_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return 1;
        r = 1;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
            (uint64_t)st.st_size > max_bytes || seal_writer_open(fd) || strlen(name) > 255)
                goto cleanup;
        memset(&e, 0, sizeof(e));
        r = seal_hash(fd, &st, x, e.hash, &size);
        if (r < 0)
                goto cleanup;
        r = 1;
        if (fstat(fd, &st2) < 0 || st2.st_size != st.st_size || (uint64_t)st.st_size != size ||
            st2.st_mtim.tv_sec != st.st_mtim.tv_sec || st2.st_mtim.tv_nsec != st.st_mtim.tv_nsec)
                goto cleanup;
        if (expect && sodium_memcmp(expect, e.hash, AGENT_HASH_LEN) != 0) {
                r = -EBADMSG;
                goto cleanup;
        }
        e.seq = v->ledger.next_seq;
        e.size = size;
        clock_format_rfc3339(clock_realtime_ms(), e.time, sizeof(e.time));
        memcpy(e.prev, v->ledger.n ? v->ledger.last_line_hash : (uint8_t[32]){0}, 32);
        seal_plan(v, plan_name, &e);
        r = seal_commit(v, fd, name, &e);
        if (r == 0 && ret)
                *ret = e;
cleanup:
        close(fd);
        return r;
}

static int seal_one(struct vault *v, const char *name, uint64_t max_bytes)
{
        return seal_one_as(v, name, name, max_bytes, NULL, NULL);
}

/* Whether a seal may start: recovery first, then the ledger and its head must allow one. */
static int seal_ready(struct vault *v, struct mismatch_list *log)
{
        if (v->read_only || v->ledger_fd < 0 || v->inbox_fd < 0 || v->state_fd < 0)
                return -EROFS;
        seal_check_ledger_size(v);
        seal_recover(v, log);
        if (!v->ledger.ends_clean)
                return -EUCLEAN;
        if (!v->head_ok)
                return -ENOTRECOVERABLE;
        return v->intent_pending ? -EAGAIN : 0;
}

int seal_named(struct vault *v, const char *inbox_name, const char *plan_name, uint64_t max_bytes,
               const struct seal_expect *expect, struct ledger_entry *ret)
{
        int r = seal_ready(v, NULL);

        if (r < 0)
                return r;
        r = seal_one_as(v, inbox_name, plan_name, max_bytes, expect, ret);
        return r > 0 ? -EBUSY : r;
}

bool seal_supersedes_valid(const struct vault *v, uint64_t seq)
{
        return seal_supersedes_known(&v->ledger, seq);
}

static int seal_cmp_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in the inbox, sorted so that a batch is sealed in a reproducible order. */
static int seal_list_inbox(int inbox_fd, char ***ret, size_t *ret_n)
{
        int fd = openat(inbox_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;

        if (!d) {
                if (fd >= 0)
                        close(fd);
                return -errno;
        }
        while ((de = readdir(d)) && n < 100000) {
                if (seal_name_in_progress(de->d_name))
                        continue;
                if (n == cap) {
                        char **nn = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof(*nn));
                        if (!nn)
                                break;
                        names = nn;
                }
                if (!(names[n] = strdup(de->d_name)))
                        break;
                n++;
        }
        closedir(d);
        if (n > 1)
                qsort(names, n, sizeof(*names), seal_cmp_names);
        *ret = names;
        *ret_n = n;
        return 0;
}

/* Lines appended or cut behind the agent's back while it runs: the ledger file is not the size
 * the agent made it. Sealing on top would cover them with the agent's next head. */
static void seal_check_ledger_size(struct vault *v)
{
        struct stat st;

        if (!v->head_ok || fstat(v->ledger_fd, &st) < 0 ||
            (uint64_t)st.st_size == v->ledger.file_size)
                return;
        v->head_ok = false;
        snprintf(v->head_why, sizeof(v->head_why),
                 "the ledger is %lld bytes on disk but the agent wrote %" PRIu64
                 "; it changed behind the agent's back",
                 (long long)st.st_size, v->ledger.file_size);
}

int seal_scan_inbox(struct vault *v, uint64_t max_bytes, struct seal_result *ret,
                    struct mismatch_list *log)
{
        char **names = NULL;
        size_t n = 0;
        int r;

        memset(ret, 0, sizeof(*ret));
        r = seal_ready(v, log);
        if (r < 0)
                return r;
        r = seal_list_inbox(v->inbox_fd, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                /* a seal that failed after storing its intent stops the batch: the next pass
                 * resolves it before the sequence number is used again */
                int s = v->ledger.ends_clean && !v->intent_pending
                            ? seal_one(v, names[i], max_bytes)
                            : 1;

                if (s == 0)
                        ret->sealed++;
                else if (s > 0)
                        ret->skipped++;
                else {
                        ret->failed++;
                        if (log)
                                mismatch_add(log, "seal-failed", names[i], "%s", strerror(-s));
                }
                free(names[i]);
        }
        free(names);
        return 0;
}
