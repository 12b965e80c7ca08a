/* Start-up and shutdown of fleetd's state: the store, the roster, the VM table rebuilt from the
 * store (creations still in flight are dispatched again with the same request id, so kill -9
 * neither loses nor doubles one), and the dispatcher. Every VM gets its reservation back: the
 * store does not say which ones the nodes' figures reflect, so each node's next inventory and
 * heartbeat tell (docs/fleetd.md, "Reservations"). */
#include <curl/curl.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/store.h"

static int fleetd_load_vm(void *ctx, const struct fleet_vm *vm)
{
        struct fleetd *f = ctx;
        struct fleet_vm *added = vm_table_add(f, vm);

        if (!added)
                return -ENOMEM;
        vm_reserve_again(f, added);
        if (added->status == VM_CREATING) {
                log_info("VM '%s' was being created on node '%s': dispatching again", added->id,
                         added->node_id);
        }
        return 0;
}

static int fleetd_open_store(struct fleetd *f)
{
        int v = 0, r = store_open(f->cfg.state_dir, &f->store);

        if (r == -EPROTONOSUPPORT && store_file_version(f->cfg.state_dir, &v) == 0) {
                log_error("the state database in '%s' has schema version %d, newer than this "
                          "fleetd (%s) knows (%d): refusing to start; run the fleetd that wrote "
                          "it, or restore a backup made for this version (docs/operations.md)",
                          f->cfg.state_dir, v, TOTEBOX_VERSION, STORE_SCHEMA_VERSION);
                return r;
        }
        if (r < 0)
                log_error("cannot open the state database in '%s': %s", f->cfg.state_dir,
                          strerror(-r));
        return r;
}

/* The store belongs to the fleet whose roster it first ran with: a state directory (or a
 * restored backup) of another fleet is refused rather than mixed into this one. */
static int fleetd_check_fleet_id(struct fleetd *f)
{
        const char *want = f->table.roster->fleet_id;
        char held[128];
        int r = store_meta_claim(f->store, "fleet_id", want, held, sizeof(held));

        if (r == -EXDEV)
                log_error("the state database in '%s' belongs to fleet '%s' but the roster names "
                          "fleet '%s': refusing to start",
                          f->cfg.state_dir, held, want);
        else if (r < 0)
                log_error("cannot record the fleet id in the state database: %s", strerror(-r));
        return r;
}

int fleetd_open(struct fleetd *f)
{
        int r;

        f->started_ms = clock_monotonic_ms();
        f->started_wall_ms = clock_realtime_ms();
        r = fleetd_open_store(f);
        r = r ?: (sodium_init() < 0 ? -EIO : pin_key_open(f));
        r = r ?: roster_reload(f, true);
        r = r ?: fleetd_check_fleet_id(f);
        if (r < 0)
                return r;
        if (!pin_key_in_roster(f))
                log_warn("the roster does not name this controller's pin key '%s': every vmhost "
                         "refuses the creations it dispatches until the genesis publishes it "
                         "(totebox-pair controller-key)",
                         f->pin_pk);
        r = audit_open(f);
        r = r ?: images_start(f);
        if (r < 0)
                return r;
        vault_witness_open(f); /* without its key fleetd still checks, and cosigns nothing */
        if (!f->transport.call) {
                struct fleet_node *self = node_table_find(&f->table, f->table.roster->controller);

                node_client_init(&f->transport, self ? self->rn->mesh_address : NULL);
        }
        pthread_mutex_lock(&f->lock);
        r = store_vm_load(f->store, fleetd_load_vm, f);
        pthread_mutex_unlock(&f->lock);
        if (r < 0) {
                log_error("cannot load the VMs from the state database");
                return r;
        }
        log_info("%zu VMs loaded from '%s'", f->n_vms, f->cfg.state_dir);
        if (export_load_retired(f) < 0)
                log_warn("cannot read the re-homings from the audit record: a node that holds a "
                         "retired copy shows it as misplaced");
        ops_recover(f);
        audit_append(
            f->store, false, "fleetd.started", "", "fleetd",
            json_pack("{s:s, s:I}", "version", TOTEBOX_VERSION, "vms", (json_int_t)f->n_vms));
        return 0;
}

void fleetd_close(struct fleetd *f)
{
        images_stop(f);
        ops_wait_idle(f);
        dispatch_stop(f);
        audit_close(f);
        vm_table_free(f);
        node_table_done(&f->table);
        store_close(f->store);
        f->store = NULL;
}
