/* Recovery of a seal cut short by a crash, from the intent record (intent.c). Run before every
 * inbox pass, so on the first pass after a start. The intent names the seal's records in order:
 * for each, the inbox name, the sequence number and asset path, the size and BLAKE2b-256; the
 * first one's prev is the hash of the ledger line before the seal. The ledger and the assets
 * decide what happened, record by record in order (each line's prev is recomputed from the line
 * before, its protect value is read from the asset):
 *  - the record's line is in the ledger (under either protect value): it was appended; lines
 *    past the signed head that are exactly the intent's first records are the agent's own;
 *  - the ledger ends in a torn line that is a prefix of the record's line, the asset holds the
 *    intended content: the append is finished with the missing bytes (append-only);
 *  - the asset is in assets/ with the intended size and hash: it is protected again and the
 *    line is appended (rolled forward);
 *  - the record is still in the inbox with the intended size and hash (the move did not reach
 *    the disk, or never happened): it is moved, protected and appended (rolled forward);
 *  - anything else (content changed, another torn line, a stale sequence number): nothing more
 *    is written, the lines already appended are covered by a head, the intent is set aside as
 *    intent.bad, and verification names what it finds.
 * When every record's line is in the ledger, a head covering them is stored and the intent is
 * removed. */
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

static void recover_note(struct mismatch_list *log, const char *kind, const char *path,
                         const char *what)
{
        if (log)
                mismatch_add(log, kind, path, "%s", what);
}

/* The record's ledger line after prev, with protect p. */
static int recover_line(const struct seal_intent *in, const uint8_t prev[32], enum ledger_protect p,
                        struct ledger_entry *ret_e, char *line, size_t size)
{
        *ret_e = in->e;
        ret_e->protect = p;
        memcpy(ret_e->prev, prev, 32);
        return ledger_entry_format(ret_e, line, size);
}

/* Whether ledger line i is the record's line after prev (either protect value); on a match prev
 * becomes that line's hash. */
static bool recover_line_is(const struct ledger *l, size_t i, const struct seal_intent *in,
                            uint8_t prev[32])
{
        char line[LEDGER_LINE_MAX + 1];
        struct ledger_entry e;
        merkle_hash leaf;

        if (i >= l->kept || ledger_seq_at(l, i) != in->e.seq)
                return false;
        for (int p = 0; p < 2; p++) {
                int n = recover_line(in, prev, (enum ledger_protect)p, &e, line, sizeof(line));
                if (n < 0)
                        continue;
                merkle_leaf_hash((const uint8_t *)line, (size_t)n, leaf);
                if (memcmp(leaf, l->leaves[i], MERKLE_HASH_LEN) == 0) {
                        ledger_line_hash(line, (size_t)n, prev);
                        return true;
                }
        }
        return false;
}

/* Where the set's first record's line is in the ledger, or -1. */
static ssize_t recover_first_line(const struct ledger *l, const struct seal_intent_set *s)
{
        for (size_t i = l->kept; i-- > 0;)
                if (ledger_seq_at(l, i) == s->items[0].e.seq)
                        return (ssize_t)i;
        return -1;
}

/* Opens the asset the record names when it holds exactly the intended content: fd, -ENOENT
 * when it is not in dir_fd under name, -EBADMSG when it differs. */
static int recover_open_checked(int dir_fd, const char *name, const struct seal_intent *in)
{
        uint8_t hash[AGENT_HASH_LEN];
        struct stat st;
        uint64_t size = 0;
        int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0)
                return errno == ELOOP ? -EBADMSG : -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
            verify_hash_fd(fd, hash, &size) < 0 || size != in->e.size ||
            sodium_memcmp(hash, in->e.hash, AGENT_HASH_LEN) != 0) {
                close(fd);
                return -EBADMSG;
        }
        return fd;
}

/* The record's asset, moved in from the inbox first when the move never reached the disk and
 * the inbox still holds the intended content. */
static int recover_open_asset(const struct vault *v, const struct seal_intent *in)
{
        int fd = recover_open_checked(v->assets_fd, in->e.path + 7, in);

        if (fd != -ENOENT)
                return fd;
        fd = recover_open_checked(v->inbox_fd, in->inbox, in);
        if (fd < 0)
                return fd == -ENOENT ? -ENOENT : -EBADMSG;
        if (renameat2(v->inbox_fd, in->inbox, v->assets_fd, in->e.path + 7, RENAME_NOREPLACE) < 0 ||
            fsync(v->assets_fd) < 0 || fsync(v->inbox_fd) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* The bytes after the ledger's last newline (at most LEDGER_LINE_MAX + 1 are read). */
static ssize_t recover_torn_tail(const struct vault *v, char *buf, size_t size)
{
        struct stat st;
        ssize_t n;
        off_t from;
        char *nl;
        int fd = vault_open_regular(v->ledger_dir_fd, LEDGER_FILE, O_RDONLY);

        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0) {
                close(fd);
                return -errno;
        }
        from = st.st_size > (off_t)size ? st.st_size - (off_t)size : 0;
        n = pread(fd, buf, size, from);
        close(fd);
        if (n < 0)
                return -errno;
        nl = memrchr(buf, '\n', (size_t)n);
        if (!nl && from > 0)
                return -E2BIG; /* longer than any line of ours */
        if (nl) {
                n -= nl + 1 - buf;
                memmove(buf, nl + 1, (size_t)n);
        }
        return n;
}

/* Appends the record's line after prev or, with tail (the t bytes after the ledger's last
 * newline), finishes the torn line when the tail is a prefix of it. */
static int recover_append(struct vault *v, const struct seal_intent *in, const uint8_t prev[32],
                          enum ledger_protect protect, const char *tail, size_t t)
{
        char line[LEDGER_LINE_MAX + 1];

        for (int p = 0; p < 2; p++) {
                /* the protect value as set now first; the other one only for a torn line that
                 * stops before the field */
                enum ledger_protect want = p == 0 ? protect
                                           : protect == LEDGER_PROTECT_IMMUTABLE
                                               ? LEDGER_PROTECT_READ_ONLY
                                               : LEDGER_PROTECT_IMMUTABLE;
                struct ledger_entry f;
                int len = recover_line(in, prev, want, &f, line, sizeof(line));

                if (len < 0)
                        return len;
                if (!tail)
                        return seal_append_line(v, &f, line, (size_t)len, 0);
                if (t <= (size_t)len && memcmp(tail, line, t) == 0)
                        return seal_append_line(v, &f, line, (size_t)len, t);
        }
        return -EBADMSG;
}

/* Protects the asset again (idempotent) and appends the record's line after prev, or finishes a
 * torn one when the ledger's tail is a prefix of it. */
static int recover_finish(struct vault *v, const struct seal_intent *in, const uint8_t prev[32],
                          int fd, bool torn)
{
        struct ledger_entry e = in->e;
        char *tail;
        ssize_t t;
        int r;

        r = seal_protect(fd, &e);
        if (r < 0)
                return r;
        agent_fault_point("recover-protected");
        if (!torn)
                return recover_append(v, in, prev, e.protect, NULL, 0);
        tail = malloc(LEDGER_LINE_MAX + 2); /* beside the line to compare, too much for the stack */
        if (!tail)
                return -ENOMEM;
        t = recover_torn_tail(v, tail, LEDGER_LINE_MAX + 2);
        if (t <= 0)
                r = t < 0 ? (int)t : -EBADMSG;
        else
                r = recover_append(v, in, prev, e.protect, tail, (size_t)t);
        free(tail);
        return r;
}

static int recover_drop(struct vault *v, bool aside)
{
        int r = aside ? intent_set_aside(v->state_fd) : intent_remove(v->state_fd);

        if (r == 0)
                v->intent_pending = false;
        return r;
}

/* How many of the set's records already have their line in the ledger (0..n), chaining prev
 * through them; -1 when the ledger's lines are not the set's (a stale or foreign intent). The
 * lines past the signed head must be exactly these. */
static ssize_t recover_appended(struct vault *v, const struct seal_intent_set *s, uint8_t prev[32])
{
        static const uint8_t zero[32];
        const struct ledger *l = &v->ledger;
        ssize_t at = recover_first_line(l, s);
        size_t j = 0;

        memcpy(prev, s->items[0].e.prev, 32);
        if (at < 0) {
                const uint8_t *last = l->n ? l->last_line_hash : zero;
                if (s->items[0].e.seq != l->next_seq || memcmp(prev, last, 32) != 0)
                        return -1;
                return v->head_ok ? 0 : -1;
        }
        while (j < s->n && (size_t)at + j < l->n &&
               recover_line_is(l, (size_t)at + j, &s->items[j], prev))
                j++;
        if ((size_t)at + j != l->n)
                return -1; /* a line of the set differs, or lines follow it */
        if (!v->head_ok && (v->head_past == 0 || v->head_past > j))
                return -1; /* the head does not cover what precedes the set */
        if (!v->head_ok) {
                /* the lines past the head are provably this agent's: the intent names their
                 * exact bytes */
                v->head_ok = true;
                v->head_past = 0;
        }
        return (ssize_t)j;
}

/* Rolls the records from j on forward; returns the first that could not be, or n. */
static size_t recover_forward(struct vault *v, const struct seal_intent_set *s, size_t j,
                              uint8_t prev[32], int *ret_err, struct mismatch_list *log)
{
        for (size_t k = j; k < s->n; k++) {
                const struct seal_intent *in = &s->items[k];
                bool torn = k == j && !v->ledger.ends_clean;
                int fd = recover_open_asset(v, in), r;

                if (fd < 0) {
                        recover_note(log, "seal-failed", in->e.path,
                                     fd == -EBADMSG ? "the asset differs from the interrupted "
                                                      "seal's hash; not recorded, intent set aside"
                                                    : "the interrupted seal's asset is gone");
                        *ret_err = torn ? -EUCLEAN : fd;
                        return k;
                }
                r = recover_finish(v, in, prev, fd, torn);
                close(fd);
                if (r < 0) {
                        recover_note(log, "seal-failed", in->e.path,
                                     torn ? "the ledger ends in a torn line that is not this "
                                            "seal's unfinished append; left as it is"
                                          : "cannot complete the interrupted seal");
                        *ret_err = torn ? -EUCLEAN : r;
                        return k;
                }
                memcpy(prev, v->ledger.last_line_hash, 32);
        }
        return s->n;
}

static int recover_set(struct vault *v, const struct seal_intent_set *s, struct mismatch_list *log)
{
        bool signed_all = v->head_ok;
        uint8_t prev[32];
        ssize_t j;
        size_t done;
        int err = 0, r;

        if (!v->head_ok && v->head_past == 0) {
                recover_note(log, "seal-failed", s->items[0].e.path,
                             "the ledger does not verify against the last signed tree head; the "
                             "interrupted seal is left as it is");
                return -ENOTRECOVERABLE;
        }
        j = recover_appended(v, s, prev);
        if (j < 0 || ((size_t)j == s->n && !v->ledger.ends_clean)) {
                if (!v->head_ok) {
                        recover_note(log, "seal-failed", s->items[0].e.path,
                                     "the ledger does not verify against the last signed tree "
                                     "head; the interrupted seal is left as it is");
                        return -ENOTRECOVERABLE;
                }
                recover_note(log, "seal-abandoned", s->items[0].e.path,
                             "the interrupted seal does not follow the ledger's last entry; "
                             "intent set aside as intent.bad");
                return recover_drop(v, true);
        }
        if ((size_t)j == s->n && signed_all)
                return recover_drop(v, false); /* completed; only the removal was lost */
        done = recover_forward(v, s, (size_t)j, prev, &err, log);
        if (err == -EUCLEAN)
                return err; /* a torn line not ours: nothing is written over it */
        r = seal_store_head(v);
        if (r < 0)
                return r;
        if (done < s->n)
                return recover_drop(v, true);
        recover_note(log, "seal-recovered", s->items[0].e.path,
                     (size_t)j == s->n ? "an interrupted seal was completed (its tree head signed)"
                                       : "an interrupted seal was completed");
        return recover_drop(v, false);
}

int seal_recover(struct vault *v, struct mismatch_list *log)
{
        struct seal_intent_set s;
        int r = intent_load(v->state_fd, v->pk, &s);

        if (r == -ENOENT) {
                v->intent_pending = false;
                return 0;
        }
        v->intent_pending = true;
        if (r < 0) {
                recover_note(
                    log, "seal-abandoned", AGENT_STATE_DIR "/intent",
                    "the seal intent is unreadable or not signed by the vault key; set aside as "
                    "intent.bad");
                return recover_drop(v, true);
        }
        r = recover_set(v, &s, log);
        intent_set_done(&s);
        return r;
}
