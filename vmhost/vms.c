/* The verbs on Totebox VMs: create (idempotent by request id), start, suspend (managed save),
 * resume, archive (graceful shutdown, then power-off after a grace period; kept, never started
 * again). There is no migrate, no undefine and no disk delete here, and none may be added.
 * Every refusal is logged once and returned as a problem (status, type, detail). */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

#define VMS_MAX_ARCHIVING 64

static struct {
        char id[VM_ID_MAX + 1];
        uint64_t deadline_ms;
} vms_archiving[VMS_MAX_ARCHIVING];

int vms_problem(struct vm_problem *p, int err, const char *type, const char *fmt, ...)
{
        va_list ap;

        p->err = err < 0 ? err : -EIO;
        snprintf(p->type, sizeof(p->type), "%s", type);
        va_start(ap, fmt);
        vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
        va_end(ap);
        return p->err;
}

int vm_create_req_parse(const char *body, size_t len, struct vm_create_req *ret,
                        struct vm_problem *p)
{
        static const char *const fields[] = {"request_id", "vm_id", "entity",         "memory_mib",
                                             "vcpus",      "image", "vault_disk_mib", "fleet_id",
                                             "pin",        NULL};
        struct json_input_error err = {{0}};
        struct vm_create_req q = {0};
        json_t *o = json_input_parse(body, len, 65536, 2, &err), *pin;
        char pin_err[256] = "";
        int r = o && json_is_object(o) ? 0 : -EINVAL;

        if (o && r < 0)
                json_input_fail(&err, "the body must be a JSON object");
        r = r ?: json_input_check_keys(o, fields, &err);
        r = r
                ?: json_input_copy_id(o, "request_id", true, IDENT_REQUEST, q.request_id,
                                      sizeof(q.request_id), &err);
        r = r ?: json_input_copy_id(o, "vm_id", true, IDENT_VM, q.vm_id, sizeof(q.vm_id), &err);
        r = r
                ?: json_input_copy_id(o, "entity", true, IDENT_ENTITY, q.entity, sizeof(q.entity),
                                      &err);
        r = r ?: json_input_copy_id(o, "image", true, IDENT_IMAGE, q.image, sizeof(q.image), &err);
        r = r
                ?: json_input_copy_id(o, "fleet_id", false, IDENT_NODE, q.fleet_id,
                                      sizeof(q.fleet_id), &err);
        r = r ?: json_input_get_uint(o, "memory_mib", true, 64, 1048576, &q.memory_mib, &err);
        r = r ?: json_input_get_uint(o, "vcpus", true, 1, 64, &q.vcpus, &err);
        r = r
                ?: json_input_get_uint(o, "vault_disk_mib", true, 16, 16777216, &q.vault_disk_mib,
                                       &err);
        pin = r == 0 ? json_object_get(o, "pin") : NULL;
        q.has_pin = pin != NULL;
        if (pin && pin_from_json(pin, &q.pin, pin_err, sizeof(pin_err)) < 0)
                r = json_input_fail(&err, "field 'pin': %s", pin_err);
        json_decref(o);
        if (r < 0)
                return vms_problem(p, -EINVAL, "bad-request", "%s", err.text);
        *ret = q;
        return 0;
}

/* The vm object of id as it is now (after a verb: the helper's state, not the one before). */
static json_t *vms_vm_json(struct vmhost *vh, const char *id, const struct vm_meta *m)
{
        struct vmh_domain *dom = malloc(sizeof(*dom));
        json_t *o = NULL;

        if (dom && vmh_lookup(vh, id, dom) == 0)
                o = inventory_vm_json(dom, m, agent_chan_integrity(vh, id),
                                      agent_chan_status(vh, id));
        free(dom);
        return o;
}

static void vms_meta_new(struct vmhost *vh, const struct vm_create_req *q, struct vm_meta *m)
{
        uint8_t raw[16];

        memset(m, 0, sizeof(*m));
        snprintf(m->fleet_id, sizeof(m->fleet_id), "%s",
                 q->fleet_id[0] ? q->fleet_id : vh->cfg.fleet_id);
        snprintf(m->node_id, sizeof(m->node_id), "%s", vh->cfg.node_id);
        snprintf(m->entity, sizeof(m->entity), "%s", q->entity);
        snprintf(m->request_id, sizeof(m->request_id), "%s", q->request_id);
        snprintf(m->image, sizeof(m->image), "%s", q->image);
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(m->vault_id, sizeof(m->vault_id), raw, sizeof(raw));
        m->lifecycle = VM_LC_ACTIVE;
        m->has_pin = q->has_pin;
        m->pin = q->pin;
}

/* The disks and the seed (made by the helper), then the definition: the helper checks the spec
 * and writes the domain XML. */
static int vms_define(struct vmhost *vh, const struct vm_create_req *q,
                      const struct image_info *img, struct vm_problem *p)
{
        char err[VMH_DETAIL_MAX];
        struct vm_meta m;
        int r;

        vms_meta_new(vh, q, &m);
        r = vmh_make_disks(vh, q->vm_id, img, q->vault_disk_mib, &m, err, sizeof(err));
        if (r < 0)
                return vms_problem(p, -EIO,
                                   strncmp(err, VMH_SEED_FAILED, strlen(VMH_SEED_FAILED)) == 0
                                       ? "seed"
                                       : "storage",
                                   "cannot create the disks of '%s': %s", q->vm_id, err);
        r = vmh_define(vh, q->vm_id, q->memory_mib, q->vcpus, &m, img, err, sizeof(err));
        return r < 0 ? vms_problem(p, -EIO, "define", "cannot define '%s': %s", q->vm_id, err) : 0;
}

static int vms_memory_check(struct vmhost *vh, uint64_t want, struct vm_problem *p)
{
        struct mem_sample mem;

        if (sample_read_mem(&mem) < 0)
                return vms_problem(p, -EIO, "internal", "cannot read /proc/meminfo");
        if (policy_check_memory(mem.available_kib / 1024, want, vh->cfg.safety_margin_mib) !=
            REFUSE_NONE)
                return vms_problem(p, -ENOSPC, "insufficient-memory",
                                   "available RAM %llu MiB minus %llu MiB would fall below the "
                                   "safety margin of %llu MiB",
                                   (unsigned long long)(mem.available_kib / 1024),
                                   (unsigned long long)want,
                                   (unsigned long long)vh->cfg.safety_margin_mib);
        return 0;
}

static int vms_do_start(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m,
                        struct vm_problem *p);

/* The domain exists already: the same request is answered again, another is a conflict. The
 * answer is what is true: a domain that should run (lifecycle active) and does not, because its
 * start failed or it stopped since, is started first, and a start that fails is the answer. */
static int vms_create_again(struct vmhost *vh, const struct vmh_domain *dom,
                            const struct vm_create_req *q, json_t **ret_vm, struct vm_problem *p)
{
        struct vm_meta m;
        int r;

        if (inventory_vm_meta(dom, &m) < 0)
                return vms_problem(p, -EEXIST, "vm-exists",
                                   "domain '%s' exists and is not a Totebox", q->vm_id);
        if (strcmp(m.request_id, q->request_id) != 0)
                return vms_problem(p, -EEXIST, "vm-exists",
                                   "VM '%s' exists, created by request '%s', not '%s'", q->vm_id,
                                   m.request_id, q->request_id);
        if (m.lifecycle == VM_LC_ACTIVE && !(dom->flags & VMH_DOM_ACTIVE)) {
                log_info("VM '%s' (request '%s') is defined but not running; starting it", q->vm_id,
                         q->request_id);
                virt_touch(vh);
                r = vms_do_start(vh, dom, &m, p);
                if (r < 0 && node_problem_status(p) != 500)
                        return r; /* refused (pinned elsewhere): that is the answer */
                if (r < 0) {
                        char why[sizeof(p->detail)];

                        snprintf(why, sizeof(why), "%s", p->detail);
                        return vms_problem(p, -EIO, "start",
                                           "VM '%s' is defined but did not start: %.400s", q->vm_id,
                                           why);
                }
                agent_chan_sync(vh, q->vm_id, &m, true);
        }
        *ret_vm = vms_vm_json(vh, q->vm_id, &m);
        return *ret_vm ? 0 : vms_problem(p, -EIO, "internal", "cannot describe '%s'", q->vm_id);
}

/* The base image (its 25 KiB description on the heap, not the stack) and the definition. */
static int vms_define_image(struct vmhost *vh, const struct vm_create_req *q, struct vm_problem *p)
{
        struct image_info *img = malloc(sizeof(*img));
        int r;

        if (!img)
                return vms_problem(p, -ENOMEM, "internal", "out of memory");
        if (images_lookup(vh, q->image, img) < 0)
                r = vms_problem(p, -ENOENT, "unknown-image", "no base image '%s' on node '%s'",
                                q->image, vh->cfg.node_id);
        else
                r = vms_define(vh, q, img, p);
        free(img);
        return r;
}

static int vms_create_locked(struct vmhost *vh, const struct vmh_domain *dom,
                             const struct vm_create_req *q, json_t **ret_vm, struct vm_problem *p)
{
        uint64_t t0 = clock_monotonic_ms(), t1, t2;
        char err[VMH_DETAIL_MAX];
        struct vm_meta m;
        int r;

        if (dom)
                return vms_create_again(vh, dom, q, ret_vm, p);
        /* the pin first: nothing is made for a VM this node may not run */
        r = pin_gate_check(vh, q->vm_id, q->has_pin ? &q->pin : NULL, false, q->entity, q->image,
                           -EACCES, p);
        r = r ?: vms_memory_check(vh, q->memory_mib, p);
        r = r ?: vms_define_image(vh, q, p);
        if (r < 0)
                return r;
        t1 = clock_monotonic_ms();
        r = vmh_domain_op(vh, VMH_START, q->vm_id, err, sizeof(err));
        t2 = clock_monotonic_ms();
        log_info("VM '%s': disks, seed and definition in %llu ms, started in %llu ms", q->vm_id,
                 (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1));
        if (r < 0)
                return vms_problem(p, -EIO, "start", "VM '%s' is defined but did not start: %s",
                                   q->vm_id, err);
        vms_meta_new(vh, q, &m); /* replaced by what the domain holds */
        {
                struct vmh_domain *d = malloc(sizeof(*d));

                r = d && vmh_lookup(vh, q->vm_id, d) == 0 ? inventory_vm_meta(d, &m) : -EIO;
                if (r == 0) {
                        agent_chan_sync(vh, q->vm_id, &m, true);
                        agent_chan_domain_started(vh, q->vm_id);
                        *ret_vm = inventory_vm_json(d, &m, agent_chan_integrity(vh, q->vm_id),
                                                    agent_chan_status(vh, q->vm_id));
                }
                free(d);
        }
        if (r < 0 || !*ret_vm)
                return vms_problem(p, -EIO, "internal", "VM '%s' has no readable metadata",
                                   q->vm_id);
        return VMS_CREATED;
}

/* Every creation request (and every start or resume) increases the node's creation counter once
 * it is done, whatever it did (a failed start leaves a defined domain behind); an
 * acknowledgement carries the value, and is refused when it cannot be stored
 * (docs/contracts.md). */
static int vms_create_count(struct vmhost *vh, int r, json_t **ret_vm, struct vm_problem *p)
{
        uint64_t n;
        int e = creations_bump(vh, &n);

        if (r < 0)
                return r;
        if (e < 0) {
                json_decref(*ret_vm);
                *ret_vm = NULL;
                return vms_problem(p, -EIO, "creation-counter",
                                   "cannot store the creation counter in '%s': %s",
                                   vh->cfg.state_dir, strerror(-e));
        }
        json_object_set_new(*ret_vm, "creations", json_integer((json_int_t)n));
        return r;
}

int vms_create(struct vmhost *vh, const struct vm_create_req *q, json_t **ret_vm,
               struct vm_problem *p)
{
        struct vmh_domain *dom = malloc(sizeof(*dom));
        int r, e;

        if (!dom)
                return vms_problem(p, -EIO, "internal", "out of memory");
        pthread_mutex_lock(&vh->ops_lock);
        e = vmh_lookup(vh, q->vm_id, dom);
        if (e < 0 && e != -ENOENT) {
                pthread_mutex_unlock(&vh->ops_lock);
                free(dom);
                return vms_problem(p, -ENOTCONN, "libvirt-unavailable", "no libvirt connection");
        }
        r = vms_create_locked(vh, e == 0 ? dom : NULL, q, ret_vm, p);
        r = vms_create_count(vh, r, ret_vm, p);
        pthread_mutex_unlock(&vh->ops_lock);
        free(dom);
        if (r == VMS_CREATED)
                log_info("VM '%s' created for entity '%s' by request '%s' (%llu MiB, image '%s')",
                         q->vm_id, q->entity, q->request_id, (unsigned long long)q->memory_mib,
                         q->image);
        else if (r < 0)
                log_warn("create of VM '%s' (request '%s') refused: %s: %s", q->vm_id,
                         q->request_id, p->type, p->detail);
        virt_request_refresh(vh);
        return r;
}

static int vms_set_lifecycle(struct vmhost *vh, const char *id, struct vm_meta *m,
                             enum vm_lifecycle l)
{
        m->lifecycle = l;
        return inventory_set_meta(vh, id, m);
}

static int vms_refuse_start(struct vmhost *vh, const char *id, const struct vm_meta *m,
                            struct vm_problem *p)
{
        if (m && pin_gate_check(vh, id, m->has_pin ? &m->pin : NULL, m->pin_bad, m->entity,
                                m->image, -EPERM, p) < 0)
                return -EINVAL;
        switch (policy_check_start(m, vh->cfg.node_id)) {
        case REFUSE_NONE:
                return 0;
        case REFUSE_PINNED_ELSEWHERE:
                return vms_problem(p, -EPERM, "pinned-elsewhere",
                                   "VM '%s' is pinned to node '%s' of fleet '%s'; this is node "
                                   "'%s'; refused",
                                   id, m->node_id, m->fleet_id, vh->cfg.node_id);
        case REFUSE_ARCHIVED:
                return vms_problem(p, -EBUSY, "archived",
                                   "VM '%s' is archived and never starts again", id);
        case REFUSE_INSUFFICIENT_MEMORY:
        case REFUSE_WRONG_STATE:
        case REFUSE_NOT_TOTEBOX:
                break;
        }
        return vms_problem(p, -EBUSY, "wrong-state", "VM '%s' cannot start", id);
}

static int vms_do_start(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m,
                        struct vm_problem *p)
{
        const char *id = dom->name;
        char err[VMH_DETAIL_MAX];
        int r = vms_refuse_start(vh, id, m, p);

        if (r < 0)
                return r;
        if (strcmp(dom->state, "paused") == 0 &&
            vmh_domain_op(vh, VMH_RESUME, id, err, sizeof(err)) < 0)
                return vms_problem(p, -EIO, "libvirt", "cannot resume '%s': %s", id, err);
        /* a start restores a managed save when there is one */
        if (!(dom->flags & VMH_DOM_ACTIVE) &&
            vmh_domain_op(vh, VMH_START, id, err, sizeof(err)) < 0)
                return vms_problem(p, -EIO, "libvirt", "cannot start '%s': %s", id, err);
        if (m->lifecycle != VM_LC_ACTIVE && vms_set_lifecycle(vh, id, m, VM_LC_ACTIVE) < 0)
                return vms_problem(p, -EIO, "libvirt", "cannot record '%s' as active", id);
        agent_chan_domain_started(vh, id);
        return 0;
}

static int vms_do_suspend(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m,
                          struct vm_problem *p)
{
        const char *id = dom->name;
        char err[VMH_DETAIL_MAX] = "cannot record the lifecycle";

        if (m->lifecycle == VM_LC_ARCHIVED)
                return vms_problem(p, -EBUSY, "archived", "VM '%s' is archived", id);
        if (!(dom->flags & VMH_DOM_ACTIVE)) {
                if (m->lifecycle == VM_LC_SUSPENDED)
                        return 0;
                return vms_problem(p, -EBUSY, "wrong-state", "VM '%s' is not running", id);
        }
        /* Recorded first, so the saved live definition already says "suspended". */
        if (vms_set_lifecycle(vh, id, m, VM_LC_SUSPENDED) < 0 ||
            vmh_domain_op(vh, VMH_MANAGED_SAVE, id, err, sizeof(err)) < 0)
                return vms_problem(p, -EIO, "libvirt", "cannot suspend '%s': %s", id, err);
        agent_chan_domain_stopped(vh, id);
        return 0;
}

static void vms_archive_expire(struct vmhost *vh);

static void vms_archive_track(const char *id, uint64_t deadline)
{
        for (unsigned i = 0; i < VMS_MAX_ARCHIVING; i++) {
                if (!vms_archiving[i].id[0] || strcmp(vms_archiving[i].id, id) == 0) {
                        snprintf(vms_archiving[i].id, sizeof(vms_archiving[i].id), "%s", id);
                        vms_archiving[i].deadline_ms = deadline;
                        return;
                }
        }
}

static int vms_do_archive(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m,
                          struct vm_problem *p)
{
        const char *id = dom->name;
        char err[VMH_DETAIL_MAX];

        if (m->lifecycle != VM_LC_ARCHIVED && vms_set_lifecycle(vh, id, m, VM_LC_ARCHIVED) < 0)
                return vms_problem(p, -EIO, "libvirt", "cannot record '%s' as archived", id);
        if (dom->flags & VMH_DOM_ACTIVE) {
                if (vmh_domain_op(vh, VMH_SHUTDOWN, id, err, sizeof(err)) < 0)
                        log_warn("VM '%s': graceful shutdown not requested: %s", id, err);
                vms_archive_track(id, clock_monotonic_ms() + vh->cfg.archive_grace_ms);
                if (vh->cfg.archive_grace_ms == 0)
                        vms_archive_expire(vh);
        }
        return 0;
}

/* Powers off archived VMs whose grace period is over; the caller holds ops_lock. */
static void vms_archive_expire(struct vmhost *vh)
{
        uint64_t now = clock_monotonic_ms();
        struct vmh_domain *dom = NULL;

        for (unsigned i = 0; i < VMS_MAX_ARCHIVING; i++) {
                if (!vms_archiving[i].id[0] || vms_archiving[i].deadline_ms > now)
                        continue;
                if (!dom && !(dom = malloc(sizeof(*dom))))
                        return;
                /* Power-off, not undefine: the domain and its disks stay. */
                if (vmh_lookup(vh, vms_archiving[i].id, dom) == 0 &&
                    (dom->flags & VMH_DOM_ACTIVE)) {
                        log_info("VM '%s': not shut down within the archive grace period; "
                                 "powering it off",
                                 vms_archiving[i].id);
                        vmh_domain_op(vh, VMH_DESTROY, vms_archiving[i].id, NULL, 0);
                }
                vms_archiving[i].id[0] = '\0';
        }
        free(dom);
}

/* Archived VMs still running (e.g. after a vmhost restart) get a grace period from now. */
static void vms_archive_adopt(struct vmhost *vh)
{
        uint64_t deadline = clock_monotonic_ms() + vh->cfg.archive_grace_ms;
        json_t *v;
        size_t i;

        pthread_mutex_lock(&vh->state_lock);
        json_array_foreach(vh->vms, i, v)
        {
                const char *id = json_string_value(json_object_get(v, "id"));
                bool tracked = false;

                if (strcmp(json_string_value(json_object_get(v, "lifecycle")), "archived") != 0 ||
                    strcmp(json_string_value(json_object_get(v, "state")), "running") != 0)
                        continue;
                for (unsigned k = 0; k < VMS_MAX_ARCHIVING; k++)
                        tracked = tracked || strcmp(vms_archiving[k].id, id) == 0;
                if (!tracked)
                        vms_archive_track(id, deadline);
        }
        pthread_mutex_unlock(&vh->state_lock);
}

/* From the refresher, which must never wait behind a verb: while one holds ops_lock (an export
 * reads a whole vault disk under it) the timers wait for the next refresh, and the listings, and
 * with them the node's libvirt age in its heartbeats, go on. */
void vms_archive_timers(struct vmhost *vh)
{
        if (pthread_mutex_trylock(&vh->ops_lock) != 0)
                return;
        vms_archive_adopt(vh);
        vms_archive_expire(vh);
        pthread_mutex_unlock(&vh->ops_lock);
}

static bool autostart_waits_for(const struct autostart_wait *w, const char *id)
{
        if (!w->begun)
                return true;
        for (size_t i = 0; i < w->n; i++)
                if (strcmp(w->names[i], id) == 0)
                        return true;
        return false;
}

/* One domain of the start-up pass: what vmhost decides, and one line saying why. */
/* Decides one domain; false when it is to be asked again at the next listing: again is true for
 * a domain libvirt was still settling at an earlier listing (its metadata may not read yet, its
 * start may fail while libvirt finishes the crash it noticed), until the pass's last listing. */
static bool autostart_one(struct vmhost *vh, struct vmh_domain *dom, bool again)
{
        const char *id = dom->name;
        struct vm_problem p = {0};
        struct vm_meta m;
        uint64_t count;
        int e;
        bool decided = true;

        if (inventory_vm_meta(dom, &m) < 0) {
                decided = !again;
                if (again)
                        log_info("autostart: domain '%s' shows no Totebox metadata yet; asked "
                                 "again",
                                 id);
                else
                        log_info("autostart: domain '%s' is not a Totebox; left alone", id);
        } else if (m.lifecycle != VM_LC_ACTIVE) {
                log_info("autostart: VM '%s' is %s; left as it is", id,
                         vm_lifecycle_name(m.lifecycle));
        } else if (dom->flags & VMH_DOM_ACTIVE) {
                log_info("autostart: VM '%s' is active and already running", id);
        } else {
                /* a start path: the counter goes up whatever it did, as for `start` */
                if (vms_do_start(vh, dom, &m, &p) < 0 && again) {
                        decided = false;
                        log_info("autostart: VM '%s' is active but not started yet: %s: %s; "
                                 "asked again",
                                 id, p.type, p.detail);
                } else if (p.type[0]) {
                        log_warn("autostart: VM '%s' is active but not started: %s: %s", id, p.type,
                                 p.detail);
                } else {
                        log_info("autostart: VM '%s' is active and its pin names this node; "
                                 "started",
                                 id);
                }
                if ((e = creations_bump(vh, &count)) < 0)
                        log_error("cannot store the creation counter in '%s': %s",
                                  vh->cfg.state_dir, strerror(-e));
        }
        return decided;
}

/* At the first libvirt listings after vmhost starts (a reboot, a power cut, a vmhost restart):
 * vmhost, not libvirt's autostart flag, starts every Totebox whose lifecycle is active and which
 * is not running, through the start verb's path (the pin gate, the refusals, the creation
 * counter), so a copied domain whose pin does not name this node never starts. A VM suspended
 * or archived stays as it is. One line per domain says what was decided and why. A domain libvirt
 * lists as running while it still settles it (VMH_DOM_SETTLING: its reconnect to a QEMU that may
 * have died while no one watched) is decided at a later listing, once libvirt knows. Returns how
 * many domains wait for a later listing: at least 1 when this one failed (all of them wait). */
size_t vms_autostart(struct vmhost *vh, struct autostart_wait *w, bool final)
{
        struct vmh_domain *doms = NULL;
        char(*wait)[IDENT_VM_MAX + 1] = NULL;
        size_t n = 0, n_wait = 0;
        int r;

        pthread_mutex_lock(&vh->ops_lock);
        r = inventory_list(vh, VMH_LIST_CONTROL, &doms, &n);
        if (r < 0) { /* nothing decided: every domain waits for the next listing */
                pthread_mutex_unlock(&vh->ops_lock);
                log_warn("autostart: cannot list the domains: %s; asking again", strerror(-r));
                return 1;
        }
        if (n > 0 && !final)
                wait = calloc(n, sizeof(*wait));
        for (size_t i = 0; i < n; i++) {
                if (!autostart_waits_for(w, doms[i].name))
                        continue;
                if (wait && (doms[i].flags & VMH_DOM_ACTIVE) &&
                    (doms[i].flags & VMH_DOM_SETTLING)) {
                        snprintf(wait[n_wait++], sizeof(*wait), "%s", doms[i].name);
                        log_debug("autostart: libvirt still settles domain '%s'; asked again",
                                  doms[i].name);
                        continue;
                }
                if (final && (doms[i].flags & VMH_DOM_SETTLING))
                        log_warn("autostart: libvirt still settles domain '%s'; decided as it is "
                                 "listed",
                                 doms[i].name);
                if (!autostart_one(vh, &doms[i], w->begun && wait != NULL) && wait)
                        snprintf(wait[n_wait++], sizeof(*wait), "%s", doms[i].name);
        }
        free(doms);
        free(w->names);
        *w = (struct autostart_wait){.begun = true, .n = n_wait, .names = wait};
        pthread_mutex_unlock(&vh->ops_lock);
        virt_request_refresh(vh);
        return n_wait;
}

/* The lifecycle verbs: resume is a start (the pin gate and the refusals apply to both). There is
 * no delete, undefine or migrate row, and no other way to reach one. A start path, like a
 * creation, increases the creation counter once done and its answer carries the value, so that
 * fleetd holds the VM's memory until figures at that counter count it (docs/contracts.md
 * section 1). */
static const struct vms_verb {
        const char *name;
        int (*run)(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m,
                   struct vm_problem *p);
        bool starts;
} vms_verbs[] = {
    {"start", vms_do_start, true},
    {"resume", vms_do_start, true},
    {"suspend", vms_do_suspend, false},
    {"archive", vms_do_archive, false},
};

static const struct vms_verb *vms_verb_find(const char *verb)
{
        for (size_t i = 0; i < sizeof(vms_verbs) / sizeof(vms_verbs[0]); i++)
                if (strcmp(verb, vms_verbs[i].name) == 0)
                        return &vms_verbs[i];
        return NULL;
}

static int vms_dispatch(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m,
                        const char *verb, struct vm_problem *p)
{
        const struct vms_verb *v = vms_verb_find(verb);

        return v ? v->run(vh, dom, m, p)
                 : vms_problem(p, -ENOENT, "not-found", "no verb '%s'", verb);
}

int vms_action(struct vmhost *vh, const char *id, const char *verb, json_t **ret_vm,
               struct vm_problem *p)
{
        struct vmh_domain *dom = malloc(sizeof(*dom));
        bool found = false;
        struct vm_meta m;
        int r = 0, e;

        if (!dom)
                return vms_problem(p, -EIO, "internal", "out of memory");
        pthread_mutex_lock(&vh->ops_lock);
        e = ident_valid(IDENT_VM, id) ? vmh_lookup(vh, id, dom) : -ENOENT;
        found = e == 0 && inventory_vm_meta(dom, &m) == 0;
        if (e < 0 && e != -ENOENT)
                r = vms_problem(p, -ENOTCONN, "libvirt-unavailable", "no libvirt connection");
        else if (!found)
                r = vms_problem(p, -ENOENT, "not-found", "no Totebox VM '%s' on node '%s'", id,
                                vh->cfg.node_id);
        r = r ?: vms_dispatch(vh, dom, &m, verb, p);
        if (r == 0)
                *ret_vm = vms_vm_json(vh, id, &m);
        if (r == 0 && !*ret_vm)
                r = vms_problem(p, -EIO, "internal", "cannot describe '%s'", id);
        if (e == 0 && vms_verb_find(verb) && vms_verb_find(verb)->starts)
                r = vms_create_count(vh, r, ret_vm, p);
        pthread_mutex_unlock(&vh->ops_lock);
        free(dom);
        if (r == 0)
                log_info("VM '%s': %s done", id, verb);
        else
                log_warn("VM '%s': %s refused: %s: %s", id, verb, p->type, p->detail);
        virt_request_refresh(vh);
        return r;
}
