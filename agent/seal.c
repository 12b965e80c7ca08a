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
        if (syncfs(v->ledger_fd) < 0) /* not fdatasync: see seal_append_lines */
                return -errno;
        v->ledger.ends_clean = true;
        return ledger_push(&v->ledger, e, line, len);
}

/* The lines of a seal's n records, chained (each prev the hash of the line before, the first
 * the ledger's last), appended with one write() and one syncfs; then added in memory. The
 * entries' prev fields are set to what was written. */
static int seal_append_lines(struct vault *v, struct seal_intent *ins, size_t n)
{
        static const uint8_t zero[32];
        char *buf = malloc(n * (LEDGER_LINE_MAX + 1));
        size_t *ends = calloc(n, sizeof(*ends)), len = 0;
        uint8_t prev[32];
        int r = 0;

        if (!buf || !ends) {
                r = -ENOMEM;
                goto cleanup;
        }
        memcpy(prev, v->ledger.n ? v->ledger.last_line_hash : zero, 32);
        for (size_t i = 0; i < n; i++) {
                int m;

                memcpy(ins[i].e.prev, prev, 32);
                m = ledger_entry_format(&ins[i].e, buf + len, LEDGER_LINE_MAX);
                if (m < 0) {
                        r = m;
                        goto cleanup;
                }
                ledger_line_hash(buf + len, (size_t)m, prev);
                len += (size_t)m;
                buf[len++] = '\n';
                ends[i] = len;
        }
        if (agent_fault_hit("torn")) {
                if (write(v->ledger_fd, buf, len / 2 + 1) >= 0)
                        fdatasync(v->ledger_fd);
                agent_fault_die();
        }
        errno = 0;
        if (write(v->ledger_fd, buf, len) != (ssize_t)len) {
                v->ledger.ends_clean = false;
                r = errno ? -errno : -EIO;
                goto cleanup;
        }
        agent_fault_point("appended");
        /* syncfs, not fdatasync: on the test image's vault (ext2, mounted by the ext4 driver
         * without a journal) an fdatasync after an O_APPEND write was seen to leave the old size
         * on disk across a guest power cut (tests/integration/test_e2e_fleet.py, a deposit's
         * line lost while its head and asset survived); syncfs writes the inode table too */
        if (syncfs(v->ledger_fd) < 0) {
                r = -errno;
                goto cleanup;
        }
        v->ledger.ends_clean = true;
        for (size_t i = 0, from = 0; i < n && r == 0; from = ends[i++])
                r = ledger_push(&v->ledger, &ins[i].e, buf + from, ends[i] - from - 1);
cleanup:
        free(buf);
        free(ends);
        return r;
}

int seal_store_head(struct vault *v)
{
        struct sth s;

        return vault_sign_sth(v, clock_realtime_ms(), true, &s);
}

/* Read-only and immutable where allowed; not yet durable (the caller syncs). */
static void seal_protect_mark(int fd, struct ledger_entry *e)
{
        /* the agent's own, read-only; best effort (unprivileged, the record is already ours
         * or verification names it) */
        (void)!fchown(fd, geteuid(), getegid());
        fchmod(fd, 0444);
        e->protect = vault_set_flag(fd, FS_IMMUTABLE_FL) == 0 ? LEDGER_PROTECT_IMMUTABLE
                                                              : LEDGER_PROTECT_READ_ONLY;
}

int seal_protect(int fd, struct ledger_entry *e)
{
        seal_protect_mark(fd, e);
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

/* The records of one seal: hashed, their inbox files open, their entries planned with
 * consecutive sequence numbers. */
struct seal_batch {
        struct seal_intent *ins;
        int *fds;
        size_t n, max;
        uint8_t prev[32]; /* the planned hash of the last planned line */
};

static int seal_batch_init(struct seal_batch *b, const struct vault *v, size_t max)
{
        static const uint8_t zero[32];

        memset(b, 0, sizeof(*b));
        b->ins = calloc(max, sizeof(*b->ins));
        b->fds = calloc(max, sizeof(*b->fds));
        if (!b->ins || !b->fds) {
                free(b->ins);
                free(b->fds);
                return -ENOMEM;
        }
        b->max = max;
        memcpy(b->prev, v->ledger.n ? v->ledger.last_line_hash : zero, 32);
        return 0;
}

/* Closes the files; the batch is empty again (planning continues from the ledger). */
static void seal_batch_clear(struct seal_batch *b, const struct vault *v)
{
        static const uint8_t zero[32];

        for (size_t i = 0; i < b->n; i++)
                close(b->fds[i]);
        b->n = 0;
        memcpy(b->prev, v->ledger.n ? v->ledger.last_line_hash : zero, 32);
}

static void seal_batch_done(struct seal_batch *b, const struct vault *v)
{
        seal_batch_clear(b, v);
        free(b->ins);
        free(b->fds);
}

/* The durable part of a seal of n records, in the order recovery relies on (docs/agent.md, "Crash
 * safety"): every record's content is on disk (one syncfs), the intent naming all of them is on
 * disk, the moves and protections are on disk (one syncfs), the ledger lines are on disk (one
 * write, one syncfs), the head covering them is on disk, and only then is the intent removed.
 * A kill between any two steps leaves a state recover.c completes or abandons. Returns the
 * records sealed (a move that fails ends the seal at that record: the rest stay in the inbox),
 * or <0 when none was. */
static ssize_t seal_commit(struct vault *v, struct seal_batch *b, int *ret_move_err)
{
        size_t n = b->n;
        int r;

        *ret_move_err = 0;
        if (syncfs(v->inbox_fd) < 0)
                return -errno;
        r = intent_store(v->state_fd, b->ins, n, v->sk);
        if (r < 0)
                return r;
        v->intent_pending = true;
        agent_fault_point("intent");
        for (size_t i = 0; i < n; i++) {
                if (renameat2(v->inbox_fd, b->ins[i].inbox, v->assets_fd, b->ins[i].e.path + 7,
                              RENAME_NOREPLACE) < 0) {
                        *ret_move_err = -errno;
                        n = i;
                        break;
                }
                agent_fault_point("renamed");
        }
        if (n == 0) {
                if (intent_remove(v->state_fd) == 0)
                        v->intent_pending = false;
                return *ret_move_err;
        }
        for (size_t i = 0; i < n; i++) {
                seal_protect_mark(b->fds[i], &b->ins[i].e);
                agent_fault_point("protected");
        }
        if (syncfs(v->assets_fd) < 0)
                return -errno;
        r = seal_append_lines(v, b->ins, n);
        if (r < 0)
                return r;
        agent_fault_point("synced");
        /* the head covers the lines before the intent goes: after a crash in between, recovery
         * finds the intent's lines just past the head and signs them; no other line ever is */
        r = seal_store_head(v);
        if (r < 0)
                return r;
        r = intent_remove(v->state_fd);
        if (r < 0)
                return r;
        v->intent_pending = false;
        agent_fault_point("done");
        return (ssize_t)n;
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

/* Adds one record to the batch: 0 added, 1 skipped (not ready or not eligible), <0 failed.
 * plan_name names the asset (and the superseded record); x (may be NULL) is the hash the content
 * must have: -EBADMSG before anything is stored when it differs. */
static int seal_add(struct vault *v, struct seal_batch *b, const char *name, const char *plan_name,
                    uint64_t max_bytes, const struct seal_expect *x)
{
        const uint8_t *expect = x ? x->hash : NULL;
        struct seal_intent *in = &b->ins[b->n];
        struct ledger_entry *e = &in->e;
        char line[LEDGER_LINE_MAX + 1];
        struct stat st, st2;
        uint64_t size = 0;
        int fd, r, len;

        if (b->n == b->max || strlen(name) > 255)
                return 1;
        fd = openat(v->inbox_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return 1;
        r = 1;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
            (uint64_t)st.st_size > max_bytes || seal_writer_open(fd))
                goto fail;
        memset(in, 0, sizeof(*in));
        r = seal_hash(fd, &st, x, e->hash, &size);
        if (r < 0)
                goto fail;
        r = 1;
        if (fstat(fd, &st2) < 0 || st2.st_size != st.st_size || (uint64_t)st.st_size != size ||
            st2.st_mtim.tv_sec != st.st_mtim.tv_sec || st2.st_mtim.tv_nsec != st.st_mtim.tv_nsec)
                goto fail;
        if (expect && sodium_memcmp(expect, e->hash, AGENT_HASH_LEN) != 0) {
                r = -EBADMSG;
                goto fail;
        }
        e->seq = v->ledger.next_seq + b->n;
        e->size = size;
        clock_format_rfc3339(clock_realtime_ms(), e->time, sizeof(e->time));
        memcpy(e->prev, b->prev, 32);
        seal_plan(v, plan_name, e);
        e->protect = LEDGER_PROTECT_IMMUTABLE; /* the plan; the move decides */
        len = ledger_entry_format(e, line, sizeof(line) - 1);
        if (len < 0) {
                r = len;
                goto fail;
        }
        ledger_line_hash(line, (size_t)len, b->prev);
        snprintf(in->inbox, sizeof(in->inbox), "%s", name);
        b->fds[b->n++] = fd;
        agent_fault_point("hashed");
        return 0;
fail:
        close(fd);
        return r;
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
        struct seal_batch b;
        ssize_t n;
        int r = seal_ready(v, NULL), move_err;

        if (r < 0)
                return r;
        r = seal_batch_init(&b, v, 1);
        if (r < 0)
                return r;
        r = seal_add(v, &b, inbox_name, plan_name, max_bytes, expect);
        if (r == 0) {
                n = seal_commit(v, &b, &move_err);
                r = n < 0 ? (int)n : 0;
                if (r == 0 && ret)
                        *ret = b.ins[0].e;
        }
        seal_batch_done(&b, v);
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

/* Commits the batch; counts and logs what happened to its records. */
static void seal_flush(struct vault *v, struct seal_batch *b, struct seal_result *ret,
                       struct mismatch_list *log)
{
        int move_err = 0;
        ssize_t n;

        if (b->n == 0)
                return;
        n = seal_commit(v, b, &move_err);
        if (n < 0) {
                ret->failed += b->n;
                for (size_t i = 0; log && i < b->n; i++)
                        mismatch_add(log, "seal-failed", b->ins[i].inbox, "%s", strerror((int)-n));
        } else {
                ret->sealed += (size_t)n;
                if ((size_t)n < b->n) { /* the move that failed; the rest stay for next time */
                        ret->failed++;
                        ret->skipped += b->n - (size_t)n - 1;
                        if (log)
                                mismatch_add(log, "seal-failed", b->ins[n].inbox, "%s",
                                             strerror(-move_err));
                }
        }
        seal_batch_clear(b, v);
}

int seal_scan_inbox(struct vault *v, uint64_t max_bytes, struct seal_result *ret,
                    struct mismatch_list *log)
{
        struct seal_batch b;
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
        r = seal_batch_init(&b, v, v->seal_batch ? v->seal_batch : 1);
        for (size_t i = 0; i < n; i++) {
                /* a seal that failed after storing its intent stops the pass: the next pass
                 * resolves it before the sequence numbers are used again */
                int s = r == 0 && v->ledger.ends_clean && !v->intent_pending
                            ? seal_add(v, &b, names[i], names[i], max_bytes, NULL)
                            : 1;

                if (s > 0)
                        ret->skipped++;
                else if (s < 0) {
                        ret->failed++;
                        if (log)
                                mismatch_add(log, "seal-failed", names[i], "%s", strerror(-s));
                }
                if (r == 0 && (b.n == b.max || i + 1 == n))
                        seal_flush(v, &b, ret, log);
                free(names[i]);
        }
        free(names);
        if (r == 0)
                seal_batch_done(&b, v);
        return r;
}
