/* The ledger: ledger/ledger.jsonl, one JSON object per sealed record, in a fixed key order so a
 * line is byte-for-byte reproducible. Each entry names the SHA-256 of the previous line's bytes
 * (a hash chain) and each line is a Merkle leaf. This file formats and strictly parses entries,
 * and loads a ledger file, turning every structural problem into a named mismatch. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/json_input.h"
#include "common/sha256.h"

static const char *const ledger_keys[] = {"seq",        "time",    "path", "size", "blake2b_256",
                                          "supersedes", "protect", "prev", NULL};

static const char *ledger_protect_name(enum ledger_protect p)
{
        return p == LEDGER_PROTECT_IMMUTABLE ? "immutable" : "read-only";
}

bool ledger_path_valid(const char *path)
{
        const char *name;
        size_t len = strlen(path);

        if (strncmp(path, "assets/", 7) != 0 || len <= 7 || len > LEDGER_PATH_MAX)
                return false;
        name = path + 7;
        if (name[0] == '.')
                return false;
        for (const char *p = name; *p; p++) {
                char c = *p;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                if (!ok)
                        return false;
        }
        return true;
}

bool ledger_path_matches_seq(const char *path, uint64_t seq)
{
        char prefix[40];
        int n = snprintf(prefix, sizeof(prefix), "assets/%08" PRIu64 "-", seq);

        return ledger_path_valid(path) && strncmp(path, prefix, (size_t)n) == 0;
}

int ledger_entry_format(const struct ledger_entry *e, char *buf, size_t size)
{
        char hash[2 * AGENT_HASH_LEN + 1], prev[65], sup[24];
        int n;

        sodium_bin2hex(hash, sizeof(hash), e->hash, AGENT_HASH_LEN);
        sodium_bin2hex(prev, sizeof(prev), e->prev, 32);
        if (e->supersedes)
                snprintf(sup, sizeof(sup), "%" PRIu64, e->supersedes);
        else
                snprintf(sup, sizeof(sup), "null");
        n = snprintf(
            buf, size,
            "{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"path\":\"%s\",\"size\":%" PRIu64
            ",\"blake2b_256\":\"%s\",\"supersedes\":%s,\"protect\":\"%s\",\"prev\":\"%s\"}",
            e->seq, e->time, e->path, e->size, hash, sup, ledger_protect_name(e->protect), prev);
        if (n < 0 || (size_t)n >= size)
                return -ENOSPC;
        return n;
}

void ledger_line_hash(const char *line, size_t len, uint8_t ret[32])
{
        sha256_digest(line, len, ret);
}

static int ledger_get_hex(const json_t *obj, const char *key, uint8_t *out, size_t outlen,
                          struct json_input_error *err)
{
        const char *s = NULL;
        size_t got = 0;
        int r = json_input_get_string(obj, key, true, 2 * outlen, &s, err);

        if (r < 0)
                return r;
        if (strlen(s) != 2 * outlen || strspn(s, "0123456789abcdef") != 2 * outlen ||
            sodium_hex2bin(out, outlen, s, 2 * outlen, NULL, &got, NULL) != 0 || got != outlen)
                return json_input_fail(err, "field '%s' is not %zu lowercase hex digits", key,
                                       2 * outlen);
        return 0;
}

static int ledger_get_fields(const json_t *o, struct ledger_entry *e, struct json_input_error *err)
{
        const json_t *sup = json_object_get(o, "supersedes");
        const char *protect = NULL;
        int r;

        if ((r = json_input_get_uint(o, "seq", true, 1, INT64_MAX, &e->seq, err)) < 0 ||
            (r = json_input_copy_string(o, "time", true, e->time, sizeof(e->time), err)) < 0 ||
            (r = json_input_copy_string(o, "path", true, e->path, sizeof(e->path), err)) < 0 ||
            (r = json_input_get_uint(o, "size", true, 0, INT64_MAX, &e->size, err)) < 0 ||
            (r = ledger_get_hex(o, "blake2b_256", e->hash, AGENT_HASH_LEN, err)) < 0 ||
            (r = ledger_get_hex(o, "prev", e->prev, 32, err)) < 0 ||
            (r = json_input_get_string(o, "protect", true, 16, &protect, err)) < 0)
                return r;
        if (!ledger_path_valid(e->path))
                return json_input_fail(err, "field 'path' ('%s') is not an asset path", e->path);
        if (!ledger_path_matches_seq(e->path, e->seq))
                return json_input_fail(err,
                                       "field 'path' ('%.64s') does not start with "
                                       "'assets/%08" PRIu64 "-', the entry's own sequence number",
                                       e->path, e->seq);
        if (strcmp(protect, "immutable") == 0)
                e->protect = LEDGER_PROTECT_IMMUTABLE;
        else if (strcmp(protect, "read-only") == 0)
                e->protect = LEDGER_PROTECT_READ_ONLY;
        else
                return json_input_fail(err,
                                       "field 'protect' is neither 'immutable' nor 'read-only'");
        if (!sup)
                return json_input_fail(err, "field 'supersedes' is missing");
        if (json_is_null(sup))
                return 0;
        r = json_input_get_uint(o, "supersedes", true, 1, e->seq - 1, &e->supersedes, err);
        return r;
}

int ledger_entry_parse_json(const char *line, size_t len, struct ledger_entry *ret, char *err,
                            size_t errlen)
{
        struct json_input_error jerr = {{0}};
        struct ledger_entry e;
        json_t *o = NULL;
        int r = -EINVAL;

        memset(&e, 0, sizeof(e));
        o = json_input_parse(line, len, LEDGER_LINE_MAX, 2, &jerr);
        if (!o)
                goto cleanup;
        if (!json_is_object(o)) {
                json_input_fail(&jerr, "not a JSON object");
                goto cleanup;
        }
        if (json_input_check_keys(o, ledger_keys, &jerr) < 0 || ledger_get_fields(o, &e, &jerr) < 0)
                goto cleanup;
        *ret = e;
        r = 0;
cleanup:
        if (r < 0 && err)
                snprintf(err, errlen, "%s", jerr.text);
        json_decref(o);
        return r;
}

/* ---- the fast path: a line exactly as ledger_entry_format writes it ----
 * Nearly every line of a real ledger is canonical, and a general JSON parse per line dominated
 * verification of many small records. This scanner accepts only the canonical layout, with the
 * same bounds as the JSON path, and then re-formats the entry and compares the bytes, so what it
 * accepts is exactly what the JSON path would read. Anything else takes the JSON path. */
static const char *ledger_lit(const char *p, const char *end, const char *lit)
{
        size_t n = strlen(lit);

        return p && (size_t)(end - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

static const char *ledger_u64(const char *p, const char *end, uint64_t *ret)
{
        uint64_t v = 0;
        const char *start = p;

        if (!p)
                return NULL;
        for (; p < end && *p >= '0' && *p <= '9' && p - start < 19; p++)
                v = v * 10 + (uint64_t)(*p - '0');
        if (p == start || v > INT64_MAX || (p < end && *p >= '0' && *p <= '9'))
                return NULL;
        *ret = v;
        return p;
}

static bool ledger_time_char(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               c == ':' || c == '.' || c == '+' || c == '-';
}

/* A string of [A-Za-z0-9:.+_/-] up to the closing quote, shorter than size (a path or a time;
 * each is checked for its own characters afterwards). */
static const char *ledger_str(const char *p, const char *end, char *buf, size_t size)
{
        size_t n = 0;

        if (!p)
                return NULL;
        for (; p < end && *p != '"'; p++) {
                if (n + 1 >= size || !(ledger_time_char(*p) || *p == '_' || *p == '/'))
                        return NULL;
                buf[n++] = *p;
        }
        buf[n] = '\0';
        return p < end ? p + 1 : NULL;
}

static const char *ledger_hex(const char *p, const char *end, uint8_t *out, size_t outlen)
{
        size_t got = 0;

        if (!p || (size_t)(end - p) < 2 * outlen + 1 || p[2 * outlen] != '"')
                return NULL;
        for (size_t i = 0; i < 2 * outlen; i++)
                if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
                        return NULL;
        if (sodium_hex2bin(out, outlen, p, 2 * outlen, NULL, &got, NULL) != 0 || got != outlen)
                return NULL;
        return p + 2 * outlen + 1;
}

int ledger_entry_parse_canonical(const char *line, size_t len, struct ledger_entry *ret)
{
        const char *end = line + len, *p, *q;
        char again[LEDGER_LINE_MAX + 1];
        struct ledger_entry e;

        if (len > LEDGER_LINE_MAX)
                return -EINVAL;
        memset(&e, 0, sizeof(e));
        p = ledger_u64(ledger_lit(line, end, "{\"seq\":"), end, &e.seq);
        p = ledger_str(ledger_lit(p, end, ",\"time\":\""), end, e.time, sizeof(e.time));
        p = ledger_str(ledger_lit(p, end, ",\"path\":\""), end, e.path, sizeof(e.path));
        p = ledger_u64(ledger_lit(p, end, ",\"size\":"), end, &e.size);
        p = ledger_hex(ledger_lit(p, end, ",\"blake2b_256\":\""), end, e.hash, AGENT_HASH_LEN);
        p = ledger_lit(p, end, ",\"supersedes\":");
        q = ledger_lit(p, end, "null");
        p = q ? q : ledger_u64(p, end, &e.supersedes);
        p = ledger_lit(p, end, ",\"protect\":\"");
        q = ledger_lit(p, end, "immutable\"");
        e.protect = q ? LEDGER_PROTECT_IMMUTABLE : LEDGER_PROTECT_READ_ONLY;
        p = q ? q : ledger_lit(p, end, "read-only\"");
        p = ledger_hex(ledger_lit(p, end, ",\"prev\":\""), end, e.prev, 32);
        p = ledger_lit(p, end, "}");
        if (p != end || e.seq < 1 || !ledger_path_matches_seq(e.path, e.seq) ||
            (e.supersedes && e.supersedes >= e.seq))
                return -EINVAL;
        for (const char *t = e.time; *t; t++)
                if (!ledger_time_char(*t))
                        return -EINVAL;
        if (ledger_entry_format(&e, again, sizeof(again)) != (int)len ||
            memcmp(again, line, len) != 0)
                return -EINVAL;
        *ret = e;
        return 0;
}

int ledger_entry_parse(const char *line, size_t len, struct ledger_entry *ret, char *err,
                       size_t errlen)
{
        if (ledger_entry_parse_canonical(line, len, ret) == 0)
                return 0;
        return ledger_entry_parse_json(line, len, ret, err, errlen);
}

void ledger_init(struct ledger *l)
{
        memset(l, 0, sizeof(*l));
        merkle_frontier_init(&l->frontier);
        l->next_seq = 1;
        l->ends_clean = true;
        l->signed_size = UINT64_MAX;
        l->first_immutable_line = UINT64_MAX;
        l->keep_max = UINT64_MAX;
}

void ledger_done(struct ledger *l)
{
        bool seq_only;

        if (!l)
                return;
        seq_only = l->seq_only;
        free(l->recs);
        free(l->paths);
        free(l->seqs);
        free(l->leaves);
        free(l->pending_leaf);
        ledger_init(l);
        l->seq_only = seq_only;
}

uint64_t ledger_seq_at(const struct ledger *l, size_t i)
{
        return l->seq_only && i < l->kept ? l->seqs[i] : 0;
}

const char *ledger_record_path(const struct ledger *l, const struct ledger_record *r)
{
        return l->paths + r->path_off;
}

void ledger_mark(struct ledger *l, uint64_t size)
{
        for (size_t i = 0; i < l->nmarks; i++)
                if (l->mark_size[i] == size)
                        return;
        if (l->nmarks < LEDGER_MARKS)
                l->mark_size[l->nmarks++] = size;
}

static int ledger_grow(struct ledger *l)
{
        size_t cap = l->cap ? l->cap * 2 : 256;
        uint64_t *q;
        merkle_hash *h;

        q = realloc(l->seqs, cap * sizeof(*q));
        if (!q)
                return -ENOMEM;
        l->seqs = q;
        h = realloc(l->leaves, cap * sizeof(*h));
        if (!h)
                return -ENOMEM;
        l->leaves = h;
        l->cap = cap;
        return 0;
}

/* The path index: one compact record per entry that parsed. */
static int ledger_add_record(struct ledger *l, const struct ledger_entry *e)
{
        size_t plen = strlen(e->path) + 1;

        if (l->nrecs == l->recs_cap) {
                size_t cap = l->recs_cap ? l->recs_cap * 2 : 256;
                struct ledger_record *r = realloc(l->recs, cap * sizeof(*r));
                if (!r)
                        return -ENOMEM;
                l->recs = r;
                l->recs_cap = cap;
        }
        if (l->paths_len + plen > l->paths_cap) {
                size_t cap = l->paths_cap ? l->paths_cap * 2 : 8192;
                char *p;

                while (cap < l->paths_len + plen)
                        cap *= 2;
                if (cap > UINT32_MAX || !(p = realloc(l->paths, cap)))
                        return -ENOMEM;
                l->paths = p;
                l->paths_cap = cap;
        }
        memcpy(l->paths + l->paths_len, e->path, plen);
        l->recs[l->nrecs++] = (struct ledger_record){.seq = e->seq,
                                                     .size = e->size,
                                                     .line = l->n,
                                                     .path_off = (uint32_t)l->paths_len,
                                                     .protect = (uint8_t)e->protect};
        memcpy(l->recs[l->nrecs - 1].hash, e->hash, AGENT_HASH_LEN);
        l->paths_len += plen;
        return 0;
}

/* Adds a line to the tree, given its leaf hash and its SHA-256; e may be a zeroed entry for a
 * line that did not parse. */
static int ledger_add_hashed(struct ledger *l, const struct ledger_entry *e, const merkle_hash leaf,
                             const uint8_t line_hash[32])
{
        int r;

        if (l->seq_only) {
                if (l->kept == l->n && l->n < l->keep_max) {
                        if (l->kept == l->cap && (r = ledger_grow(l)) < 0)
                                return r;
                        l->seqs[l->kept] = e->seq;
                        memcpy(l->leaves[l->kept++], leaf, MERKLE_HASH_LEN);
                }
        } else if (e->seq && (r = ledger_add_record(l, e)) < 0) {
                return r;
        }
        if (e->seq && e->protect == LEDGER_PROTECT_IMMUTABLE &&
            l->first_immutable_line == UINT64_MAX)
                l->first_immutable_line = l->n;
        merkle_frontier_append(&l->frontier, leaf);
        memcpy(l->last_line_hash, line_hash, 32);
        l->n++;
        for (size_t i = 0; i < l->nmarks; i++)
                if (l->mark_size[i] == l->n)
                        merkle_frontier_root(&l->frontier, l->mark_root[i]);
        if (e->seq >= l->next_seq)
                l->next_seq = e->seq + 1;
        l->bytes += e->size;
        return 0;
}

int ledger_push(struct ledger *l, const struct ledger_entry *e, const char *line, size_t len)
{
        merkle_hash leaf;
        uint8_t h[32];

        merkle_leaf_hash((const uint8_t *)line, len, leaf);
        ledger_line_hash(line, len, h);
        l->file_size += len + 1;
        return ledger_add_hashed(l, e, leaf, h);
}

int ledger_root(const struct ledger *l, uint64_t size, merkle_hash ret)
{
        if (size == l->n) {
                merkle_frontier_root(&l->frontier, ret);
                return 0;
        }
        if (size == 0 || (l->seq_only && size <= l->kept)) {
                merkle_root(l->leaves, size, ret);
                return 0;
        }
        for (size_t i = 0; i < l->nmarks; i++)
                if (l->mark_size[i] == size && size < l->n) {
                        memcpy(ret, l->mark_root[i], MERKLE_HASH_LEN);
                        return 0;
                }
        return -ENOENT;
}

/* Loading runs in batches of lines: each line is parsed and hashed (its Merkle leaf and its
 * SHA-256 for the chain) on every CPU, then the batch is checked in order on this thread. */
#define LEDGER_BATCH        2048
#define LEDGER_LOAD_THREADS 8
#define LEDGER_RUN          32

struct ledger_line {
        size_t off, len; /* in the batch's text */
        bool overlong;
        bool parsed;
        struct ledger_entry e; /* zeroed when the line did not parse */
        merkle_hash leaf;
        uint8_t hash[32];
};

struct ledger_batch {
        struct ledger_line *lines; /* LEDGER_BATCH of them */
        char *text;                /* LEDGER_BATCH lines of up to LEDGER_LINE_MAX bytes */
        size_t n, text_len;
        size_t cur_len; /* bytes of the line being read, at text + text_len */
        bool cur_overlong;
        unsigned threads;
        atomic_size_t next;
};

/* Per-line checks while loading: parse, the chain link to the previous line, the order. */
struct ledger_loader {
        struct ledger *l;
        struct mismatch_list *mm;
        uint64_t lineno;
        uint64_t last_seq; /* of the previous line when it parsed, else 0 */
        uint64_t max_seq;
        uint8_t prev_hash[32]; /* of the previous line's bytes */
        char prev_path[LEDGER_PATH_MAX + 1];
};

/* A line the stored signed tree head does not cover: nothing the agent signed records it. The
 * one exception that is the agent's own is an interrupted seal's line, named as such. */
static void ledger_note_unsigned(struct ledger_loader *ld, const struct ledger_line *ln)
{
        const struct ledger *l = ld->l;
        uint64_t k = l->n - l->signed_size;
        bool pending = l->pending_leaf && l->n >= l->signed_size && k < l->npending &&
                       (!memcmp(ln->leaf, l->pending_leaf[k][0], MERKLE_HASH_LEN) ||
                        !memcmp(ln->leaf, l->pending_leaf[k][1], MERKLE_HASH_LEN));

        if (pending)
                mismatch_add(ld->mm, "unsigned", ln->e.path,
                             "line %" PRIu64 " is an interrupted seal (.totebox-agent/intent) "
                             "that no signed tree head covers yet; the agent signs it when it "
                             "next starts",
                             ld->lineno);
        else
                mismatch_add(ld->mm, "unsigned", ln->parsed ? ln->e.path : "ledger/" LEDGER_FILE,
                             "line %" PRIu64 " (seq %" PRIu64
                             ") is past the last signed tree head (size %" PRIu64
                             "): the agent did not append it",
                             ld->lineno, ln->e.seq, l->signed_size);
}

static void ledger_check_line(struct ledger_loader *ld, const char *line,
                              const struct ledger_line *ln)
{
        const struct ledger_entry e = ln->e;
        struct ledger_entry scratch;
        char err[256];
        static const uint8_t zero[32];

        ld->lineno++;
        if (!ln->parsed) {
                /* parse again for the message; only bad lines pay for it */
                ledger_entry_parse(line, ln->len, &scratch, err, sizeof(err));
                mismatch_add(ld->mm, "ledger-edited", "ledger/" LEDGER_FILE,
                             "line %" PRIu64 " is not a ledger entry: %s", ld->lineno, err);
        } else if (ld->lineno == 1 && e.seq == 1 && memcmp(e.prev, zero, 32) != 0) {
                mismatch_add(ld->mm, "ledger-edited", e.path,
                             "entry seq 1 names a previous entry, but it is the first");
        } else if (ld->last_seq && e.seq == ld->last_seq + 1 &&
                   sodium_memcmp(e.prev, ld->prev_hash, 32) != 0) {
                mismatch_add(ld->mm, "ledger-edited", ld->prev_path,
                             "entry seq %" PRIu64 " (line %" PRIu64
                             ") was changed: entry seq %" PRIu64 " names another previous hash",
                             ld->last_seq, ld->lineno - 1, e.seq);
        }
        if (e.seq && e.seq <= ld->max_seq)
                mismatch_add(ld->mm, "ledger-reordered", e.path,
                             "entry seq %" PRIu64 " at line %" PRIu64
                             " comes after entry seq %" PRIu64,
                             e.seq, ld->lineno, ld->max_seq);
        if (ld->l->n >= ld->l->signed_size)
                ledger_note_unsigned(ld, ln);
        if (e.seq > ld->max_seq)
                ld->max_seq = e.seq;
        ld->last_seq = e.seq;
        snprintf(ld->prev_path, sizeof(ld->prev_path), "%s",
                 e.seq ? e.path : "ledger/" LEDGER_FILE);
        if (ledger_add_hashed(ld->l, &e, ln->leaf, ln->hash) < 0)
                mismatch_add(ld->mm, "ledger-edited", "ledger/" LEDGER_FILE, "out of memory");
        memcpy(ld->prev_hash, ln->hash, 32);
}

static int ledger_cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/* After all lines: duplicate sequence numbers and gaps (entries deleted from the middle). */
static void ledger_check_sequence(struct ledger *l, struct mismatch_list *mm)
{
        size_t total = l->seq_only ? l->kept : l->nrecs;
        uint64_t *seqs = malloc((total ? total : 1) * sizeof(*seqs));
        size_t k = 0;
        uint64_t expect = 1;

        if (!seqs)
                return;
        for (size_t i = 0; i < total; i++) {
                uint64_t q = l->seq_only ? l->seqs[i] : l->recs[i].seq;
                if (q)
                        seqs[k++] = q;
        }
        qsort(seqs, k, sizeof(*seqs), ledger_cmp_u64);
        for (size_t i = 0; i < k; i++) {
                if (i > 0 && seqs[i] == seqs[i - 1]) {
                        mismatch_add(mm, "ledger-edited", "ledger/" LEDGER_FILE,
                                     "sequence %" PRIu64 " appears more than once", seqs[i]);
                        continue;
                }
                if (seqs[i] > expect)
                        mismatch_add(mm, "ledger-deleted", "ledger/" LEDGER_FILE,
                                     "entries seq %" PRIu64 "..%" PRIu64 " are missing", expect,
                                     seqs[i] - 1);
                expect = seqs[i] + 1;
        }
        free(seqs);
}

static void ledger_batch_parse(struct ledger_line *ln, const char *line)
{
        char err[8]; /* the message is made again, on this thread, for a bad line */

        if (ln->overlong)
                return;
        memset(&ln->e, 0, sizeof(ln->e));
        ln->parsed = ledger_entry_parse(line, ln->len, &ln->e, err, sizeof(err)) == 0;
        if (!ln->parsed)
                memset(&ln->e, 0, sizeof(ln->e));
        merkle_leaf_hash((const uint8_t *)line, ln->len, ln->leaf);
        ledger_line_hash(line, ln->len, ln->hash);
}

/* Takes lines in runs of LEDGER_RUN, so the threads rarely touch the same cache lines. */
static void *ledger_batch_worker(void *arg)
{
        struct ledger_batch *b = arg;
        size_t i;

        while ((i = atomic_fetch_add(&b->next, LEDGER_RUN)) < b->n)
                for (size_t end = i + LEDGER_RUN < b->n ? i + LEDGER_RUN : b->n; i < end; i++)
                        ledger_batch_parse(&b->lines[i], b->text + b->lines[i].off);
        return NULL;
}

static void ledger_batch_run(struct ledger_loader *ld, struct ledger_batch *b)
{
        pthread_t tids[LEDGER_LOAD_THREADS];
        unsigned started = 0;

        atomic_store(&b->next, 0);
        for (unsigned t = 1; t < b->threads && b->n > LEDGER_RUN; t++)
                if (pthread_create(&tids[started], NULL, ledger_batch_worker, b) == 0)
                        started++;
        ledger_batch_worker(b);
        for (unsigned t = 0; t < started; t++)
                pthread_join(tids[t], NULL);
        for (size_t i = 0; i < b->n; i++) {
                if (b->lines[i].overlong)
                        mismatch_add(ld->mm, "ledger-edited", "ledger/" LEDGER_FILE,
                                     "line %" PRIu64 " is longer than %d bytes", ++ld->lineno,
                                     LEDGER_LINE_MAX);
                else
                        ledger_check_line(ld, b->text + b->lines[i].off, &b->lines[i]);
        }
        b->n = 0;
        b->text_len = 0;
}

static void ledger_feed(struct ledger_loader *ld, struct ledger_batch *b, const char *buf, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\n') {
                        b->lines[b->n++] = (struct ledger_line){
                            .off = b->text_len, .len = b->cur_len, .overlong = b->cur_overlong};
                        b->text_len += b->cur_overlong ? 0 : b->cur_len;
                        b->cur_len = 0;
                        b->cur_overlong = false;
                        if (b->n == LEDGER_BATCH)
                                ledger_batch_run(ld, b);
                } else if (b->cur_len < LEDGER_LINE_MAX) {
                        b->text[b->text_len + b->cur_len++] = buf[i];
                } else {
                        b->cur_overlong = true;
                }
        }
}

static int ledger_batch_init(struct ledger_batch *b)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        memset(b, 0, sizeof(*b));
        b->lines = malloc(LEDGER_BATCH * sizeof(*b->lines));
        b->text = malloc((size_t)LEDGER_BATCH * LEDGER_LINE_MAX);
        b->threads = cpus < 1                     ? 1
                     : cpus > LEDGER_LOAD_THREADS ? LEDGER_LOAD_THREADS
                                                  : (unsigned)cpus;
        return b->lines && b->text ? 0 : -ENOMEM;
}

static void ledger_batch_done(struct ledger_batch *b)
{
        free(b->lines);
        free(b->text);
}

#define LEDGER_READ_CHUNK 65536

int ledger_load(struct ledger *l, const char *path, struct mismatch_list *mm)
{
        struct ledger_loader ld = {.l = l, .mm = mm};
        struct ledger_batch b;
        char *buf = NULL; /* LEDGER_READ_CHUNK, on the heap: the frame stays small */
        bool any = false;
        ssize_t n;
        int fd = -1, r;

        if ((r = ledger_batch_init(&b)) < 0)
                goto cleanup;
        buf = malloc(LEDGER_READ_CHUNK);
        if (!buf) {
                r = -ENOMEM;
                goto cleanup;
        }
        fd = vault_open_regular(AT_FDCWD, path, O_RDONLY);
        if (fd < 0) {
                r = fd;
                goto cleanup;
        }
        l->exists = true;
        while ((n = read(fd, buf, LEDGER_READ_CHUNK)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto cleanup;
                }
                any = true;
                l->file_size += (uint64_t)n;
                ledger_feed(&ld, &b, buf, (size_t)n);
        }
        ledger_batch_run(&ld, &b);
        if (any && (b.cur_len > 0 || b.cur_overlong)) {
                l->ends_clean = false;
                mismatch_add(mm, "ledger-truncated", "ledger/" LEDGER_FILE,
                             "the last line (line %" PRIu64 ") has no newline: cut short",
                             ld.lineno + 1);
        }
        ledger_check_sequence(l, mm);
cleanup:
        if (fd >= 0)
                close(fd);
        free(buf);
        ledger_batch_done(&b);
        return r;
}
