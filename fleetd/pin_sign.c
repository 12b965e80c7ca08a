/* The controller's pin key and the pins it signs. The key is an Ed25519 seed in
 * state_dir/pin.key (base64, 0600; refused when others can read it), made at first start; its
 * public half goes to state_dir/pin.pub and /v1/health, and the genesis publishes it in the
 * roster (`totebox-pair controller-key`), which is where every vmhost learns it. A pin is signed
 * at each dispatch of a creation: Ed25519 is deterministic, so a retried creation carries the
 * same pin, and nothing but the VM row (already durable) is needed to sign it again. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pin.h"
#include "common/small_file.h"
#include "common/wg.h"
#include "fleetd/fleetd.h"

static int pin_key_write_public(const char *dir, const char *b64)
{
        char *path = small_file_path(dir, "pin.pub"), *tmp = small_file_path(dir, "pin.pub.tmp");
        int fd = -1, r = 0;

        if (!path || !tmp)
                r = -ENOMEM;
        else if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
                r = -errno;
        if (fd >= 0) {
                if (dprintf(fd, "%s\n", b64) < 0 || fsync(fd) < 0)
                        r = -EIO;
                close(fd);
                if (r == 0 && rename(tmp, path) < 0)
                        r = -errno;
        }
        free(path);
        free(tmp);
        return r;
}

int pin_key_open(struct fleetd *f)
{
        uint8_t seed[32], pk[32];
        char *path = small_file_path(f->cfg.state_dir, "pin.key");
        int r;

        if (!path)
                return -ENOMEM;
        r = wg_key_load(path, seed); /* the same file format: base64 of 32 bytes, 0600 */
        if (r == -ENOENT) {
                randombytes_buf(seed, sizeof(seed));
                r = wg_key_save(path, seed);
                if (r == 0)
                        log_info("pin key made in '%s'", path);
        }
        if (r < 0) {
                log_error("cannot load or make the pin key '%s': %s", path, strerror(-r));
                sodium_memzero(seed, sizeof(seed));
                free(path);
                return r;
        }
        free(path);
        crypto_sign_seed_keypair(pk, f->pin_sk, seed);
        sodium_memzero(seed, sizeof(seed));
        sodium_bin2base64(f->pin_pk, sizeof(f->pin_pk), pk, sizeof(pk),
                          sodium_base64_VARIANT_ORIGINAL);
        r = pin_key_write_public(f->cfg.state_dir, f->pin_pk);
        if (r < 0)
                log_warn("cannot write '%s/pin.pub': %s", f->cfg.state_dir, strerror(-r));
        return 0;
}

bool pin_key_in_roster(const struct fleetd *f)
{
        return f->table.roster && f->pin_pk[0] &&
               strcmp(f->table.roster->controller_pin_key, f->pin_pk) == 0;
}

json_t *pin_sign_vm(const struct fleetd *f, const struct fleet_vm *vm)
{
        const struct fleet_node *n = node_table_find(&f->table, vm->node_id);
        struct pin p = {0};

        snprintf(p.fleet_id, sizeof(p.fleet_id), "%s",
                 f->table.roster ? f->table.roster->fleet_id : "");
        snprintf(p.vm_id, sizeof(p.vm_id), "%s", vm->id);
        snprintf(p.node_id, sizeof(p.node_id), "%s", vm->node_id);
        snprintf(p.node_wg_key, sizeof(p.node_wg_key), "%s", n ? n->rn->wg_public_key : "");
        snprintf(p.entity, sizeof(p.entity), "%s", vm->entity);
        snprintf(p.image, sizeof(p.image), "%s", vm->image);
        snprintf(p.request_id, sizeof(p.request_id), "%s", vm->request_id);
        return pin_sign(&p, f->pin_sk) < 0 ? NULL : pin_to_json(&p);
}
