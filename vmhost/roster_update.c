/* Roster updates (POST /v1/roster) and the roster vmhost starts from. A pushed roster is
 * accepted only with a valid signature by the pinned genesis key (config genesis_public_key) and
 * a version higher than the stored one; it is then written to state_dir/roster.json (0600,
 * atomically) and handed to the WireGuard side, roster_apply_wireguard(). The roster also says
 * who the controller is, which the node API answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mesh.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

static char *roster_state_path(struct vmhost *vh)
{
        char *p = NULL;

        return asprintf(&p, "%s/roster.json", vh->cfg.state_dir) < 0 ? NULL : p;
}

int roster_apply_wireguard(struct vmhost *vh, const struct roster *r)
{
        /* the helper reads and checks the stored copy, applies it and writes the mesh state's */
        if (!vh->cfg.wg_interface[0] && !vh->cfg.mesh_state_dir[0])
                return 0;
        return vmh_apply_peers(vh, r->version);
}

int roster_genesis_key(const struct vmhost *vh, uint8_t pk[32])
{
        const char *b64 = vh->cfg.genesis_public_key;
        size_t n = 0;

        /* read before vmhost dropped privilege (the mesh state is root's) */
        if (vh->have_genesis) {
                memcpy(pk, vh->genesis_pk, 32);
                return 0;
        }

        /* the key learned at pairing, unless the config names one */
        if (!b64[0] && vh->cfg.mesh_state_dir[0])
                return mesh_genesis_pub_load(vh->cfg.mesh_state_dir, pk) < 0 ? -ENOKEY : 0;
        if (!b64[0] ||
            sodium_base642bin(pk, 32, b64, strlen(b64), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != 32)
                return -ENOKEY;
        return 0;
}

static int roster_store(struct vmhost *vh, const char *body, size_t len)
{
        char *path = roster_state_path(vh), *tmp = NULL;
        int fd = -1, r = -ENOMEM;

        /* tmp on the heap (the 4400-byte buffer it replaces always held it: state_dir is under
         * 4096 bytes) */
        if (!path || asprintf(&tmp, "%s.tmp", path) < 0) {
                free(path);
                return r;
        }
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        r = fd < 0 ? -errno : 0;
        if (r == 0 && (write(fd, body, len) != (ssize_t)len || fsync(fd) < 0))
                r = -EIO;
        if (fd >= 0)
                close(fd);
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        free(tmp);
        free(path);
        return r;
}

static void roster_install(struct vmhost *vh, struct roster *r)
{
        pthread_mutex_lock(&vh->state_lock);
        roster_free(vh->roster);
        vh->roster = r;
        pthread_mutex_unlock(&vh->state_lock);
}

/* With a mesh state dir, the newer of the mesh's roster and vmhost's own copy. */
static struct roster *roster_load_newest(struct vmhost *vh, const char *own, char *err,
                                         size_t errsize)
{
        char *mesh = NULL;
        struct roster *a = NULL, *b = NULL;

        if (asprintf(&mesh, "%s/roster.json", vh->cfg.mesh_state_dir) >= 0 &&
            access(mesh, R_OK) == 0)
                a = roster_load_file(mesh, err, errsize);
        if (own && access(own, R_OK) == 0)
                b = roster_load_file(own, err, errsize);
        free(mesh);
        if (a && b && b->version > a->version) {
                roster_free(a);
                return b;
        }
        roster_free(b);
        if (!a)
                snprintf(err, errsize, "no roster in '%.200s'", vh->cfg.mesh_state_dir);
        return a;
}

int roster_update_start(struct vmhost *vh)
{
        char err[256], *path = roster_state_path(vh);
        struct roster *r = NULL;

        vh->have_genesis = roster_genesis_key(vh, vh->genesis_pk) == 0;
        if (vh->cfg.mesh_state_dir[0])
                r = roster_load_newest(vh, path, err, sizeof(err));
        else if (path && access(path, R_OK) == 0)
                r = roster_load_file(path, err, sizeof(err));
        else if (vh->cfg.roster_file[0])
                r = roster_load_file(vh->cfg.roster_file, err, sizeof(err));
        else
                snprintf(err, sizeof(err), "no roster yet");
        free(path);
        if (!r) {
                log_info("starting without a roster (%s): the node API answers only "
                         "node_api_allow",
                         err);
                return 0;
        }
        log_info("roster version %llu: controller '%s'", (unsigned long long)r->version,
                 r->controller);
        roster_install(vh, r);
        return 0;
}

static int roster_check(struct vmhost *vh, const struct roster *r, struct vm_problem *p)
{
        uint8_t pk[32];
        uint64_t have = 0;

        if (roster_genesis_key(vh, pk) < 0)
                return vms_problem(p, -ENOKEY, "no-genesis-key",
                                   "this node has no genesis key configured; rosters are refused");
        if (roster_verify(r, pk) < 0)
                return vms_problem(p, -EACCES, "bad-signature",
                                   "roster version %llu is not signed by the genesis key",
                                   (unsigned long long)r->version);
        pthread_mutex_lock(&vh->state_lock);
        if (vh->roster)
                have = vh->roster->version;
        pthread_mutex_unlock(&vh->state_lock);
        if (r->version == have) /* sent again (fleetd's anti-entropy, a second push) */
                return vms_problem(p, -EALREADY, "stale-roster",
                                   "roster version %llu is the one this node holds",
                                   (unsigned long long)r->version);
        if (r->version < have)
                return vms_problem(p, -ESTALE, "stale-roster",
                                   "roster version %llu is not newer than %llu",
                                   (unsigned long long)r->version, (unsigned long long)have);
        return 0;
}

int roster_update_apply(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                        struct vm_problem *p)
{
        char err[256];
        struct roster *r = roster_parse(body, len, err, sizeof(err));
        int ret_code, wg;

        if (!r)
                return vms_problem(p, -EINVAL, "bad-roster", "%s", err);
        pthread_mutex_lock(&vh->ops_lock);
        ret_code = roster_check(vh, r, p);
        if (ret_code == 0 && roster_store(vh, body, len) < 0)
                ret_code = vms_problem(p, -EIO, "internal", "cannot store the roster");
        pthread_mutex_unlock(&vh->ops_lock);
        if (ret_code == -EALREADY) {
                log_debug("roster version %llu sent again: %s", (unsigned long long)r->version,
                          p->detail);
        } else if (ret_code < 0) {
                log_warn("roster version %llu refused: %s", (unsigned long long)r->version,
                         p->detail);
        }
        if (ret_code < 0) {
                roster_free(r);
                return ret_code;
        }
        wg = roster_apply_wireguard(vh, r);
        if (wg < 0)
                log_warn("roster version %llu stored but not applied to '%s': %s",
                         (unsigned long long)r->version, vh->cfg.wg_interface, strerror(-wg));
        log_info("roster version %llu accepted: controller '%s', %zu nodes",
                 (unsigned long long)r->version, r->controller, r->n_nodes);
        *ret = json_pack("{s:I, s:b, s:s}", "version", (json_int_t)r->version, "applied", wg == 0,
                         "interface", vh->cfg.wg_interface);
        roster_install(vh, r);
        return 0;
}

int roster_pin_key(struct vmhost *vh, uint8_t ret_pk[32], char ret_fleet_id[NODE_ID_MAX + 1])
{
        uint8_t gk[32], pk[32];
        int r = roster_genesis_key(vh, gk);

        /* the roster vmhost started from was read from disk: it counts only when it verifies */
        pthread_mutex_lock(&vh->state_lock);
        if (r == 0 && (!vh->roster || roster_verify(vh->roster, gk) < 0 ||
                       pin_roster_key(vh->roster, pk) < 0))
                r = -ENOKEY;
        if (r == 0)
                memcpy(ret_fleet_id, vh->roster->fleet_id, sizeof(vh->roster->fleet_id));
        pthread_mutex_unlock(&vh->state_lock);
        if (r == 0)
                memcpy(ret_pk, pk, sizeof(pk));
        return r;
}

bool roster_member_address(struct vmhost *vh, const char *addr)
{
        struct in_addr a;
        bool ok = false;

        if (inet_pton(AF_INET, addr, &a) != 1)
                return false;
        pthread_mutex_lock(&vh->state_lock);
        ok = vh->roster && roster_find_by_address(vh->roster, a) != NULL;
        pthread_mutex_unlock(&vh->state_lock);
        return ok;
}

bool roster_update_allowed(struct vmhost *vh, const char *addr)
{
        const struct roster_node *n;
        bool ok = false;

        pthread_mutex_lock(&vh->state_lock);
        if (vh->roster && (n = roster_find_by_id(vh->roster, vh->roster->controller)))
                ok = strcmp(n->mesh_address, addr) == 0;
        pthread_mutex_unlock(&vh->state_lock);
        return ok;
}
