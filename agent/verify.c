/* Full verification: the ledger is re-read from disk (structure, chain, order), compared with
 * what the agent itself sealed, every asset is re-hashed on worker threads (largest first, one
 * per online CPU by default), flags and modes are checked, files nobody recorded are named, and
 * the stored signed tree head, the trusted key and the trusted tree head are checked. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/blake2b_lanes.h"
#include "common/clock.h"

/* One file, on one thread, for a seal and for recovery (full verification uses the lanes). */
int verify_hash_fd(int fd, uint8_t ret[AGENT_HASH_LEN], uint64_t *ret_size)
{
        const size_t bufsize = 256 * 1024;
        uint8_t *buf = malloc(bufsize);
        crypto_generichash_state st;
        uint64_t total = 0;
        ssize_t n;
        int r = 0;

        if (!buf)
                return -ENOMEM;
        crypto_generichash_init(&st, NULL, 0, AGENT_HASH_LEN);
        while ((n = pread(fd, buf, bufsize, (off_t)total)) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto cleanup;
                }
                crypto_generichash_update(&st, buf, (size_t)n);
                total += (uint64_t)n;
        }
        crypto_generichash_final(&st, ret, AGENT_HASH_LEN);
        *ret_size = total;
cleanup:
        free(buf);
        return r;
}

/* One asset to check; filled by a worker, judged by the main thread. */
struct verify_job {
        const struct ledger_record *e;
        const char *path;
        int status; /* 0, or -errno of open/read */
        bool regular;
        mode_t mode;
        uid_t uid;
        gid_t gid;
        nlink_t nlink;
        int flags;
        bool have_flags;
        uint64_t size;
        uint8_t hash[AGENT_HASH_LEN];
};

struct verify_pool {
        struct verify_job *jobs;
        size_t *order;
        size_t n;
        int assets_fd;
        atomic_size_t next;
};

/* A worker hashes B2L_LANES files at once, one per lane of blake2b_lanes.c; each lane streams
 * its file through its own buffer. buf[pos, len) is read but not yet hashed. */
#define VERIFY_LANE_BUF (32 * 1024)

struct verify_lane {
        struct verify_job *job; /* NULL: the lane is idle */
        int fd;
        uint64_t size_hint; /* st_size at fstat */
        uint64_t read;      /* bytes read from the file so far */
        size_t pos, len;
        bool eof;
        uint8_t buf[VERIFY_LANE_BUF];
        uint8_t last[B2L_BLOCK]; /* the zero-padded final block */
};

/* Open the job's asset and note its type, mode and flags; 1 when it is a regular file whose
 * content the lane must now hash, 0 when the job is complete without hashing. */
static int verify_lane_open(struct verify_lane *ln, struct verify_job *j, int assets_fd)
{
        struct stat st;

        ln->fd = openat(assets_fd, j->path + 7, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (ln->fd < 0) {
                j->status = -errno;
                return 0;
        }
        if (fstat(ln->fd, &st) < 0) {
                j->status = -errno;
                goto cleanup;
        }
        j->regular = S_ISREG(st.st_mode);
        j->mode = st.st_mode;
        j->uid = st.st_uid;
        j->gid = st.st_gid;
        j->nlink = st.st_nlink;
        j->have_flags = vault_get_flags(ln->fd, &j->flags) == 0;
        if (!j->regular)
                goto cleanup;
        if ((uint64_t)st.st_size >= VERIFY_LANE_BUF)
                posix_fadvise(ln->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        ln->job = j;
        ln->size_hint = (uint64_t)st.st_size;
        ln->read = 0;
        ln->pos = ln->len = 0;
        ln->eof = false;
        return 1;
cleanup:
        close(ln->fd);
        ln->fd = -1;
        return 0;
}

/* Give an idle lane the next job that has content to hash; false when the pool is empty. */
static bool verify_lane_take(struct verify_pool *p, struct verify_lane *ln, struct b2l_state *s,
                             unsigned lane)
{
        size_t i;

        while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
                if (verify_lane_open(ln, &p->jobs[p->order[i]], p->assets_fd)) {
                        b2l_lane_init(s, lane);
                        return true;
                }
        return false;
}

/* Make sure more than one block is buffered, or the end of the file has been seen: a block may
 * be compressed as non-final only when something follows it. */
static int verify_lane_fill(struct verify_lane *ln)
{
        size_t left = ln->len - ln->pos, want;
        ssize_t n;

        while (!ln->eof && left <= B2L_BLOCK) {
                memmove(ln->buf, ln->buf + ln->pos, left);
                ln->pos = 0;
                ln->len = left;
                want = sizeof(ln->buf) - left;
                n = pread(ln->fd, ln->buf + left, want, (off_t)ln->read);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                ln->read += (uint64_t)n;
                ln->len += (size_t)n;
                left = ln->len;
                /* a regular file read short of the buffer and of its size at fstat has ended;
                 * one more read would return 0 (a file still growing is read on) */
                ln->eof = n == 0 || ((size_t)n < want && ln->read >= ln->size_hint);
        }
        return 0;
}

/* Put the lane's next block into the step: a full block while more follows, else the last. */
static void verify_lane_block(struct verify_lane *ln, struct b2l_step *step, unsigned lane)
{
        size_t left = ln->len - ln->pos;

        if (left > B2L_BLOCK) {
                step->block[lane] = ln->buf + ln->pos;
                step->len[lane] = B2L_BLOCK;
                step->last[lane] = false;
                ln->pos += B2L_BLOCK;
                return;
        }
        memset(ln->last, 0, sizeof(ln->last));
        memcpy(ln->last, ln->buf + ln->pos, left);
        step->block[lane] = ln->last;
        step->len[lane] = (unsigned)left;
        step->last[lane] = true;
        ln->pos += left;
}

static void verify_lane_finish(struct verify_lane *ln, int status)
{
        ln->job->status = status;
        ln->job->size = ln->read;
        close(ln->fd);
        ln->fd = -1;
        ln->job = NULL;
}

/* One step: refill lanes, compress one block of every busy lane, collect finished digests.
 * Returns false when every lane is idle and the pool is empty. */
static bool verify_lanes_step(struct verify_pool *p, struct verify_lane *lanes, struct b2l_state *s)
{
        static const uint8_t idle[B2L_BLOCK];
        struct b2l_step step;
        unsigned busy = 0;

        for (unsigned l = 0; l < B2L_LANES; l++) {
                struct verify_lane *ln = &lanes[l];
                int r;

                while ((ln->job || verify_lane_take(p, ln, s, l)) && (r = verify_lane_fill(ln)) < 0)
                        verify_lane_finish(ln, r);
                if (!ln->job) {
                        step.block[l] = idle;
                        step.len[l] = 0;
                        step.last[l] = false;
                        continue;
                }
                verify_lane_block(ln, &step, l);
                busy++;
        }
        if (!busy)
                return false;
        b2l_compress(s, &step);
        for (unsigned l = 0; l < B2L_LANES; l++)
                if (lanes[l].job && step.last[l]) {
                        b2l_lane_digest(s, l, lanes[l].job->hash);
                        verify_lane_finish(&lanes[l], 0);
                }
        return true;
}

static void *verify_worker(void *arg)
{
        struct verify_pool *p = arg;
        struct verify_lane *lanes = calloc(B2L_LANES, sizeof(*lanes));
        struct b2l_state s = {0}; /* idle lanes compress whatever their state holds */
        size_t i;

        if (!lanes) {
                while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
                        p->jobs[p->order[i]].status = -ENOMEM;
                return NULL;
        }
        while (verify_lanes_step(p, lanes, &s))
                ;
        free(lanes);
        return NULL;
}

static int verify_cmp_size(const void *a, const void *b, void *arg)
{
        const struct verify_job *jobs = arg;
        uint64_t x = jobs[*(const size_t *)a].e->size;
        uint64_t y = jobs[*(const size_t *)b].e->size;

        return x > y ? -1 : x < y;
}

static int verify_run_pool(struct verify_pool *p, unsigned threads)
{
        pthread_t *tids;
        unsigned started = 0;

        if (threads == 0) {
                long c = sysconf(_SC_NPROCESSORS_ONLN);
                threads = c > 0 ? (unsigned)c : 1;
        }
        if (threads > 256)
                threads = 256;
        if (threads > p->n)
                threads = p->n ? (unsigned)p->n : 1;
        for (size_t i = 0; i < p->n; i++)
                p->order[i] = i;
        qsort_r(p->order, p->n, sizeof(*p->order), verify_cmp_size, p->jobs);
        atomic_store(&p->next, 0);
        tids = calloc(threads, sizeof(*tids));
        /* without memory for them, no more threads: this one hashes everything, as when
         * pthread_create fails */
        for (unsigned t = 1; tids && t < threads; t++)
                if (pthread_create(&tids[started], NULL, verify_worker, p) == 0)
                        started++;
        verify_worker(p);
        for (unsigned t = 0; t < started; t++)
                pthread_join(tids[t], NULL);
        free(tids);
        return 0;
}

/* What an asset, the ledger and the two directories must look like on disk. The rules are
 * built in (nothing unsigned on the vault can relax them): everything belongs to the agent (the
 * owner of the state directory), has one link, and has exactly the mode sealing gave it. */
struct verify_owner {
        uid_t uid;
        gid_t gid;
        bool copied; /* no inode flag survives a file copy: they are not checked */
};

static void verify_meta(const char *path, mode_t mode, mode_t want, uid_t uid, gid_t gid,
                        nlink_t nlink, bool is_dir, const struct verify_owner *o,
                        struct mismatch_list *mm)
{
        mode_t perm = mode & 07777;
        bool asset = want == 0444; /* its write bits are flag-cleared; it must stay readable */
        mode_t extra = perm & ~want & ~(asset ? (mode_t)0222 : 0);

        if (extra || (asset && (perm & 0444) != 0444))
                mismatch_add(mm, "mode-changed", path, "mode %04o, sealed as %04o", (unsigned)perm,
                             (unsigned)want);
        if (uid != o->uid || gid != o->gid)
                mismatch_add(mm, "owner-changed", path,
                             "owned by %u:%u, but everything in the vault is the agent's (%u:%u)",
                             (unsigned)uid, (unsigned)gid, (unsigned)o->uid, (unsigned)o->gid);
        if (!is_dir && nlink != 1)
                mismatch_add(mm, "hard-linked", path,
                             "%u names link to this file: another one outside the vault's "
                             "records reaches it",
                             (unsigned)nlink);
}

static void verify_judge(const struct verify_job *j, const struct verify_owner *o,
                         struct mismatch_list *mm)
{
        const struct ledger_record *e = j->e;
        char want[65], got[65];

        if (j->status == -ENOENT) {
                mismatch_add(mm, "deleted-asset", j->path, "recorded as seq %" PRIu64 " but gone",
                             e->seq);
                return;
        }
        if (j->status < 0 || !j->regular) {
                mismatch_add(mm, "modified-asset", j->path, "cannot be read as a file: %s",
                             j->status < 0 ? strerror(-j->status) : "not a regular file");
                return;
        }
        if (j->size != e->size || sodium_memcmp(j->hash, e->hash, AGENT_HASH_LEN) != 0) {
                sodium_bin2hex(want, sizeof(want), e->hash, AGENT_HASH_LEN);
                sodium_bin2hex(got, sizeof(got), j->hash, AGENT_HASH_LEN);
                mismatch_add(mm, "modified-asset", j->path,
                             "content is %" PRIu64 " bytes blake2b-256 '%.16s...' but seq %" PRIu64
                             " recorded %" PRIu64 " bytes '%.16s...'",
                             j->size, got, e->seq, e->size, want);
        }
        if (e->protect == LEDGER_PROTECT_IMMUTABLE && !o->copied &&
            !(j->have_flags && (j->flags & FS_IMMUTABLE_FL)))
                mismatch_add(mm, "flag-cleared", j->path, "the immutable flag is not set");
        if (j->mode & 0222)
                mismatch_add(mm, "flag-cleared", j->path, "writable (mode %04o), sealed read-only",
                             (unsigned)(j->mode & 07777));
        verify_meta(j->path, j->mode, 0444, j->uid, j->gid, j->nlink, false, o, mm);
}

static int verify_assets(const struct ledger *l, int assets_fd, unsigned threads,
                         const struct verify_owner *o, struct verify_result *ret)
{
        struct verify_pool p = {.assets_fd = assets_fd};
        int r = -ENOMEM;

        p.jobs = calloc(l->nrecs ? l->nrecs : 1, sizeof(*p.jobs));
        p.order = calloc(l->nrecs ? l->nrecs : 1, sizeof(*p.order));
        if (!p.jobs || !p.order)
                goto cleanup;
        for (size_t i = 0; i < l->nrecs; i++) {
                p.jobs[p.n].e = &l->recs[i];
                p.jobs[p.n++].path = ledger_record_path(l, &l->recs[i]);
                ret->records++;
                ret->bytes += l->recs[i].size;
        }
        verify_run_pool(&p, threads);
        for (size_t i = 0; i < p.n; i++)
                verify_judge(&p.jobs[i], o, &ret->mm);
        r = 0;
cleanup:
        free(p.jobs);
        free(p.order);
        return r;
}

static int verify_cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names in dir_fd that are not in names[] (sorted); prefix makes the reported path. pending (or
 * NULL) is an interrupted seal, whose assets get a detail saying so. */
static void verify_unrecorded(int dir_fd, const char **names, size_t n, const char *prefix,
                              const struct seal_intent_set *pending, struct mismatch_list *mm)
{
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        char path[LEDGER_PATH_MAX + 16];

        if (!d) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        while ((de = readdir(d))) {
                const char *key = de->d_name;

                if (!strcmp(key, ".") || !strcmp(key, ".."))
                        continue;
                if (n && bsearch(&key, names, n, sizeof(*names), verify_cmp_str))
                        continue;
                snprintf(path, sizeof(path), "%s%.*s", prefix, LEDGER_PATH_MAX, key);
                if (intent_set_has_asset(pending, key))
                        mismatch_add(mm, "unrecorded-file", path,
                                     "an interrupted seal (.totebox-agent/intent); the agent "
                                     "completes it when it next starts");
                else
                        mismatch_add(mm, "unrecorded-file", path,
                                     "no ledger entry records this file");
        }
        closedir(d);
}

static void verify_unrecorded_all(const struct vault *v, const struct ledger *l,
                                  struct mismatch_list *mm)
{
        const char **names = calloc(l->nrecs ? l->nrecs : 1, sizeof(*names));
        const char *ledger_names[] = {LEDGER_FILE};
        struct seal_intent_set in = {0};
        bool pending = intent_load(v->state_fd, v->have_key ? v->pk : NULL, &in) == 0;
        size_t n = 0;

        if (!names) {
                intent_set_done(&in);
                return;
        }
        for (size_t i = 0; i < l->nrecs; i++)
                names[n++] = ledger_record_path(l, &l->recs[i]) + 7;
        qsort(names, n, sizeof(*names), verify_cmp_str);
        verify_unrecorded(v->assets_fd, names, n, "assets/", pending ? &in : NULL, mm);
        verify_unrecorded(v->ledger_dir_fd, ledger_names, 1, "ledger/", NULL, mm);
        intent_set_done(&in);
        free(names);
}

/* The ledger on disk against what this agent sealed (daemon mode). */
static void verify_against_sealed(const struct ledger *disk, const struct ledger *sealed,
                                  struct mismatch_list *mm)
{
        merkle_hash a, b;

        if (sealed->n == 0)
                return;
        if (disk->n < sealed->n) {
                mismatch_add(mm, "ledger-truncated", "ledger/" LEDGER_FILE,
                             "the ledger holds %zu entries but the agent sealed %zu", disk->n,
                             sealed->n);
                return;
        }
        ledger_root(sealed, sealed->n, b);
        if ((ledger_root(disk, sealed->n, a) < 0 || sodium_memcmp(a, b, MERKLE_HASH_LEN) != 0) &&
            !mismatch_has_ledger_kind(mm))
                mismatch_add(mm, "ledger-edited", "ledger/" LEDGER_FILE,
                             "the first %zu lines differ from what the agent sealed", sealed->n);
}

/* A tree head (stored or trusted) against the ledger: size and root. */
static void verify_tree_head(const struct ledger *l, const struct sth *s, bool trusted,
                             struct mismatch_list *mm)
{
        merkle_hash root;

        if (s->size > l->n) {
                mismatch_add(mm, trusted ? "rollback" : "ledger-truncated", "ledger/" LEDGER_FILE,
                             "the ledger holds %zu entries but a signed tree head covers %" PRIu64,
                             l->n, s->size);
                return;
        }
        if (ledger_root(l, s->size, root) == 0 &&
            sodium_memcmp(root, s->root, MERKLE_HASH_LEN) == 0)
                return;
        if (trusted)
                mismatch_add(mm, "inconsistent-tree-head", "ledger/" LEDGER_FILE,
                             "the root of the first %" PRIu64
                             " entries differs from the accepted tree head",
                             s->size);
        else if (!mismatch_has_ledger_kind(mm))
                mismatch_add(mm, "ledger-edited", "ledger/" LEDGER_FILE,
                             "the root of the first %" PRIu64
                             " entries differs from the signed tree head",
                             s->size);
}

static void verify_heads(const struct vault *v, const struct ledger *l, const uint8_t *trusted_pk,
                         const struct sth *trusted_sth, bool trusted_checked,
                         const struct sth *stored_in, int r, struct mismatch_list *mm)
{
        const uint8_t *pk = trusted_pk ? trusted_pk : v->pk;
        struct sth stored = *stored_in;

        if (trusted_pk && (!v->have_key || sodium_memcmp(trusted_pk, v->pk, 32) != 0))
                mismatch_add(mm, "key-changed", AGENT_STATE_DIR "/vault.pub",
                             "the vault key is not the trusted one");
        if (r == -AGENT_ENOTREG)
                mismatch_add(mm, "forged-tree-head", AGENT_STATE_DIR "/sth.json",
                             "not a regular file: no signed tree head can be read from it");
        else if (r < 0 && l->n > 0)
                mismatch_add(mm, "forged-tree-head", AGENT_STATE_DIR "/sth.json",
                             "no readable signed tree head for %zu entries", l->n);
        if (r == 0 && (!v->have_key || sth_verify(&stored, v->pk) < 0))
                mismatch_add(mm, "forged-tree-head", AGENT_STATE_DIR "/sth.json",
                             "the signature does not verify with the vault key");
        else if (r == 0)
                verify_tree_head(l, &stored, false, mm);
        if (!trusted_sth)
                return;
        if (!trusted_checked && sth_verify(trusted_sth, pk) < 0)
                mismatch_add(mm, "forged-tree-head", "",
                             "the trusted tree head's signature does not verify");
        else
                verify_tree_head(l, trusted_sth, true, mm);
}

/* The ledger file: mode, owner, links, and FS_APPEND_FL. The flag is required whenever a signed
 * entry says "immutable" (the agent could set flags then, and it sets the ledger's at every
 * start): what vault.json says does not count, it is not signed. */
static void verify_ledger_file(const struct vault *v, const struct ledger *l,
                               const struct verify_owner *o, struct mismatch_list *mm)
{
        int fd = vault_open_regular(v->ledger_dir_fd, LEDGER_FILE, O_RDONLY), flags = 0;
        bool need = l->first_immutable_line < l->signed_size ||
                    (l->signed_size == UINT64_MAX && l->first_immutable_line != UINT64_MAX);
        struct stat st;

        if (fd < 0)
                return;
        if (fstat(fd, &st) == 0)
                verify_meta("ledger/" LEDGER_FILE, st.st_mode, 0644, st.st_uid, st.st_gid,
                            st.st_nlink, false, o, mm);
        if (need && !o->copied && (vault_get_flags(fd, &flags) < 0 || !(flags & FS_APPEND_FL)))
                mismatch_add(mm, "flag-cleared", "ledger/" LEDGER_FILE,
                             "the append-only flag is not set (the agent sealed immutable records, "
                             "so it had set it)");
        close(fd);
}

static void verify_dir(int fd, const char *path, const struct verify_owner *o,
                       struct mismatch_list *mm)
{
        struct stat st;

        if (fd >= 0 && fstat(fd, &st) == 0)
                verify_meta(path, st.st_mode, 0755, st.st_uid, st.st_gid, 1, true, o, mm);
}

/* The agent's own state files are read only when they are regular files; anything else there
 * (a FIFO, a device, a directory) is named, never opened. */
static void verify_state_files(const struct vault *v, struct mismatch_list *mm)
{
        static const char *const names[] = {"vault.key", "vault.pub",  "vault.json", "sth.json",
                                            "intent",    "intent.bad", NULL};
        char path[64];
        struct stat st;

        if (v->state_fd < 0)
                return;
        for (const char *const *n = names; *n; n++) {
                if (fstatat(v->state_fd, *n, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISREG(st.st_mode))
                        continue;
                snprintf(path, sizeof(path), AGENT_STATE_DIR "/%s", *n);
                mismatch_add(mm, "mode-changed", path,
                             "not a regular file (mode %06o): never opened", (unsigned)st.st_mode);
        }
}

/* The lines an interrupted seal may have appended past the head, for both protect values (all
 * its records protected alike; a seal whose records came out differently is named as plain
 * unsigned lines until the agent completes it). */
static void verify_pending_lines(const struct seal_intent_set *in, struct ledger *disk)
{
        free(disk->pending_leaf);
        disk->npending = 0;
        disk->pending_leaf = calloc(in->n, sizeof(*disk->pending_leaf));
        if (!disk->pending_leaf)
                return;
        for (int p = 0; p < 2; p++) {
                uint8_t prev[32];

                memcpy(prev, in->items[0].e.prev, 32);
                for (size_t k = 0; k < in->n; k++) {
                        char line[LEDGER_LINE_MAX + 1];
                        struct ledger_entry e = in->items[k].e;
                        int n;

                        e.protect = (enum ledger_protect)p;
                        memcpy(e.prev, prev, 32);
                        n = ledger_entry_format(&e, line, sizeof(line));
                        if (n <= 0)
                                break;
                        merkle_leaf_hash((const uint8_t *)line, (size_t)n,
                                         disk->pending_leaf[k][p]);
                        ledger_line_hash(line, (size_t)n, prev);
                }
        }
        disk->npending = in->n;
}

/* Before the ledger is read: the sizes whose roots must be kept, the signed size past which
 * lines are `unsigned`, and the interrupted seal's lines. */
static void verify_prepare(const struct vault *v, struct ledger *disk, const struct sth *stored,
                           bool stored_ok, const struct sth *trusted_sth)
{
        struct seal_intent_set in;

        if (stored_ok) {
                ledger_mark(disk, stored->size);
                disk->signed_size = stored->size;
        }
        if (trusted_sth)
                ledger_mark(disk, trusted_sth->size);
        if (!v->read_only)
                ledger_mark(disk, v->ledger.n);
        if (intent_load(v->state_fd, v->have_key ? v->pk : NULL, &in) == 0) {
                verify_pending_lines(&in, disk);
                intent_set_done(&in);
        }
}

int verify_vault(struct vault *v, unsigned threads, const uint8_t *trusted_pk,
                 const struct sth *trusted_sth, struct verify_result *ret)
{
        return verify_vault_at(v, threads, trusted_pk, trusted_sth, false, ret);
}

int verify_vault_at(struct vault *v, unsigned threads, const uint8_t *trusted_pk,
                    const struct sth *trusted_sth, bool trusted_checked, struct verify_result *ret)
{
        uint64_t start = clock_monotonic_ms();
        struct ledger *own = &v->reread, *disk = v->read_only ? &v->ledger : own;
        struct verify_owner o = {v->owner_uid, v->owner_gid, v->copied};
        struct sth stored;
        char *path = NULL;
        int r, sr;

        memset(ret, 0, sizeof(*ret));
        mismatch_list_init(&ret->mm);
        /* the daemon compares a fresh read with what it sealed; offline, the read is the ledger */
        if (disk == own)
                ledger_init(own);
        else
                ledger_done(disk); /* empties it (read-only mode never loaded it) */
        disk->seq_only = false;
        memset(&stored, 0, sizeof(stored));
        sr = v->state_fd >= 0 ? vault_sth_load(v->state_fd, &stored) : -ENOENT;
        verify_prepare(v, disk, &stored, sr == 0 && v->have_key && sth_verify(&stored, v->pk) == 0,
                       trusted_sth);
        r = asprintf(&path, "%s/ledger/" LEDGER_FILE, v->dir) < 0 ? -ENOMEM : 0;
        if (r == 0) {
                r = ledger_load(disk, path, &ret->mm);
                free(path);
        }
        if (r == -ENOENT)
                mismatch_add(&ret->mm, "ledger-deleted", "ledger/" LEDGER_FILE,
                             "the ledger file is missing");
        else if (r < 0)
                mismatch_add(&ret->mm, "ledger-edited", "ledger/" LEDGER_FILE,
                             "the ledger cannot be read: %s", agent_strerror(r));
        if (!v->read_only)
                verify_against_sealed(disk, &v->ledger, &ret->mm);
        verify_heads(v, disk, trusted_pk, trusted_sth, trusted_checked, &stored, sr, &ret->mm);
        verify_ledger_file(v, disk, &o, &ret->mm);
        verify_dir(v->assets_fd, "assets/", &o, &ret->mm);
        verify_dir(v->ledger_dir_fd, "ledger/", &o, &ret->mm);
        verify_state_files(v, &ret->mm);
        r = verify_assets(disk, v->assets_fd, threads, &o, ret);
        if (r < 0) /* never a clean result for assets that were not checked */
                mismatch_add(&ret->mm, "unverified", "assets/",
                             "the assets could not be checked: %s", agent_strerror(r));
        verify_unrecorded_all(v, disk, &ret->mm);
        if (disk == own)
                ledger_done(own);
        ret->duration_ms = clock_monotonic_ms() - start;
        return r;
}

void verify_result_done(struct verify_result *r)
{
        if (r)
                mismatch_list_done(&r->mm);
}
