/* A model-based test of placement and reservations, the way databases test isolation: fleetd's
 * real plan, confirm, drop, dispatch, inventory, heartbeat and liveness code, on a fake clock,
 * driven through seeded random interleavings of everything that can happen between an operator
 * and the nodes, and checked after every step against a reference model of each node's memory.
 *
 * The model nodes behave as vmhost does (vmhost/creations.c, vmhost/inventory.c): a creation
 * request defines the domain (or finds it, or is refused before defining, or fails after) and
 * then increases a durable creation counter; a refresh of the node's cache records the counter
 * it read before it listed the domains; heartbeats are sampled from that cache (MemAvailable
 * live, which misses untouched guest memory) and are delivered late, reordered, duplicated or
 * not at all; inventories refresh first; answers get lost either way; vmhosts restart (a new
 * epoch, the start-up increase). fleetd restarts too (the store is re-opened), plans expire,
 * nodes fall silent and are evicted. Operators suspend (a managed save: the RAM is freed),
 * resume (a start: vmhost increases the counter and answers it) and archive VMs (a graceful
 * shutdown: the guest runs on until its grace period is over); guests power off by themselves,
 * and a creation's retry starts a defined domain that does not run. While a dispatcher's call is
 * in flight (an inventory on its way, a creation's answer) operators suspend and resume VMs and
 * heartbeats are sampled and delivered, as on fleetd's threads: a listing made before a resume
 * arrives after it.
 *
 * The property, after every step: on every node fleetd has heard from, the RAM placement
 * believes available (node_available_mib) is at most what is truly free there (total minus the
 * memory of every domain that runs, or that is active and may be started at any time), and no
 * node holds more than total - margin. The model node's figures count memory the way vmhost's
 * do (vm_holds_memory); the truth is the model's own. A third of the plans name their node
 * (the operator's override), whether it fits or not.
 * Seed: TOTEBOX_MODEL_SEED (default 1) and TOTEBOX_MODEL_ROUNDS; a failure prints the seed, the
 * step and the last actions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "test_fleetd_util.h"

#define M_NODES    3
#define M_VMS      64
#define M_DGRAMS   16
#define M_PLANS    32
#define M_ENTITIES 24
#define M_STEPS    400
#define M_HISTORY  16
#define MARGIN     512

/* the fake clock: fleetd's calls to clock_monotonic_ms and clock_realtime_ms come here (the
 * test is linked with --wrap for both) */
static uint64_t fake_now = 1000000;
uint64_t __wrap_clock_monotonic_ms(void);
uint64_t __wrap_clock_realtime_ms(void);
uint64_t __wrap_clock_monotonic_ms(void)
{
        return fake_now;
}
uint64_t __wrap_clock_realtime_ms(void)
{
        return 1795000000000ull + fake_now;
}

struct m_vm {
        char id[VM_ID_MAX + 1];
        char request_id[PLAN_ID_LEN + 1];
        uint64_t mib;
        bool touched; /* the guest has used its memory: MemAvailable sees it */
        bool running; /* QEMU runs it: it holds its memory */
        enum vm_lifecycle lc;
};

struct m_node {
        uint64_t total;
        struct m_vm vms[M_VMS]; /* the domains defined: the truth */
        unsigned n_vms;
        uint64_t counter; /* durable */
        bool cached;      /* a refresh ran since the last vmhost start */
        uint64_t cache_creations, cache_committed;
        unsigned cache_n;
        uint64_t epoch, seq;
        struct heartbeat dgrams[M_DGRAMS]; /* in flight */
        unsigned n_dgrams;
};

struct model {
        uint64_t rng;
        struct m_node nodes[M_NODES];
        char plans[M_PLANS][PLAN_ID_LEN + 1];
        unsigned n_plans;
        const char *history[M_HISTORY];
        unsigned long long steps, total_steps;
        unsigned long long confirms, creations, heartbeats, restarts, give_ups, evictions;
        unsigned long long suspends, resumes, resumes_refused, archives, starts;
        unsigned seed;
        char dir[256];
};

static struct model M;

static uint64_t rnd(void)
{
        uint64_t x = M.rng;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        M.rng = x;
        return x * 0x2545F4914F6CDD1Dull;
}

static unsigned pick(unsigned n)
{
        return (unsigned)(rnd() % n);
}

static bool chance(unsigned percent)
{
        return pick(100) < percent;
}

/* The truth: a domain holds its memory while it runs, and an active one that does not run may
 * be started at any time (a creation's retry), so it is spoken for too. */
static uint64_t m_held(const struct m_node *n)
{
        uint64_t c = 0;

        for (unsigned i = 0; i < n->n_vms; i++)
                if (n->vms[i].running || n->vms[i].lc == VM_LC_ACTIVE)
                        c += n->vms[i].mib;
        return c;
}

static uint64_t m_touched(const struct m_node *n)
{
        uint64_t c = 0;

        for (unsigned i = 0; i < n->n_vms; i++)
                c += n->vms[i].touched && n->vms[i].running ? n->vms[i].mib : 0;
        return c;
}

/* libvirt's state as vmhost names it */
static const char *m_state(const struct m_vm *vm)
{
        if (vm->running)
                return "running";
        return vm->lc == VM_LC_SUSPENDED ? "saved" : "shutoff";
}

/* vmhost's mem_committed_mib: what its refresh counts */
static uint64_t m_vmhost_committed(const struct m_node *n)
{
        uint64_t c = 0;

        for (unsigned i = 0; i < n->n_vms; i++)
                if (vm_holds_memory(n->vms[i].lc, m_state(&n->vms[i])))
                        c += n->vms[i].mib;
        return c;
}

static void m_digest(unsigned count, char out[DIGEST_HEX_LEN + 1])
{
        snprintf(out, DIGEST_HEX_LEN + 1, "%064x", count + 1);
}

/* vmhost's inventory_refresh: the counter first, then the listing */
static void m_refresh(struct m_node *n)
{
        n->cache_creations = n->counter;
        n->cache_committed = m_vmhost_committed(n);
        n->cache_n = n->n_vms;
        n->cached = true;
}

static struct m_vm *m_find(struct m_node *n, const char *id)
{
        for (unsigned i = 0; i < n->n_vms; i++)
                if (strcmp(n->vms[i].id, id) == 0)
                        return &n->vms[i];
        return NULL;
}

/* POST /v1/vms as vmhost answers it. Returns the transport's result. */
static void m_meanwhile(struct fleetd *f);
static void m_check(struct fleetd *f);
static void act_sample(unsigned i);
static void act_deliver(struct fleetd *f, unsigned i);

static int m_create(struct fleetd *f, struct m_node *n, const char *body, long *ret_status,
                    char **ret_body)
{
        json_t *o = json_loads(body, 0, NULL);
        const char *id = json_string_value(json_object_get(o, "vm_id"));
        const char *req = json_string_value(json_object_get(o, "request_id"));
        uint64_t mib = (uint64_t)json_integer_value(json_object_get(o, "memory_mib"));
        struct m_vm *vm = id ? m_find(n, id) : NULL;
        unsigned roll = pick(100);
        char *ans;

        assert_non_null(id);
        if (roll < 8) { /* the request is lost on the way */
                json_decref(o);
                return -ETIMEDOUT;
        }
        if (!vm && roll < 14) { /* refused before anything is defined */
                n->counter++;
                json_decref(o);
                *ret_status = 422;
                *ret_body = strdup("{\"type\":\"insufficient-memory\",\"detail\":\"model\"}");
                return 0;
        }
        if (!vm) {
                assert_true(n->n_vms < M_VMS);
                vm = &n->vms[n->n_vms++];
                memset(vm, 0, sizeof(*vm));
                snprintf(vm->id, sizeof(vm->id), "%s", id);
                snprintf(vm->request_id, sizeof(vm->request_id), "%s", req);
                vm->mib = mib;
                vm->lc = VM_LC_ACTIVE;
                vm->running = roll >= 30; /* else its start fails, below */
                M.creations++;
        } else if (vm->lc == VM_LC_ACTIVE && !vm->running && roll >= 30) {
                vm->running = true; /* the retry starts a defined domain that does not run */
                M.starts++;
        }
        n->counter++; /* after the definition, before the answer */
        if (chance(10))
                m_refresh(n); /* the refresh vmhost asks for, sometimes right away */
        json_decref(o);
        if (chance(20))
                m_meanwhile(f); /* done; the answer is on its way */
        if (roll < 24)
                return -ETIMEDOUT; /* done, but the answer is lost */
        if (roll < 30) {
                *ret_status = 500; /* defined, did not start */
                *ret_body = strdup("{\"type\":\"start\",\"detail\":\"model\"}");
                return 0;
        }
        if (asprintf(&ans,
                     "{\"id\":\"%s\",\"state\":\"%s\",\"lifecycle\":\"%s\","
                     "\"creations\":%llu}",
                     vm->id, m_state(vm), vm_lifecycle_name(vm->lc),
                     (unsigned long long)n->counter) < 0)
                return -ENOMEM;
        *ret_status = 201;
        *ret_body = ans;
        return 0;
}

/* GET /v1/inventory as vmhost answers it: a refresh, then the cache. */
static int m_inventory(struct fleetd *f, unsigned i, struct m_node *n, long *ret_status,
                       char **ret_body)
{
        char digest[DIGEST_HEX_LEN + 1], node[16];
        json_t *vms, *o;

        if (chance(10))
                return -ETIMEDOUT;
        m_refresh(n);
        vms = json_array();
        for (unsigned k = 0; k < n->cache_n; k++)
                json_array_append_new(vms, json_pack("{s:s, s:s, s:s}", "id", n->vms[k].id, "state",
                                                     m_state(&n->vms[k]), "lifecycle",
                                                     vm_lifecycle_name(n->vms[k].lc)));
        m_digest(n->cache_n, digest);
        snprintf(node, sizeof(node), "n%u", i + 1);
        o = json_pack("{s:s, s:s, s:o, s:I}", "node", node, "digest", digest, "vms", vms,
                      "creations", (json_int_t)n->cache_creations);
        *ret_body = json_dumps(o, JSON_COMPACT);
        *ret_status = 200;
        json_decref(o);
        /* the answer is on its way while operators and heartbeats go on */
        if (chance(30))
                m_meanwhile(f);
        return 0;
}

/* The VM's part of a verb as vmhost does it (vmhost/vms.c), under its ops lock. */
static int m_verb_do(struct m_node *n, struct m_vm *vm, const char *verb)
{
        if (strcmp(verb, "suspend") == 0) {
                if (vm->lc == VM_LC_ARCHIVED || (!vm->running && vm->lc != VM_LC_SUSPENDED))
                        return 409;
                if (vm->running) {
                        vm->lc = VM_LC_SUSPENDED; /* recorded first, then the managed save */
                        if (chance(15))
                                m_refresh(n); /* a refresh while the save is written */
                        vm->running = false;
                        M.suspends++;
                }
                return 200;
        }
        if (strcmp(verb, "resume") == 0) {
                if (vm->lc == VM_LC_ARCHIVED)
                        return 409;
                if (!vm->running) {
                        vm->running = true;
                        if (chance(15))
                                m_refresh(n); /* a refresh before the lifecycle is recorded */
                        vm->lc = VM_LC_ACTIVE;
                        M.resumes++;
                }
                n->counter++; /* every start path, after the start */
                return 200;
        }
        if (strcmp(verb, "archive") == 0) {
                if (vm->lc != VM_LC_ARCHIVED)
                        M.archives++;
                vm->lc = VM_LC_ARCHIVED; /* it runs on until its grace period is over */
                return 200;
        }
        fail_msg("unexpected verb '%s'", verb);
        return 500;
}

/* POST /v1/vms/{id}/{verb} as vmhost answers it. */
static int m_verb(struct m_node *n, const char *path, long *ret_status, char **ret_body)
{
        char id[VM_ID_MAX + 1] = "", verb[16] = "";
        struct m_vm *vm;
        unsigned roll = pick(100);
        long st;

        assert_int_equal(sscanf(path, "/v1/vms/%63[^/]/%15s", id, verb), 2);
        if (roll < 6)
                return -ETIMEDOUT; /* lost on the way */
        vm = m_find(n, id);
        if (!vm) {
                *ret_status = 404;
                *ret_body = strdup("{\"type\":\"not-found\",\"detail\":\"model\"}");
                return 0;
        }
        st = m_verb_do(n, vm, verb);
        if (chance(10))
                m_refresh(n);
        if (roll < 16)
                return -ETIMEDOUT; /* done, the answer is lost */
        if (roll < 19) {
                *ret_status = 500;
                *ret_body = strdup("{\"type\":\"libvirt\",\"detail\":\"model\"}");
                return 0;
        }
        *ret_status = st;
        if (st != 200)
                *ret_body = strdup("{\"type\":\"wrong-state\",\"detail\":\"model\"}");
        else if (asprintf(
                     ret_body,
                     "{\"id\":\"%s\",\"state\":\"%s\",\"lifecycle\":\"%s\",\"creations\":%llu}",
                     vm->id, m_state(vm), vm_lifecycle_name(vm->lc),
                     (unsigned long long)n->counter) < 0)
                return -ENOMEM;
        return 0;
}

static int m_call(void *ctx, const char *address, uint16_t port, const char *method,
                  const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                  char **ret_body)
{
        unsigned a, b, c, d;

        (void)port;
        (void)timeout_ms;
        assert_int_equal(sscanf(address, "%u.%u.%u.%u", &a, &b, &c, &d), 4);
        assert_true(d >= 1 && d <= M_NODES);
        if (strcmp(method, "POST") == 0 && strcmp(path, "/v1/vms") == 0)
                return m_create(ctx, &M.nodes[d - 1], body, ret_status, ret_body);
        if (strcmp(method, "GET") == 0 && strcmp(path, "/v1/inventory") == 0)
                return m_inventory(ctx, d - 1, &M.nodes[d - 1], ret_status, ret_body);
        if (strcmp(method, "POST") == 0 && strncmp(path, "/v1/vms/", 8) == 0)
                return m_verb(&M.nodes[d - 1], path, ret_status, ret_body);
        if (strcmp(method, "POST") == 0 && strcmp(path, "/v1/roster") == 0) {
                *ret_status = 409; /* the roster anti-entropy: the node holds it */
                *ret_body = NULL;
                return 0;
        }
        fail_msg("unexpected call %s %s", method, path);
        return -EINVAL;
}

static void m_fail(const char *what, unsigned node, long long believed, long long truth)
{
        char hist[M_HISTORY * 24] = "";

        for (unsigned k = 0; k < M_HISTORY; k++) {
                const char *h = M.history[(M.steps + k) % M_HISTORY];

                if (h) {
                        strcat(hist, " ");
                        strcat(hist, h);
                }
        }
        fail_msg("%s on node n%u: placement believes %lld MiB available, %lld MiB truly free "
                 "(seed %u, step %llu of the round, %llu steps in all; last actions:%s)",
                 what, node + 1, believed, truth, M.seed, M.steps, M.total_steps, hist);
}

static void m_check(struct fleetd *f)
{
        for (unsigned i = 0; i < M_NODES; i++) {
                char id[8];
                struct fleet_node *n;
                int64_t truth = (int64_t)M.nodes[i].total - (int64_t)m_held(&M.nodes[i]);

                snprintf(id, sizeof(id), "n%u", i + 1);
                n = node_table_find(&f->table, id);
                if (truth < MARGIN)
                        m_fail("oversubscribed", i, n ? node_available_mib(n) : 0, truth);
                if (n && n->seen && node_available_mib(n) > truth)
                        m_fail("more believed free than is free", i, node_available_mib(n), truth);
        }
}

static void m_configure(struct fleetd *f)
{
        f->cfg.safety_margin_mib = MARGIN;
        f->cfg.plan_ttl_ms = 30000;
        f->cfg.dispatch_attempts = 3;
        f->cfg.dispatch_backoff_ms = 200;
        f->cfg.dispatch_backoff_max_ms = 800;
}

static void m_open(struct fleetd *f)
{
        struct fleet_transport tr = {m_call, f};

        assert_int_equal(tfu_fleetd_open(f, M.dir, M_NODES, &tr), 0);
        m_configure(f);
}

/* -- the actions ---------------------------------------------------------------------------- */

static void act_plan(struct fleetd *f)
{
        static const uint64_t sizes[] = {512, 1024, 1024, 1536};
        struct plan_request r = {.memory_mib = sizes[pick(4)], .vcpus = 1, .vault_disk_mib = 64};
        struct plan_outcome o = {0};

        snprintf(r.entity, sizeof(r.entity), "e%u", pick(M_ENTITIES));
        snprintf(r.image, sizeof(r.image), "base");
        if (chance(30)) /* the operator names the node: the margin must hold all the same */
                snprintf(r.node, sizeof(r.node), "n%u", 1 + pick(M_NODES));
        plans_create(f, &r, "model", &o);
        if (api_outcome_status(&o) == 201 && M.n_plans < M_PLANS)
                snprintf(M.plans[M.n_plans++], PLAN_ID_LEN + 1, "%s",
                         json_string_value(json_object_get(o.body, "id")));
        json_decref(o.body);
}

static void m_forget_plan(unsigned k)
{
        memmove(M.plans[k], M.plans[k + 1], (M.n_plans - k - 1) * sizeof(M.plans[0]));
        M.n_plans--;
}

static void act_confirm(struct fleetd *f)
{
        struct plan_outcome o = {0};
        unsigned k;

        if (!M.n_plans)
                return;
        k = pick(M.n_plans);
        plans_confirm(f, M.plans[k], "model", &o);
        if (api_outcome_status(&o) == 201)
                M.confirms++;
        if (api_outcome_status(&o) != 201 && api_outcome_status(&o) != 200 && chance(50))
                act_plan(f); /* the operator asks again after a 409 or 410 */
        if (api_outcome_status(&o) != 409 || chance(30))
                m_forget_plan(k);
        json_decref(o.body);
}

/* All operators confirm together: every open plan, once. */
static void act_confirm_all(struct fleetd *f)
{
        for (unsigned n = M.n_plans; n && M.n_plans; n--)
                act_confirm(f);
}

static void act_drop(struct fleetd *f)
{
        struct plan_outcome o = {0};
        unsigned k;

        if (!M.n_plans)
                return;
        k = pick(M.n_plans);
        plans_drop(f, M.plans[k], "model", &o);
        m_forget_plan(k);
        json_decref(o.body);
}

static void act_dispatch(struct fleetd *f)
{
        uint64_t attempts = f->metrics.dispatch_failures;

        dispatch_run_once(f, fake_now);
        M.give_ups += f->metrics.dispatch_failures - attempts;
}

static void act_sample(unsigned i)
{
        struct m_node *n = &M.nodes[i];
        struct heartbeat *hb;

        if (!n->cached || n->n_dgrams == M_DGRAMS)
                return; /* vmhost sends nothing before its first refresh */
        hb = &n->dgrams[n->n_dgrams++];
        memset(hb, 0, sizeof(*hb));
        snprintf(hb->node_id, sizeof(hb->node_id), "n%u", i + 1);
        hb->epoch = n->epoch;
        hb->seq = ++n->seq;
        hb->interval_ms = 10000;
        hb->cpus = 2;
        hb->mem_total_mib = n->total;
        hb->mem_available_mib = n->total - m_touched(n); /* MemAvailable: sampled live */
        hb->mem_committed_mib = n->cache_committed;
        hb->libvirt_age_ms = 100;
        hb->vm_count = n->cache_n;
        hb->creations = n->cache_creations;
        m_digest(n->cache_n, hb->inventory_digest);
}

/* Delivers one datagram in flight, any of them (reordering); sometimes it stays in flight too
 * (a duplicate), sometimes it is lost. */
static void act_deliver(struct fleetd *f, unsigned i)
{
        struct m_node *n = &M.nodes[i];
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        unsigned k;
        int len;

        if (!n->n_dgrams)
                return;
        k = chance(60) ? 0 : pick(n->n_dgrams);
        if (!chance(10)) {
                len = heartbeat_encode(&n->dgrams[k], buf, sizeof(buf));
                assert_true(len > 0);
                pthread_mutex_lock(&f->lock);
                heartbeat_listener_apply(f, buf, (size_t)len, tfu_addr(i + 1), fake_now, err,
                                         sizeof(err));
                pthread_mutex_unlock(&f->lock);
                M.heartbeats++;
        }
        if (chance(85)) {
                memmove(&n->dgrams[k], &n->dgrams[k + 1],
                        (n->n_dgrams - k - 1) * sizeof(n->dgrams[0]));
                n->n_dgrams--;
        }
}

static void act_touch(unsigned i)
{
        struct m_node *n = &M.nodes[i];

        if (n->n_vms)
                n->vms[pick(n->n_vms)].touched = true;
}

/* An operator's lifecycle verb on one of fleetd's VMs (suspend, resume, archive). */
static void act_verb(struct fleetd *f)
{
        char id[VM_ID_MAX + 1];
        struct plan_outcome o = {0};
        const struct fleet_vm *vm;
        const char *verb;

        if (!f->n_vms)
                return;
        vm = &f->vms[pick((unsigned)f->n_vms)];
        snprintf(id, sizeof(id), "%s", vm->id);
        /* mostly what the operator would ask of it, sometimes anything */
        if (chance(20))
                verb = chance(50) ? "resume" : chance(80) ? "suspend" : "archive";
        else if (vm->lifecycle == VM_LC_SUSPENDED)
                verb = chance(90) ? "resume" : "archive";
        else
                verb = chance(90) ? "suspend" : "archive";
        dispatch_vm_verb(f, id, verb, "model", &o);
        if (o.problem && strcmp(o.problem, "insufficient-memory") == 0)
                M.resumes_refused++;
        json_decref(o.body);
}

/* Guests stop by themselves: an archived one at the end of its grace period, an active one
 * that powers off (vmhost still counts it: a retry may start it). */
static void act_guest_stop(unsigned i)
{
        struct m_node *n = &M.nodes[i];
        struct m_vm *vm;

        if (!n->n_vms)
                return;
        vm = &n->vms[pick(n->n_vms)];
        if (vm->lc == VM_LC_ARCHIVED || chance(20))
                vm->running = false;
}

/* While a dispatcher's call is in flight (f->lock is not held then): an operator's verb,
 * heartbeats sampled and delivered. vmhost answers one call at a time, so a verb that reaches
 * the node now is done after the listing that is on its way. */
/* An operator suspends a VM and soon resumes it, heartbeats sampled in between. */
static void act_suspend_resume(struct fleetd *f)
{
        char id[VM_ID_MAX + 1];
        struct plan_outcome o = {0};
        unsigned node;

        if (!f->n_vms)
                return;
        snprintf(id, sizeof(id), "%s", f->vms[pick((unsigned)f->n_vms)].id);
        node = (unsigned)(id[0] ? strtoul(vm_table_find(f, id)->node_id + 1, NULL, 10) - 1 : 0);
        dispatch_vm_verb(f, id, "suspend", "model", &o);
        json_decref(o.body);
        m_check(f);
        m_refresh(&M.nodes[node]);
        act_sample(node);
        act_deliver(f, node);
        m_check(f);
        dispatch_vm_verb(f, id, "resume", "model", &o);
        json_decref(o.body);
        act_sample(node); /* sampled before the resume's refresh: the counter before it */
}

static void m_meanwhile(struct fleetd *f)
{
        for (unsigned k = 1 + pick(3); k; k--) {
                unsigned node = pick(M_NODES), roll = pick(5);

                if (roll == 4)
                        act_suspend_resume(f);
                else if (roll == 0)
                        act_verb(f);
                else if (roll == 1)
                        act_sample(node);
                else if (roll == 2)
                        act_deliver(f, node);
                else
                        m_refresh(&M.nodes[node]);
                m_check(f);
        }
}

static void act_vmhost_restart(unsigned i)
{
        struct m_node *n = &M.nodes[i];

        n->epoch++;
        n->seq = 0;
        n->counter++; /* the start-up increase */
        n->cached = false;
        if (chance(70))
                m_refresh(n);
}

static void act_fleetd_restart(struct fleetd *f)
{
        fleetd_close(f);
        m_open(f);
        M.restarts++;
}

static void act_time(struct fleetd *f)
{
        unsigned roll = pick(100);

        if (roll < 85)
                fake_now += 1 + pick(2500);
        else if (roll < 97)
                fake_now += 5000 + pick(20000); /* plans age, nodes turn suspect */
        else {
                fake_now += 31000 + pick(10000); /* silence: every node is evicted */
                M.evictions++;
        }
        liveness_tick(f, fake_now);
}

static void m_step(struct fleetd *f)
{
        unsigned roll = pick(1000), node = pick(M_NODES);
        static const char *const names[] = {
            "plan",           "confirm",        "confirm-all", "drop",      "dispatch",
            "sample",         "deliver",        "refresh",     "touch",     "time",
            "vmhost-restart", "fleetd-restart", "verb",        "guest-stop"};
        unsigned a;

        if (roll < 140)
                a = 0, act_plan(f);
        else if (roll < 200)
                a = 1, act_confirm(f);
        else if (roll < 250)
                a = 12, act_verb(f);
        else if (roll < 260)
                a = 13, act_guest_stop(node);
        else if (roll < 275)
                a = 2, act_confirm_all(f);
        else if (roll < 300)
                a = 3, act_drop(f);
        else if (roll < 430)
                a = 4, act_dispatch(f);
        else if (roll < 580)
                a = 5, act_sample(node);
        else if (roll < 760)
                a = 6, act_deliver(f, node);
        else if (roll < 850)
                a = 7, m_refresh(&M.nodes[node]);
        else if (roll < 880)
                a = 8, act_touch(node);
        else if (roll < 975)
                a = 9, act_time(f);
        else if (roll < 990)
                a = 10, act_vmhost_restart(node);
        else
                a = 11, act_fleetd_restart(f);
        M.history[M.steps % M_HISTORY] = names[a];
        M.steps++;
        M.total_steps++;
        m_check(f);
}

static void m_round(unsigned seed)
{
        struct fleetd f;
        char *dir = tfu_tmpdir();

        assert_non_null(dir);
        memset(M.nodes, 0, sizeof(M.nodes));
        memset(M.history, 0, sizeof(M.history));
        M.n_plans = 0;
        M.steps = 0;
        M.seed = seed;
        M.rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed * 0xBF58476D1CE4E5B9ull);
        if (!M.rng)
                M.rng = 1;
        snprintf(M.dir, sizeof(M.dir), "%s", dir);
        for (unsigned i = 0; i < M_NODES; i++) {
                /* room for one to four VMs above the margin */
                M.nodes[i].total = MARGIN + 1024 * (1 + pick(3)) + 256 * pick(3);
                M.nodes[i].counter = 1;
                M.nodes[i].epoch = 1000 + pick(1000);
                m_refresh(&M.nodes[i]);
        }
        m_open(&f);
        for (unsigned s = 0; s < M_STEPS; s++)
                m_step(&f);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

static void test_model(void **state)
{
        const char *s = getenv("TOTEBOX_MODEL_SEED"), *r = getenv("TOTEBOX_MODEL_ROUNDS");
        unsigned first = s ? (unsigned)strtoul(s, NULL, 10) : 1;
        unsigned rounds = r ? (unsigned)strtoul(r, NULL, 10) : 40;

        (void)state;
        for (unsigned k = 0; k < rounds; k++)
                m_round(first + k);
        printf("model: %u rounds (seeds %u..%u), %llu steps, %llu confirmations, %llu VMs "
               "defined, %llu heartbeats delivered, %llu creations given up, %llu fleetd "
               "restarts, %llu silences, %llu suspends, %llu resumes (%llu refused for room), "
               "%llu archives, %llu starts by a retry: 0 oversubscriptions, placement never "
               "believed more free than was free\n",
               rounds, first, first + rounds - 1, M.total_steps, M.confirms, M.creations,
               M.heartbeats, M.give_ups, M.restarts, M.evictions, M.suspends, M.resumes,
               M.resumes_refused, M.archives, M.starts);
        fflush(stdout);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_model),
        };

        log_init("test", LOG_LEVEL_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
