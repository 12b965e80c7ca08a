/* The Diode, the agent's half (docs/agent.md "The Diode"): on the host's command only, a
 * deposit is received into the inbox under a dot-name (app-console-input/.deposit-ID.part,
 * which the scanner skips), checked against the announced BLAKE2b-256 and sealed; the ledger is
 * listed a page at a time; one record is sent back as data frames with its ledger line, its
 * inclusion proof and the signed tree head that covers it. The agent never starts a transfer:
 * every message here answers a host request.
 *
 * Idempotence: a deposit id is remembered in the state directory (deposit-ID: "SEQ HASH") before
 * its seal, so a retry after a dropped channel, a host restart or an agent crash answers with the
 * receipt of the sealed record, resumes the part file where it stopped, or (the content did not
 * hash as announced) starts again; it is never sealed twice. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/agent.h"
#include "common/json_input.h"

#define DIODE_LEDGER "ledger.jsonl"

void diode_init(struct diode *d, struct vault *v, struct channel *ch, uint64_t max_record_bytes)
{
        memset(d, 0, sizeof(*d));
        d->v = v;
        d->ch = ch;
        d->max_record_bytes = max_record_bytes;
        d->dep.fd = -1;
}

/* Writes the buffered bytes at their offset; -errno (the deposit cannot go on). */
static int diode_flush(struct diode_deposit *dep)
{
        uint64_t off = dep->received - dep->wlen;
        size_t done = 0;

        while (done < dep->wlen) {
                ssize_t w =
                    pwrite(dep->fd, dep->wbuf + done, dep->wlen - done, (off_t)(off + done));

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                done += (size_t)w;
        }
        dep->wlen = 0;
        return 0;
}

/* Stops the deposit; what was received is written first, so a resume starts after it. */
static void diode_stop(struct diode *d)
{
        if (d->dep.fd >= 0 && d->dep.wlen)
                diode_flush(&d->dep);
        if (d->dep.fd >= 0)
                close(d->dep.fd);
        d->dep.fd = -1;
        d->dep.wlen = 0;
        d->dep.active = false;
}

void diode_done(struct diode *d)
{
        if (!d)
                return;
        diode_stop(d);
        free(d->dep.wbuf);
        d->dep.wbuf = NULL;
}

static void diode_send(struct diode *d, json_t *o)
{
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        if (s && strlen(s) < CHANNEL_LINE_MAX)
                channel_send(d->ch, s);
        free(s);
}

static void diode_error(struct diode *d, const char *request_id, const char *code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* An error answer; code is the Diode's reason ("not-found", "conflict", "too-large", ...),
 * which the host maps to an HTTP status. */
static void diode_error(struct diode *d, const char *request_id, const char *code, const char *fmt,
                        ...)
{
        char detail[400];
        va_list ap;
        json_t *o;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        o = json_pack("{s:i, s:s, s:s, s:s}", "v", 1, "type", "error", "detail", detail, "code",
                      code);
        if (o && request_id && request_id[0])
                json_object_set_new(o, "request_id", json_string(request_id));
        diode_send(d, o);
}

/* The request handlers that diode_on_line calls. One runs per line; inlined together, their
 * locals (a parsed request, an entry, error texts) would make one frame of them all. */
#define DIODE_HANDLER static __attribute__((noinline))

/* ---- the ledger file, read line by line ---- */

typedef int (*diode_line_fn)(void *ctx, const char *line, size_t len, uint64_t index);

/* Calls fn for each complete line (index from 0) until it returns non-zero. */
static int diode_ledger_each(struct vault *v, diode_line_fn fn, void *ctx)
{
        static char buf[64 * 1024 + LEDGER_LINE_MAX + 1];
        int fd = vault_open_regular(v->ledger_dir_fd, DIODE_LEDGER, O_RDONLY);
        size_t have = 0;
        uint64_t index = 0;
        int r = 0;

        if (fd < 0)
                return fd;
        for (;;) {
                ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
                size_t start = 0;

                if (n <= 0) {
                        r = n < 0 ? -errno : 0;
                        break;
                }
                have += (size_t)n;
                for (char *nl; (nl = memchr(buf + start, '\n', have - start));) {
                        size_t len = (size_t)(nl - (buf + start));

                        r = fn(ctx, buf + start, len, index++);
                        start += len + 1;
                        if (r)
                                goto cleanup;
                }
                memmove(buf, buf + start, have - start);
                have -= start;
                if (have >= sizeof(buf) - 1) {
                        r = -EUCLEAN; /* a line longer than any entry */
                        break;
                }
        }
cleanup:
        close(fd);
        return r < 0 ? r : 0;
}

struct diode_find {
        uint64_t seq;
        char *line; /* malloc'd (diode_find_done frees): the entry's exact ledger line */
        size_t len;
        uint64_t index;
        struct ledger_entry e;
        bool found;
};

static int diode_find_line(void *ctx, const char *line, size_t len, uint64_t index)
{
        struct diode_find *f = ctx;
        struct ledger_entry e;
        char err[128];

        if (len > LEDGER_LINE_MAX || ledger_entry_parse(line, len, &e, err, sizeof(err)) < 0 ||
            e.seq != f->seq)
                return 0;
        f->line = strndup(line, len);
        if (!f->line)
                return -ENOMEM;
        f->len = len;
        f->index = index;
        f->e = e;
        f->found = true;
        return 1;
}

static int diode_find(struct vault *v, uint64_t seq, struct diode_find *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->seq = seq;
        if (seq == 0)
                return -ENOENT;
        int r = diode_ledger_each(v, diode_find_line, ret);

        return r < 0 ? r : ret->found ? 0 : -ENOENT;
}

static void diode_find_done(struct diode_find *f)
{
        free(f->line);
        f->line = NULL;
}

static json_t *diode_sth_json(const struct sth *s)
{
        char root[65], sig[96];

        sth_to_json_fields(s, root, sig);
        return json_pack("{s:I, s:s, s:I, s:s}", "size", (json_int_t)s->size, "root", root,
                         "time_ms", (json_int_t)s->time_ms, "signature", sig);
}

static json_t *diode_hex(const uint8_t *p, size_t n)
{
        char hex[2 * 64 + 1];

        sodium_bin2hex(hex, sizeof(hex), p, n);
        return json_string(hex);
}

/* The fields every record answer carries: the entry, its exact ledger line (the Merkle leaf's
 * data), its inclusion proof in the stored signed tree head, that head, and the vault key. */
static json_t *diode_record_json(struct diode *d, const char *type, const char *request_id,
                                 const struct diode_find *f, char *err, size_t errlen)
{
        const struct sth *s = &d->v->last_sth;
        merkle_hash *proof = calloc(MERKLE_MAX_PROOF, sizeof(*proof)); /* 2 KiB: not the stack */
        char pkb[sodium_base64_ENCODED_LEN(STH_PUBLIC_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
        const char *slash = strchr(f->e.path, '/');
        size_t plen = 0;
        json_t *o, *a;

        if (!proof) {
                snprintf(err, errlen, "no memory for the inclusion proof of record %" PRIu64,
                         f->e.seq);
                return NULL;
        }
        if (!d->v->have_sth || f->index >= s->size || s->size > d->v->ledger.kept ||
            merkle_inclusion_proof(d->v->ledger.leaves, s->size, f->index, proof, &plen) < 0) {
                snprintf(err, errlen,
                         "record %" PRIu64 " is not covered by the stored signed tree head",
                         f->e.seq);
                free(proof);
                return NULL;
        }
        a = json_array();
        for (size_t i = 0; a && i < plen; i++)
                json_array_append_new(a, diode_hex(proof[i], MERKLE_HASH_LEN));
        free(proof);
        sodium_bin2base64(pkb, sizeof(pkb), d->v->pk, STH_PUBLIC_KEY_LEN,
                          sodium_base64_VARIANT_ORIGINAL);
        o = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:I, s:o, s:s, s:I, s:o, s:o, s:s}", "v", 1,
                      "type", type, "request_id", request_id, "seq", (json_int_t)f->e.seq, "path",
                      f->e.path, "name", slash ? slash + 1 : f->e.path, "size",
                      (json_int_t)f->e.size, "blake2b_256", diode_hex(f->e.hash, AGENT_HASH_LEN),
                      "line", f->line, "leaf_index", (json_int_t)f->index, "proof", a, "sth",
                      diode_sth_json(s), "public_key", pkb);
        if (o)
                json_object_set_new(o, "supersedes",
                                    f->e.supersedes ? json_integer((json_int_t)f->e.supersedes)
                                                    : json_null());
        return o;
}

static void diode_send_record(struct diode *d, const char *type, const char *request_id,
                              const char *deposit_id, uint64_t seq)
{
        struct diode_find f;
        char err[200];
        json_t *o;

        if (diode_find(d->v, seq, &f) < 0) {
                diode_error(d, request_id, "not-found", "no record %" PRIu64 " in the ledger", seq);
                return;
        }
        o = diode_record_json(d, type, request_id, &f, err, sizeof(err));
        diode_find_done(&f);
        if (!o) {
                diode_error(d, request_id, "not-covered", "%s", err);
                return;
        }
        if (deposit_id)
                json_object_set_new(o, "deposit_id", json_string(deposit_id));
        diode_send(d, o);
}

/* ---- deposits ---- */

static void diode_part_name(const char *id, char *buf, size_t size)
{
        snprintf(buf, size, ".deposit-%s.part", id);
}

static void diode_index_name(const char *id, char *buf, size_t size)
{
        snprintf(buf, size, "deposit-%s", id);
}

/* The state file of a deposit whose seal was started: "SEQ HASH\n". -ENOENT when none. */
static int diode_index_load(struct vault *v, const char *id, uint64_t *ret_seq,
                            uint8_t ret_hash[AGENT_HASH_LEN])
{
        char name[DIODE_ID_MAX + 16], buf[128], hex[65];
        unsigned long long seq;
        int fd, r = -EINVAL;
        ssize_t n;

        diode_index_name(id, name, sizeof(name));
        fd = vault_open_regular(v->state_fd, name, O_RDONLY);
        if (fd < 0)
                return fd;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -EINVAL;
        buf[n] = '\0';
        if (sscanf(buf, "%llu %64[0-9a-f]", &seq, hex) == 2 && strlen(hex) == 64 &&
            sodium_hex2bin(ret_hash, AGENT_HASH_LEN, hex, 64, NULL, NULL, NULL) == 0) {
                *ret_seq = seq;
                r = 0;
        }
        return r;
}

static int diode_index_store(struct vault *v, const char *id, uint64_t seq,
                             const uint8_t hash[AGENT_HASH_LEN])
{
        char name[DIODE_ID_MAX + 16], buf[128], hex[65];
        int n;

        diode_index_name(id, name, sizeof(name));
        sodium_bin2hex(hex, sizeof(hex), hash, AGENT_HASH_LEN);
        n = snprintf(buf, sizeof(buf), "%" PRIu64 " %s\n", seq, hex);
        return vault_write_state(v->state_fd, name, buf, (size_t)n, 0600);
}

/* A name as the operator gave it: no path, no NUL, not . or .., and no ".supersedes-" (the
 * supersedes field says that). Other bytes are kept; sealing maps them to [A-Za-z0-9._-]. */
static bool diode_name_valid(const char *name)
{
        size_t n = strlen(name);

        return n >= 1 && n <= DIODE_NAME_MAX && !strchr(name, '/') && strcmp(name, ".") != 0 &&
               strcmp(name, "..") != 0 && !strstr(name, ".supersedes-");
}

struct diode_begin {
        char request_id[CHANNEL_ID_MAX + 1];
        char deposit_id[DIODE_ID_MAX + 1];
        char name[DIODE_NAME_MAX + 1];
        uint64_t size, supersedes;
        uint8_t hash[AGENT_HASH_LEN];
};

static int diode_parse_begin(struct diode *d, const json_t *o, struct diode_begin *b,
                             struct json_input_error *err)
{
        static const char *const keys[] = {"v",           "type",       "request_id",
                                           "deposit_id",  "name",       "size",
                                           "blake2b_256", "supersedes", NULL};
        const char *hex = NULL;
        json_t *sup = json_object_get(o, "supersedes");
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r
                ?: json_input_copy_string(o, "deposit_id", true, b->deposit_id,
                                          sizeof(b->deposit_id), err);
        r = r ?: json_input_copy_string(o, "name", true, b->name, sizeof(b->name), err);
        r = r ?: json_input_get_uint(o, "size", true, 0, d->max_record_bytes, &b->size, err);
        r = r ?: json_input_get_string(o, "blake2b_256", true, 64, &hex, err);
        if (r == 0 && sup && !json_is_null(sup))
                r = json_input_get_uint(o, "supersedes", true, 1, INT64_MAX, &b->supersedes, err);
        if (r < 0)
                return r;
        if (!diode_id_valid(b->deposit_id))
                return json_input_fail(err, "field 'deposit_id' must be 1-64 of [A-Za-z0-9_-]");
        if (!diode_name_valid(b->name))
                return json_input_fail(err,
                                       "field 'name' must be 1-%d bytes without '/' or "
                                       "'.supersedes-' (use the supersedes field)",
                                       DIODE_NAME_MAX);
        if (strlen(hex) != 64 ||
            sodium_hex2bin(b->hash, sizeof(b->hash), hex, 64, NULL, NULL, NULL) != 0)
                return json_input_fail(err, "field 'blake2b_256' is not 64 hex digits");
        return 0;
}

/* A deposit id seen before: the receipt again (1), or a reason to refuse (-EEXIST), or 0 when
 * its seal never completed and the deposit goes on. */
static int diode_begin_known(struct diode *d, const struct diode_begin *b)
{
        uint8_t hash[AGENT_HASH_LEN];
        struct diode_find f;
        uint64_t seq;
        int r;

        if (diode_index_load(d->v, b->deposit_id, &seq, hash) < 0)
                return 0;
        if (sodium_memcmp(hash, b->hash, AGENT_HASH_LEN) != 0)
                return -EEXIST;
        r = diode_find(d->v, seq, &f) == 0 && sodium_memcmp(f.e.hash, hash, AGENT_HASH_LEN) == 0;
        diode_find_done(&f);
        return r;
}

/* The hash over what an earlier try left in the part file (a resume), read from the file. */
static int diode_hash_prefix(struct diode_deposit *dep)
{
        uint64_t off = 0;

        crypto_generichash_init(&dep->hs, NULL, 0, AGENT_HASH_LEN);
        while (off < dep->received) {
                size_t n =
                    dep->received - off < DIODE_WBUF ? (size_t)(dep->received - off) : DIODE_WBUF;
                ssize_t got = pread(dep->fd, dep->wbuf, n, (off_t)off);

                if (got <= 0)
                        return -1;
                crypto_generichash_update(&dep->hs, dep->wbuf, (size_t)got);
                off += (uint64_t)got;
        }
        return 0;
}

DIODE_HANDLER void diode_begin(struct diode *d, const json_t *o, const char *request_id)
{
        struct json_input_error jerr = {{0}};
        struct diode_begin b = {{0}};
        char part[DIODE_ID_MAX + 32];
        struct stat st;
        int r, fd;

        if (diode_parse_begin(d, o, &b, &jerr) < 0) {
                diode_error(d, request_id,
                            strstr(jerr.text, "'size'") ? "too-large" : "bad-request", "%s",
                            jerr.text);
                return;
        }
        if (d->v->read_only || !d->v->head_ok) {
                diode_error(d, request_id, "vault-refuses", "the vault seals nothing now: %s",
                            d->v->head_ok ? "read-only" : d->v->head_why);
                return;
        }
        if (b.supersedes && !seal_supersedes_valid(d->v, b.supersedes)) {
                diode_error(d, request_id, "bad-request",
                            "record %" PRIu64 " to supersede is not in the ledger", b.supersedes);
                return;
        }
        seal_recover(d->v, NULL); /* an interrupted seal of this deposit completes first */
        r = diode_begin_known(d, &b);
        if (r != 0) {
                uint64_t seq = 0;
                uint8_t h[AGENT_HASH_LEN];

                if (r < 0)
                        diode_error(d, request_id, "conflict",
                                    "deposit id '%s' was used for other content", b.deposit_id);
                else if (diode_index_load(d->v, b.deposit_id, &seq, h) == 0)
                        diode_send_record(d, "deposit-receipt", request_id, b.deposit_id, seq);
                return;
        }
        diode_stop(d); /* another deposit cut short: its part file waits for its retry */
        diode_part_name(b.deposit_id, part, sizeof(part));
        fd = openat(d->v->inbox_fd, part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            ((uint64_t)st.st_size > b.size && ftruncate(fd, 0) < 0)) {
                diode_error(d, request_id, "agent-failed", "cannot open the deposit file: %s",
                            strerror(errno));
                if (fd >= 0)
                        close(fd);
                return;
        }
        if (!d->dep.wbuf && !(d->dep.wbuf = malloc(DIODE_WBUF))) {
                close(fd);
                diode_error(d, request_id, "agent-failed", "out of memory");
                return;
        }
        d->dep = (struct diode_deposit){.active = true,
                                        .size = b.size,
                                        .fd = fd,
                                        .wbuf = d->dep.wbuf,
                                        .dev = st.st_dev,
                                        .ino = st.st_ino};
        d->dep.received = (uint64_t)st.st_size > b.size ? 0 : (uint64_t)st.st_size;
        if (diode_hash_prefix(&d->dep) < 0) {
                diode_error(d, request_id, "agent-failed", "cannot read the deposit file: %s",
                            strerror(errno));
                diode_stop(d);
                return;
        }
        snprintf(d->dep.id, sizeof(d->dep.id), "%s", b.deposit_id);
        snprintf(d->dep.request_id, sizeof(d->dep.request_id), "%s", request_id);
        memcpy(d->dep.hash, b.hash, AGENT_HASH_LEN);
        if (b.supersedes)
                snprintf(d->dep.plan_name, sizeof(d->dep.plan_name), "%s.supersedes-%" PRIu64,
                         b.name, b.supersedes);
        else
                snprintf(d->dep.plan_name, sizeof(d->dep.plan_name), "%s", b.name);
        diode_send(d, json_pack("{s:i, s:s, s:s, s:s, s:I, s:I}", "v", 1, "type", "deposit-ready",
                                "request_id", request_id, "deposit_id", b.deposit_id, "offset",
                                (json_int_t)d->dep.received, "chunk_max",
                                (json_int_t)DIODE_CHUNK_MAX));
}

void diode_abort(struct diode *d, const char *why)
{
        if (d->dep.active)
                diode_error(d, d->dep.request_id, "out-of-step", "deposit '%s' stopped: %s",
                            d->dep.id, why);
        diode_stop(d);
}

void diode_on_data(struct diode *d, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                   bool last)
{
        struct diode_deposit *dep = &d->dep;

        (void)last;
        if (!dep->active || strcmp(id, dep->id) != 0)
                return; /* a frame of a deposit that was stopped: its bytes are dropped */
        if (offset != dep->received || n > dep->size - dep->received) {
                diode_abort(d, "a data frame out of order or past the announced size");
                return;
        }
        crypto_generichash_update(&dep->hs, p, n);
        while (n > 0) {
                size_t k = n < DIODE_WBUF - dep->wlen ? n : DIODE_WBUF - dep->wlen;
                int r;

                memcpy(dep->wbuf + dep->wlen, p, k);
                dep->wlen += k;
                dep->received += k;
                p += k;
                n -= k;
                if (dep->wlen == DIODE_WBUF && (r = diode_flush(dep)) < 0) {
                        dep->received -= dep->wlen; /* not written: a resume sends them again */
                        dep->wlen = 0;
                        diode_abort(d, strerror(-r));
                        return;
                }
        }
}

/* The whole record is in: remember the id with the sequence number it gets, then seal. */
DIODE_HANDLER int diode_end(struct diode *d, const char *request_id, const char *deposit_id)
{
        struct diode_deposit *dep = &d->dep;
        struct seal_expect x = {.known = true, .dev = dep->dev, .ino = dep->ino};
        struct ledger_entry e;
        char part[DIODE_ID_MAX + 32], name[DIODE_ID_MAX + 16];
        int r;

        if (!dep->active || strcmp(deposit_id, dep->id) != 0) {
                diode_error(d, request_id, "out-of-step", "no deposit '%s' in progress",
                            deposit_id);
                return 1;
        }
        if (dep->received != dep->size) {
                diode_error(d, request_id, "out-of-step",
                            "deposit '%s' has %" PRIu64 " of %" PRIu64 " bytes", deposit_id,
                            dep->received, dep->size);
                return 1;
        }
        diode_part_name(dep->id, part, sizeof(part));
        r = diode_flush(dep);
        if (r < 0) {
                diode_error(d, request_id, "agent-failed", "deposit '%s' not written: %s",
                            deposit_id, strerror(-r));
                diode_stop(d);
                return 1;
        }
        close(dep->fd); /* sealing refuses a record someone holds open for writing */
        dep->fd = -1;
        /* the hash of what was written, kept only when it is the announced one: otherwise the
         * seal re-reads the file and refuses it */
        crypto_generichash_final(&dep->hs, x.hash, sizeof(x.hash));
        x.size = dep->size;
        if (sodium_memcmp(x.hash, dep->hash, AGENT_HASH_LEN) != 0) {
                x.known = false;
                memcpy(x.hash, dep->hash, AGENT_HASH_LEN);
        }
        r = diode_index_store(d->v, dep->id, d->v->ledger.next_seq, dep->hash);
        if (r == 0)
                r = seal_named(d->v, part, dep->plan_name, d->max_record_bytes, &x, &e);
        dep->active = false;
        if (r == -EBADMSG) {
                /* not what was announced: nothing was stored; the next try starts from 0 */
                unlinkat(d->v->inbox_fd, part, 0);
                diode_index_name(dep->id, name, sizeof(name));
                unlinkat(d->v->state_fd, name, 0);
                diode_error(d, request_id, "hash-mismatch",
                            "deposit '%s': the content's BLAKE2b-256 is not the announced one; "
                            "discarded, send it again",
                            deposit_id);
                return 1;
        }
        if (r < 0) {
                diode_error(d, request_id, "agent-failed", "deposit '%s' not sealed: %s",
                            deposit_id, agent_strerror(r));
                return 1;
        }
        diode_send_record(d, "deposit-receipt", request_id, deposit_id, e.seq);
        return 2;
}

/* ---- listing and reading ---- */

#define DIODE_LIST_SLACK 2048 /* the answer's other fields and the entries' JSON quoting */

struct diode_list {
        uint64_t after, limit;
        size_t bytes;
        json_t *records;
        uint64_t last_seq;
        bool more;
};

static int diode_list_line(void *ctx, const char *line, size_t len, uint64_t index)
{
        struct diode_list *l = ctx;
        struct ledger_entry e;
        char err[128];
        json_t *o;

        (void)index;
        if (len > LEDGER_LINE_MAX || ledger_entry_parse(line, len, &e, err, sizeof(err)) < 0 ||
            e.seq <= l->after)
                return 0;
        /* the answer is one channel line: a page stops short of CHANNEL_LINE_MAX */
        if (json_array_size(l->records) == l->limit ||
            l->bytes + len > CHANNEL_LINE_MAX - DIODE_LIST_SLACK) {
                l->more = true;
                return 1;
        }
        l->bytes += len + 1;
        o = json_loadb(line, len, 0, NULL);
        if (o)
                json_array_append_new(l->records, o);
        l->last_seq = e.seq;
        return 0;
}

DIODE_HANDLER void diode_list(struct diode *d, const json_t *o, const char *request_id)
{
        static const char *const keys[] = {"v", "type", "request_id", "after", "limit", NULL};
        struct json_input_error jerr = {{0}};
        struct diode_list l = {.limit = 50};
        int r = json_input_check_keys(o, keys, &jerr);

        r = r ?: json_input_get_uint(o, "after", false, 0, INT64_MAX, &l.after, &jerr);
        r = r ?: json_input_get_uint(o, "limit", false, 1, DIODE_LIST_MAX, &l.limit, &jerr);
        if (r < 0) {
                diode_error(d, request_id, "bad-request", "%s", jerr.text);
                return;
        }
        l.records = json_array();
        r = diode_ledger_each(d->v, diode_list_line, &l);
        if (r < 0) {
                json_decref(l.records);
                diode_error(d, request_id, "agent-failed", "cannot read the ledger: %s",
                            agent_strerror(r));
                return;
        }
        diode_send(d, json_pack("{s:i, s:s, s:s, s:o, s:I, s:o, s:o}", "v", 1, "type",
                                "record-list", "request_id", request_id, "records", l.records,
                                "total", (json_int_t)d->v->ledger.n, "next_after",
                                l.more ? json_integer((json_int_t)l.last_seq) : json_null(), "sth",
                                diode_sth_json(&d->v->last_sth)));
}

DIODE_HANDLER void diode_read(struct diode *d, const json_t *o, const char *request_id)
{
        static const char *const keys[] = {"v", "type", "request_id", "seq", NULL};
        struct json_input_error jerr = {{0}};
        struct diode_find f;
        struct stat st;
        char err[200], *end = NULL;
        uint64_t seq = 0;
        json_t *rec;
        int r = json_input_check_keys(o, keys, &jerr), fd;

        r = r ?: json_input_get_uint(o, "seq", true, 1, INT64_MAX, &seq, &jerr);
        if (r < 0 || !diode_id_valid(request_id)) {
                diode_error(d, request_id, "bad-request", "%s",
                            r < 0 ? jerr.text
                                  : "a record-read's request_id must be 1-64 of "
                                    "[A-Za-z0-9_-] (it names the data frames)");
                return;
        }
        if (diode_find(d->v, seq, &f) < 0) {
                diode_error(d, request_id, "not-found", "no record %" PRIu64 " in the ledger", seq);
                return;
        }
        rec = diode_record_json(d, "record", request_id, &f, err, sizeof(err));
        diode_find_done(&f);
        fd = vault_open_regular(d->v->assets_fd, f.e.path + 7, O_RDONLY);
        if (!rec || fd < 0 || fstat(fd, &st) < 0) {
                diode_error(d, request_id, rec ? "agent-failed" : "not-covered", "%s",
                            rec ? "the record's asset cannot be opened" : err);
                json_decref(rec);
                if (fd >= 0)
                        close(fd);
                return;
        }
        /* the bytes as they are on disk, however many: the host checks them against the hash */
        diode_send(d, rec);
        if (asprintf(&end, "{\"v\":1,\"type\":\"record-end\",\"request_id\":\"%s\",\"size\":%lld}",
                     request_id, (long long)st.st_size) < 0 ||
            channel_send_stream(d->ch, fd, (uint64_t)st.st_size, request_id, end) < 0)
                diode_error(d, request_id, "busy", "another record is being sent; ask again");
        free(end);
}

int diode_on_line(struct diode *d, const char *line, size_t len)
{
        struct json_input_error jerr = {{0}};
        char request_id[CHANNEL_ID_MAX + 1] = "", deposit_id[DIODE_ID_MAX + 1] = "";
        const char *type = NULL;
        json_t *o = json_input_parse(line, len, CHANNEL_LINE_MAX, 2, &jerr);
        int r = 0;

        if (!o || !json_is_object(o) ||
            json_input_get_string(o, "type", true, 64, &type, &jerr) < 0 ||
            (strcmp(type, "deposit-begin") && strcmp(type, "deposit-end") &&
             strcmp(type, "record-list") && strcmp(type, "record-read")))
                goto cleanup; /* not the Diode's: request.c parses (and refuses) it */
        r = 1;
        if (json_input_copy_string(o, "request_id", true, request_id, sizeof(request_id), &jerr) <
            0) {
                diode_error(d, NULL, "bad-request", "%s", jerr.text);
                goto cleanup;
        }
        if (!strcmp(type, "deposit-begin"))
                diode_begin(d, o, request_id);
        else if (!strcmp(type, "record-list"))
                diode_list(d, o, request_id);
        else if (!strcmp(type, "record-read"))
                diode_read(d, o, request_id);
        else if (json_input_copy_string(o, "deposit_id", true, deposit_id, sizeof(deposit_id),
                                        &jerr) < 0)
                diode_error(d, request_id, "bad-request", "%s", jerr.text);
        else
                r = diode_end(d, request_id, deposit_id);
cleanup:
        json_decref(o);
        return r;
}
