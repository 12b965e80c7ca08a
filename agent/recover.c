/* Recovery of a seal cut short by a crash, from the intent record (intent.c). Run before every
 * inbox pass, so on the first pass after a start. The intent says which inbox name was being
 * sealed, under which sequence number and asset path, with which size and BLAKE2b-256, and the
 * exact ledger line. The ledger and the asset decide what happened:
 *  - the line is in the ledger: the seal completed; the intent is removed;
 *  - the ledger ends in a torn line that is a prefix of the intended line, the asset is there
 *    with the intended content: the append is finished with the missing bytes (append-only);
 *  - the asset is in assets/ with the intended size and hash: it is protected again and the
 *    line is appended (rolled forward);
 *  - the asset never left the inbox: the intent is dropped and the record sealed normally;
 *  - anything else (content changed, another torn line, a stale sequence number): nothing is
 *    written, the intent is set aside as intent.bad, and verification names what it finds. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <sodium.h>
#include <stdio.h>
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

/* The ledger line of the intent with e->protect as it now is. */
static int recover_line(const struct seal_intent *in, enum ledger_protect p,
                        struct ledger_entry *ret_e, char *line, size_t size)
{
        *ret_e = in->e;
        ret_e->protect = p;
        return ledger_entry_format(ret_e, line, size);
}

/* Where the intent's line is in the ledger (under either protect value): its index, or -1. */
static ssize_t recover_in_ledger(const struct ledger *l, const struct seal_intent *in)
{
        char line[LEDGER_LINE_MAX + 1];
        struct ledger_entry e;
        merkle_hash leaf;

        for (size_t i = l->kept; i-- > 0;) {
                if (ledger_seq_at(l, i) != in->e.seq)
                        continue;
                for (int p = 0; p < 2; p++) {
                        int n = recover_line(in, (enum ledger_protect)p, &e, line, sizeof(line));
                        if (n < 0)
                                continue;
                        merkle_leaf_hash((const uint8_t *)line, (size_t)n, leaf);
                        if (memcmp(leaf, l->leaves[i], MERKLE_HASH_LEN) == 0)
                                return (ssize_t)i;
                }
        }
        return -1;
}

/* Opens the asset the intent names when it holds exactly the intended content: fd, -ENOENT
 * when it is not in assets/, -EBADMSG when it differs. */
static int recover_open_asset(const struct vault *v, const struct seal_intent *in)
{
        uint8_t hash[AGENT_HASH_LEN];
        struct stat st;
        uint64_t size = 0;
        int fd =
            openat(v->assets_fd, in->e.path + 7, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

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

/* Protects the asset again (idempotent) and appends the intended line, or finishes a torn one
 * when the ledger's tail is a prefix of it. */
static int recover_finish(struct vault *v, const struct seal_intent *in, int fd, bool torn)
{
        char line[LEDGER_LINE_MAX + 1], tail[LEDGER_LINE_MAX + 2];
        struct ledger_entry e = in->e;
        ssize_t t = 0;
        int r, len;

        r = seal_protect(fd, &e);
        if (r < 0)
                return r;
        agent_fault_point("recover-protected");
        if (torn) {
                t = recover_torn_tail(v, tail, sizeof(tail));
                if (t <= 0)
                        return t < 0 ? (int)t : -EBADMSG;
        }
        for (int p = 0; p < 2; p++) {
                /* the protect value as set now first; the other one only for a torn line that
                 * stops before the field */
                enum ledger_protect want = p == 0 ? e.protect
                                           : e.protect == LEDGER_PROTECT_IMMUTABLE
                                               ? LEDGER_PROTECT_READ_ONLY
                                               : LEDGER_PROTECT_IMMUTABLE;
                struct ledger_entry f;

                len = recover_line(in, want, &f, line, sizeof(line));
                if (len < 0)
                        return len;
                if (!torn)
                        return seal_append_line(v, &f, line, (size_t)len, 0);
                if ((size_t)t <= (size_t)len && memcmp(tail, line, (size_t)t) == 0)
                        return seal_append_line(v, &f, line, (size_t)len, (size_t)t);
        }
        return -EBADMSG;
}

static int recover_drop(struct vault *v, bool aside)
{
        int r = aside ? intent_set_aside(v->state_fd) : intent_remove(v->state_fd);

        if (r == 0)
                v->intent_pending = false;
        return r;
}

static int recover_pending(struct vault *v, const struct seal_intent *in, struct mismatch_list *log)
{
        static const uint8_t zero[32];
        const uint8_t *prev = v->ledger.n ? v->ledger.last_line_hash : zero;
        bool torn = !v->ledger.ends_clean;
        int fd, r;

        if (in->e.seq != v->ledger.next_seq || memcmp(in->e.prev, prev, 32) != 0) {
                recover_note(log, "seal-abandoned", in->e.path,
                             "the interrupted seal does not follow the ledger's last entry; "
                             "intent set aside as intent.bad");
                return recover_drop(v, true);
        }
        if (!v->head_ok) {
                recover_note(log, "seal-failed", in->e.path,
                             "the ledger does not verify against the last signed tree head; the "
                             "interrupted seal is left as it is");
                return -ENOTRECOVERABLE;
        }
        fd = recover_open_asset(v, in);
        if (fd == -ENOENT && !torn) {
                recover_note(log, "seal-abandoned", in->inbox,
                             "interrupted before the move; the record stays in the inbox");
                return recover_drop(v, false);
        }
        if (fd < 0) {
                recover_note(log, "seal-failed", in->e.path,
                             fd == -EBADMSG ? "the asset differs from the interrupted seal's "
                                              "hash; not recorded, intent set aside"
                                            : "the interrupted seal's asset is gone");
                return torn ? fd : recover_drop(v, true);
        }
        r = recover_finish(v, in, fd, torn);
        close(fd);
        if (r == 0)
                r = seal_store_head(v);
        if (r < 0) {
                recover_note(log, "seal-failed", in->e.path,
                             torn ? "the ledger ends in a torn line that is not this seal's "
                                    "unfinished append; left as it is"
                                  : "cannot complete the interrupted seal");
                return r;
        }
        recover_note(log, "seal-recovered", in->e.path,
                     torn ? "an interrupted seal was completed (its torn ledger line finished)"
                          : "an interrupted seal was completed");
        return recover_drop(v, false);
}

int seal_recover(struct vault *v, struct mismatch_list *log)
{
        struct seal_intent in;
        ssize_t at;
        int r = intent_load(v->state_fd, v->pk, &in);

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
        at = in.e.seq < v->ledger.next_seq && v->ledger.ends_clean
                 ? recover_in_ledger(&v->ledger, &in)
                 : -1;
        if (at >= 0 && v->head_one_past && (size_t)at + 1 == v->ledger.n) {
                /* appended, not yet covered by a head: the one line past the head is provably
                 * this agent's (the intent names its exact bytes); sign it now */
                v->head_ok = true;
                v->head_one_past = false;
                r = seal_store_head(v);
                if (r < 0)
                        return r;
                recover_note(log, "seal-recovered", in.e.path,
                             "an interrupted seal was completed (its tree head signed)");
                return recover_drop(v, false);
        }
        if (at >= 0)
                return recover_drop(v, false); /* completed; only the removal was lost */
        return recover_pending(v, &in, log);
}
