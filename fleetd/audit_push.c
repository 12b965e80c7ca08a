/* fleetd's side of the witnessed audit log: at start-up the key is loaded (made on first start)
 * and the record is checked against fleetd's own last checkpoints, and fleetd refuses to start
 * when they disagree; then one thread signs a checkpoint whenever the record grew (after the
 * entries committed, so appends inside a transaction never wait for a signature) and pushes it
 * to each node's vmhost with a consistency proof from the checkpoint that node holds
 * (POST /v1/audit-checkpoint, docs/contracts.md section 2). A node that holds a checkpoint this
 * record does not extend is named in the log and in /v1/health, and is not pushed to again. */
#include <errno.h>
#include <stdatomic.h>
#include <time.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "fleetd/audit_log.h"
#include "fleetd/store.h"

#define AUDIT_PUSH_TICK_MS    1000
#define AUDIT_PUSH_BACKOFF_MS 30000
#define AUDIT_HELD_UNKNOWN    UINT64_MAX

struct audit_peer {
        char id[NODE_ID_MAX + 1];
        uint64_t held;    /* the size the node holds, or AUDIT_HELD_UNKNOWN */
        uint64_t next_ms; /* monotonic: next attempt */
        unsigned failures;
        bool diverged; /* holds a checkpoint this record does not extend */
};

struct audit_log {
        struct audit_key key;
        char vkey[TLOG_VKEY_MAX + 1];
        merkle_hash *leaves;
        uint64_t n, cap;
        uint64_t signed_size; /* of the last checkpoint signed, or UINT64_MAX */
        char note[TLOG_NOTE_MAX];
        struct audit_peer *peers;
        size_t n_peers;
        char *body;                /* the last push body, for body_old -> body_n */
        uint64_t body_old, body_n; /* nodes at the same size get the same proof */
        pthread_mutex_t mu;        /* guards note, peers (read by the API) */
        pthread_t thread;
        bool running;
        atomic_bool stop;
        bool shrunk; /* the record lost entries while fleetd ran (under mu) */
};

/* The record against fleetd's own checkpoint; the report (its findings) on the heap. */
static int audit_open_check(struct fleetd *f, struct audit_log *a)
{
        struct audit_report *rep = malloc(sizeof(*rep));
        int r =
            rep ? audit_log_check(f->store, f->cfg.state_dir, &a->key.pub, NULL, 0, rep) : -ENOMEM;

        if (r == -EBADMSG) {
                for (unsigned i = 0; i < rep->n_findings; i++)
                        log_error("audit record inconsistent with fleetd's own checkpoint (%s): %s",
                                  audit_finding_name(rep->findings[i].kind), rep->findings[i].text);
                log_error("refusing to start: the audit record in '%s' is not the one fleetd "
                          "signed (keep the state directory as evidence; see docs/fleetd.md)",
                          f->cfg.state_dir);
        } else if (r < 0) {
                log_error("cannot read the audit record: %s", strerror(-r));
        } else {
                r = 0;
                log_info(
                    "audit record: %llu entries, consistent with fleetd's checkpoint of %llu; key "
                    "'%s'",
                    (unsigned long long)rep->entries, (unsigned long long)rep->largest, a->vkey);
        }
        free(rep);
        return r;
}

int audit_open(struct fleetd *f)
{
        struct audit_log *a = calloc(1, sizeof(*a));
        char err[512];
        int r;

        if (!a)
                return -ENOMEM;
        pthread_mutex_init(&a->mu, NULL);
        a->signed_size = UINT64_MAX;
        f->audit = a;
        r = audit_key_load(f->cfg.state_dir, true, f->table.roster->fleet_id, &a->key, err,
                           sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                return r;
        }
        tlog_vkey_format(&a->key.pub, a->vkey, sizeof(a->vkey));
        return audit_open_check(f, a);
}

/* Appends the leaves committed since the last tick; a record that shrank is not followed. */
/* Rows are deleted only by someone who dropped the triggers: noticed within a tick, logged
 * once, and /v1/health says audit-diverged until a restart (which then refuses). */
static bool audit_push_shrunk(struct fleetd *f, struct audit_log *a)
{
        uint64_t last;

        pthread_mutex_lock(&f->store->mu);
        audit_load_head(f->store);
        last = f->store->last_seq;
        pthread_mutex_unlock(&f->store->mu);
        if (last >= a->n)
                return false;
        pthread_mutex_lock(&a->mu);
        if (!a->shrunk)
                log_error("the audit record lost entries while fleetd ran: %llu entries, %llu "
                          "signed; run 'fleetctl audit verify'",
                          (unsigned long long)last, (unsigned long long)a->n);
        a->shrunk = true;
        pthread_mutex_unlock(&a->mu);
        return true;
}

static int audit_push_load(struct fleetd *f, struct audit_log *a)
{
        merkle_hash *more = NULL, *nl;
        uint64_t m = 0;
        int r = audit_leaves_load(f->store, a->n, &more, &m);

        if (r == 0 && m == 0 && audit_push_shrunk(f, a))
                r = -EBADMSG;
        if (r < 0 || m == 0) {
                free(more);
                return r;
        }
        if (a->n + m > a->cap) {
                uint64_t cap = a->cap ? a->cap : 1024;

                while (cap < a->n + m)
                        cap *= 2;
                nl = realloc(a->leaves, cap * sizeof(*nl));
                if (!nl) {
                        free(more);
                        return -ENOMEM;
                }
                a->leaves = nl;
                a->cap = cap;
        }
        memcpy(a->leaves + a->n, more, m * sizeof(*more));
        a->n += m;
        free(more);
        return 0;
}

static int audit_push_sign(struct fleetd *f, struct audit_log *a)
{
        char *note = malloc(TLOG_NOTE_MAX);
        int r;

        if (!note)
                return -ENOMEM;
        r = audit_checkpoint_sign(f->store, f->cfg.state_dir, &a->key, a->leaves, a->n, note,
                                  TLOG_NOTE_MAX);
        if (r == 0) {
                pthread_mutex_lock(&a->mu);
                memcpy(a->note, note, TLOG_NOTE_MAX);
                a->signed_size = a->n;
                pthread_mutex_unlock(&a->mu);
        } else
                log_error("cannot sign the audit checkpoint of %llu entries: %s",
                          (unsigned long long)a->n, strerror(-r));
        free(note);
        return r;
}

static struct audit_peer *audit_peer_get(struct audit_log *a, const char *id)
{
        struct audit_peer *np;

        for (size_t i = 0; i < a->n_peers; i++)
                if (strcmp(a->peers[i].id, id) == 0)
                        return &a->peers[i];
        np = realloc(a->peers, (a->n_peers + 1) * sizeof(*np));
        if (!np)
                return NULL;
        a->peers = np;
        np = &a->peers[a->n_peers++];
        memset(np, 0, sizeof(*np));
        snprintf(np->id, sizeof(np->id), "%s", id);
        np->held = AUDIT_HELD_UNKNOWN;
        return np;
}

/* The size of the checkpoint in a node's answer (GET or POST): 0 when it holds none, -EBADMSG
 * when the note is not ours or is not a prefix of this record (then diverged is set). */
static int audit_push_held(struct audit_log *a, struct audit_peer *p, const char *body,
                           uint64_t *ret_size)
{
        struct json_input_error jerr;
        json_t *o = json_input_parse(body, strlen(body), 64 * 1024, 8, &jerr);
        json_t *note = json_object_get(o, "checkpoint");
        struct tlog_checkpoint c;
        merkle_hash root;
        int r = -EBADMSG;

        if (o && json_is_null(note)) {
                p->held = 0;
                r = 0;
        } else if (json_is_string(note) &&
                   tlog_checkpoint_open(json_string_value(note), json_string_length(note),
                                        &a->key.pub, &c) == 0) {
                *ret_size = c.size;
                if (c.size <= a->n) {
                        merkle_root(a->leaves, c.size, root);
                        r = sodium_memcmp(root, c.root, MERKLE_HASH_LEN) == 0 ? 0 : -EBADMSG;
                }
                if (r == 0)
                        p->held = c.size;
                else {
                        p->diverged = true;
                        log_error("node '%s' witnessed an audit checkpoint of %llu entries that "
                                  "this record (%llu entries) does not extend: the record was cut, "
                                  "rolled back or forked; run 'fleetctl audit verify'",
                                  p->id, (unsigned long long)c.size, (unsigned long long)a->n);
                }
        }
        json_decref(o);
        return r;
}

/* The consistency proof from old to the record's size, base64 hashes; NULL on failure. The
 * proof's 2 KiB are on the heap, not in the frame. */
static json_t *audit_push_proof(struct audit_log *a, uint64_t old)
{
        merkle_hash *proof = NULL;
        size_t len = 0;
        json_t *arr = json_array();

        if (old > 0 && old < a->n) {
                proof = malloc(MERKLE_MAX_PROOF * sizeof(*proof));
                if (!proof || merkle_consistency_proof(a->leaves, a->n, old, proof, &len) < 0) {
                        free(proof);
                        json_decref(arr);
                        return NULL;
                }
        }
        for (size_t i = 0; i < len; i++) {
                char b64[48];

                sodium_bin2base64(b64, sizeof(b64), proof[i], MERKLE_HASH_LEN,
                                  sodium_base64_VARIANT_ORIGINAL);
                json_array_append_new(arr, json_string(b64));
        }
        free(proof);
        return arr;
}

static char *audit_push_body(struct audit_log *a, uint64_t old)
{
        json_t *o, *arr;
        char *text;

        if (a->body && a->body_old == old && a->body_n == a->n)
                return strdup(a->body);
        arr = audit_push_proof(a, old);
        if (!arr)
                return NULL;
        pthread_mutex_lock(&a->mu);
        o = json_pack("{s:i, s:s, s:s, s:I, s:o}", "v", 1, "key", a->vkey, "checkpoint", a->note,
                      "old_size", (json_int_t)old, "proof", arr);
        pthread_mutex_unlock(&a->mu);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        free(a->body);
        a->body = text ? strdup(text) : NULL;
        a->body_old = old;
        a->body_n = a->n;
        return text;
}

static void audit_push_failed(struct audit_peer *p, uint64_t now, const char *address,
                              const char *why)
{
        uint64_t backoff = (uint64_t)AUDIT_PUSH_TICK_MS << (p->failures < 5 ? p->failures : 5);

        p->failures++;
        p->next_ms = now + (backoff < AUDIT_PUSH_BACKOFF_MS ? backoff : AUDIT_PUSH_BACKOFF_MS);
        log_debug("audit checkpoint not delivered to node '%s' at '%s': %s", p->id, address, why);
}

/* The node holds a checkpoint this record does not extend: the checkpoint is sent once all the
 * same, so that the node refuses it and keeps it, signed, as evidence of the two histories. */
static void audit_push_evidence(struct fleetd *f, struct audit_log *a, struct audit_peer *p,
                                const char *address, uint64_t node_size)
{
        char *answer = NULL, *body = audit_push_body(a, node_size);
        long status = 0;
        int r;

        if (!body)
                return;
        r = f->transport.call(f->transport.ctx, address, (uint16_t)f->cfg.node_api_port, "POST",
                              "/v1/audit-checkpoint", body, f->cfg.node_api_timeout_ms, &status,
                              &answer);
        log_error("node '%s' was sent the audit checkpoint of %llu entries against its %llu: %s "
                  "(%ld)",
                  p->id, (unsigned long long)a->n, (unsigned long long)node_size,
                  r < 0           ? strerror(-r)
                  : status == 409 ? "refused and kept as evidence"
                                  : "answered",
                  status);
        free(body);
        free(answer);
}

/* One node: learn what it holds, then send the checkpoint with a proof from there. */
static void audit_push_peer(struct fleetd *f, struct audit_log *a, struct audit_peer *p,
                            const char *address, uint64_t now)
{
        char *answer = NULL, *body;
        uint64_t node_size = 0;
        long status = 0;
        int r;

        if (p->held == AUDIT_HELD_UNKNOWN) {
                r = f->transport.call(f->transport.ctx, address, (uint16_t)f->cfg.node_api_port,
                                      "GET", "/v1/audit-checkpoint", NULL,
                                      f->cfg.node_api_timeout_ms, &status, &answer);
                if (r == 0 && status == 200 && answer &&
                    audit_push_held(a, p, answer, &node_size) < 0 && p->diverged) {
                        free(answer);
                        audit_push_evidence(f, a, p, address, node_size);
                        return;
                }
                if (r < 0 || status != 200 || !answer || p->held == AUDIT_HELD_UNKNOWN) {
                        audit_push_failed(p, now, address, r < 0 ? strerror(-r) : "no checkpoint");
                        free(answer);
                        return;
                }
                free(answer);
                answer = NULL;
                if (p->held == a->n)
                        return;
        }
        body = audit_push_body(a, p->held);
        if (!body)
                return;
        r = f->transport.call(f->transport.ctx, address, (uint16_t)f->cfg.node_api_port, "POST",
                              "/v1/audit-checkpoint", body, f->cfg.node_api_timeout_ms, &status,
                              &answer);
        free(body);
        if (r == 0 && status == 200) {
                p->held = a->n;
                p->failures = 0;
                log_debug("node '%s' witnessed the audit checkpoint of %llu entries", p->id,
                          (unsigned long long)a->n);
        } else if (r == 0 && status == 409 && answer && strstr(answer, "audit-inconsistent")) {
                p->diverged = true;
                log_error("node '%s' refused the audit checkpoint of %llu entries as inconsistent "
                          "with the one it holds (it keeps it as evidence): %s",
                          p->id, (unsigned long long)a->n, answer);
        } else {
                p->held = AUDIT_HELD_UNKNOWN; /* stale or unknown: ask again next time */
                audit_push_failed(p, now, address, r < 0 ? strerror(-r) : "refused");
        }
        free(answer);
}

struct audit_target {
        char id[NODE_ID_MAX + 1];
        char address[INET_ADDRSTRLEN];
};

/* The nodes whose heartbeats arrive, copied out of f->lock. */
static size_t audit_push_targets(struct fleetd *f, struct audit_target **ret)
{
        struct audit_target *t;
        size_t n = 0;
        uint64_t now = clock_monotonic_ms();

        pthread_mutex_lock(&f->lock);
        t = calloc(f->table.roster->n_nodes + 1, sizeof(*t));
        for (size_t i = 0; t && i < f->table.roster->n_nodes; i++) {
                const struct fleet_node *node = &f->table.nodes[i];
                enum node_state st = node_state_at(node, &f->cfg, now);

                if (st == NODE_UNSEEN || st == NODE_EVICTED || !node->rn->mesh_address[0])
                        continue;
                snprintf(t[n].id, sizeof(t[n].id), "%s", node->rn->id);
                snprintf(t[n].address, sizeof(t[n].address), "%s", node->rn->mesh_address);
                n++;
        }
        pthread_mutex_unlock(&f->lock);
        *ret = t;
        return n;
}

void audit_push_run_once(struct fleetd *f, uint64_t now)
{
        struct audit_log *a = f->audit;
        struct audit_target *t = NULL;
        size_t n;

        if (!a || a->shrunk || audit_push_load(f, a) < 0)
                return; /* a record that shrank is never signed again by this process */
        if (a->signed_size != a->n && audit_push_sign(f, a) < 0)
                return;
        n = audit_push_targets(f, &t);
        for (size_t i = 0; i < n; i++) {
                struct audit_peer *p;

                pthread_mutex_lock(&a->mu);
                p = audit_peer_get(a, t[i].id);
                pthread_mutex_unlock(&a->mu);
                if (p && !p->diverged && p->held != a->n && now >= p->next_ms)
                        audit_push_peer(f, a, p, t[i].address, now);
        }
        free(t);
        vault_witness_push(f); /* the same thread tells nodes which vault checkpoints it holds */
}

static void *audit_push_main(void *arg)
{
        struct fleetd *f = arg;

        const struct timespec step = {.tv_nsec = 50 * 1000000L};

        while (!atomic_load(&f->audit->stop)) {
                audit_push_run_once(f, clock_monotonic_ms());
                for (int i = 0; i < AUDIT_PUSH_TICK_MS / 50 && !atomic_load(&f->audit->stop); i++)
                        nanosleep(&step, NULL);
        }
        return NULL;
}

int audit_push_start(struct fleetd *f)
{
        if (!f->audit)
                return -EINVAL;
        if (pthread_create(&f->audit->thread, NULL, audit_push_main, f) != 0)
                return -EAGAIN;
        f->audit->running = true;
        return 0;
}

json_t *audit_status_json(struct fleetd *f)
{
        struct audit_log *a = f->audit;
        json_t *o, *nodes = json_array();

        if (!a)
                return json_null();
        pthread_mutex_lock(&a->mu);
        for (size_t i = 0; i < a->n_peers; i++) {
                const struct audit_peer *p = &a->peers[i];

                json_array_append_new(nodes, json_pack("{s:s, s:o, s:b}", "node", p->id, "held",
                                                       p->held == AUDIT_HELD_UNKNOWN
                                                           ? json_null()
                                                           : json_integer((json_int_t)p->held),
                                                       "diverged", p->diverged));
        }
        o = json_pack("{s:s, s:o, s:s, s:o}", "key", a->vkey, "size",
                      a->signed_size == UINT64_MAX ? json_null()
                                                   : json_integer((json_int_t)a->signed_size),
                      "checkpoint", a->note, "witnesses", nodes);
        pthread_mutex_unlock(&a->mu);
        return o;
}

json_t *audit_witnesses_fetch(struct fleetd *f)
{
        struct audit_target *t = NULL;
        size_t n = audit_push_targets(f, &t);
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
                struct json_input_error jerr;
                char *answer = NULL;
                long status = 0;
                int r = f->transport.call(
                    f->transport.ctx, t[i].address, (uint16_t)f->cfg.node_api_port, "GET",
                    "/v1/audit-checkpoint", NULL, f->cfg.node_api_timeout_ms, &status, &answer);
                json_t *doc = r == 0 && status == 200 && answer
                                  ? json_input_parse(answer, strlen(answer), 256 * 1024, 8, &jerr)
                                  : NULL;

                json_array_append_new(arr,
                                      doc ? json_pack("{s:s, s:o}", "node", t[i].id, "answer", doc)
                                          : json_pack("{s:s, s:s}", "node", t[i].id, "error",
                                                      r < 0 ? strerror(-r) : "no answer"));
                free(answer);
        }
        free(t);
        return json_pack("{s:o}", "witnesses", arr);
}

bool audit_diverged(struct fleetd *f)
{
        struct audit_log *a = f->audit;
        bool d = false;

        if (!a)
                return false;
        pthread_mutex_lock(&a->mu);
        d = a->shrunk;
        for (size_t i = 0; i < a->n_peers; i++)
                d = d || a->peers[i].diverged;
        pthread_mutex_unlock(&a->mu);
        return d;
}

void audit_close(struct fleetd *f)
{
        struct audit_log *a = f->audit;

        if (!a)
                return;
        atomic_store(&a->stop, true);
        if (a->running)
                pthread_join(a->thread, NULL);
        audit_key_wipe(&a->key);
        free(a->leaves);
        free(a->peers);
        free(a->body);
        pthread_mutex_destroy(&a->mu);
        free(a);
        f->audit = NULL;
}
