/* Roster -> WireGuard peers, and the roster rules of a node's mesh state (only higher versions
 * signed by the genesis key are stored and applied). The plan (mesh_plan_peers) is pure so the
 * topology is unit-tested; mesh_apply_roster diffs it against the live interface, so unchanged
 * peers keep their sessions. */
#include "common/mesh.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/small_file.h"

const struct roster_node *mesh_hub(const struct roster *r)
{
        const struct roster_node *ctl = roster_find_by_id(r, r->controller);

        for (size_t i = 0; i < r->n_nodes; i++) {
                if (r->nodes[i].role == ROSTER_ROLE_RELAY && r->nodes[i].endpoint[0])
                        return &r->nodes[i];
        }
        if (ctl && ctl->endpoint[0])
                return ctl;
        for (size_t i = 0; i < r->n_nodes; i++) {
                if (r->nodes[i].endpoint[0])
                        return &r->nodes[i];
        }
        return NULL;
}

static struct wg_peer *mesh_find_peer(struct wg_device *d, const uint8_t *key)
{
        for (size_t i = 0; i < d->n_peers; i++) {
                if (memcmp(d->peers[i].public_key, key, WG_KEY_LEN) == 0)
                        return &d->peers[i];
        }
        return NULL;
}

/* The peer entry for node n, created on first use. */
static int mesh_peer_for(struct wg_device *d, const struct roster_node *n, bool self_reachable,
                         struct wg_peer **ret)
{
        uint8_t key[WG_KEY_LEN];
        struct wg_peer *p;

        if (wg_key_from_base64(key, n->wg_public_key) < 0)
                return -EINVAL;
        p = mesh_find_peer(d, key);
        if (!p) {
                p = wg_device_add_peer(d);
                if (!p)
                        return -E2BIG;
                memcpy(p->public_key, key, WG_KEY_LEN);
                if (n->endpoint[0]) {
                        /* A host name is resolved now; one that does not resolve leaves the
                         * peer without an endpoint until the next apply (it can still reach
                         * us), a malformed endpoint fails the roster. */
                        int r = wg_endpoint_resolve(n->endpoint, &p->endpoint);

                        if (r == -EINVAL)
                                return -EINVAL;
                        if (r < 0)
                                log_warn("mesh: endpoint '%s' of '%s' does not resolve: %s",
                                         n->endpoint, n->id, strerror(-r));
                        p->has_endpoint = r == 0;
                }
                if (!self_reachable && n->endpoint[0])
                        p->keepalive_s = MESH_KEEPALIVE_S;
                if (wg_peer_add_allowed_ip(p, n->addr, 32) < 0)
                        return -EINVAL;
        }
        *ret = p;
        return 0;
}

int mesh_plan_peers(const struct roster *r, const char *self_id, struct wg_device *d)
{
        const struct roster_node *self = roster_find_by_id(r, self_id);
        const struct roster_node *hub = mesh_hub(r);
        struct wg_peer *p;
        int ret;

        if (!self)
                return -ENOENT;
        for (size_t i = 0; i < r->n_nodes; i++) {
                const struct roster_node *n = &r->nodes[i];

                if (n == self || !n->wg_public_key[0])
                        continue;
                if (self->endpoint[0] || n->endpoint[0] || self == hub) {
                        ret = mesh_peer_for(d, n, self->endpoint[0] != '\0', &p);
                } else {
                        if (!hub || !hub->wg_public_key[0])
                                continue; /* unreachable: no hub in the roster */
                        ret = mesh_peer_for(d, hub, false, &p);
                        if (ret == 0)
                                ret = wg_peer_add_allowed_ip(p, n->addr, 32);
                }
                if (ret < 0)
                        return ret;
        }
        return 0;
}

int mesh_apply_roster(const char *ifname, const struct roster *r, const char *self_id)
{
        const struct roster_node *self = roster_find_by_id(r, self_id);
        struct wg_device *want = wg_device_new(ifname), *have = NULL;
        struct wg_peer *p;
        int ret;

        if (!want)
                return -EINVAL;
        if (!self) {
                ret = -ENOENT;
                goto cleanup;
        }
        ret = mesh_plan_peers(r, self_id, want);
        if (ret < 0)
                goto cleanup;
        ret = wg_device_get(ifname, &have);
        if (ret < 0)
                goto cleanup;
        for (size_t i = 0; i < have->n_peers; i++) {
                if (mesh_find_peer(want, have->peers[i].public_key))
                        continue;
                p = wg_device_add_peer(want);
                if (!p) {
                        ret = -E2BIG;
                        goto cleanup;
                }
                memcpy(p->public_key, have->peers[i].public_key, WG_KEY_LEN);
                p->remove = true;
        }
        ret = wg_device_set(want);
        if (ret == 0)
                ret = wg_interface_set_address(ifname, self->addr, MESH_PREFIX_LEN);
cleanup:
        wg_device_free(want);
        wg_device_free(have);
        return ret;
}

int mesh_interface_setup(const char *ifname, const char *key_path, uint16_t port,
                         struct in_addr addr)
{
        struct wg_device *d = wg_device_new(ifname);
        int ret;

        if (!d)
                return -EINVAL;
        ret = wg_key_load(key_path, d->private_key);
        if (ret < 0)
                goto cleanup;
        d->has_private_key = true;
        d->has_listen_port = true;
        d->listen_port = port;
        ret = wg_interface_create(ifname, NULL);
        if (ret == 0)
                ret = wg_device_set(d);
        if (ret == 0)
                ret = wg_interface_set_address(ifname, addr, MESH_PREFIX_LEN);
cleanup:
        wg_device_free(d);
        return ret;
}

int mesh_genesis_pub_load(const char *state_dir, uint8_t pk[32])
{
        char *path = small_file_path(state_dir, "genesis.pub"), buf[128];
        size_t bin = 0;
        ssize_t n;
        int fd;

        if (!path)
                return -ENOMEM;
        /* a path of PATH_MAX or more fails here with -ENAMETOOLONG */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        free(path);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return n < 0 ? -errno : -EINVAL;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                n--;
        if (sodium_base642bin(pk, 32, buf, (size_t)n, NULL, &bin, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin != 32)
                return -EINVAL;
        return 0;
}

int mesh_roster_store(const char *state_dir, const struct roster *r)
{
        json_t *o = roster_to_json(r);
        char *s = o ? json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        char *path = small_file_path(state_dir, "roster.json");
        int ret = s && path ? small_file_write(path, s, strlen(s), 0644) : -ENOMEM;

        json_decref(o);
        free(s);
        free(path);
        return ret;
}

int mesh_roster_accept(const char *state_dir, const struct roster *r, char *err, size_t errsize)
{
        char *path = NULL, e[256];
        struct roster *cur = NULL;
        uint8_t pk[32];
        int ret = mesh_genesis_pub_load(state_dir, pk);

        if (ret < 0) {
                snprintf(err, errsize, "no genesis public key in '%s': %s", state_dir,
                         strerror(-ret));
                return -ENOKEY;
        }
        if (roster_verify(r, pk) < 0) {
                snprintf(err, errsize,
                         "roster version %llu is not signed by this fleet's genesis key; refused",
                         (unsigned long long)r->version);
                return -EBADMSG;
        }
        path = small_file_path(state_dir, "roster.json");
        if (!path) {
                snprintf(err, errsize, "cannot store the roster in '%s': %s", state_dir,
                         strerror(ENOMEM));
                return -ENOMEM;
        }
        if (access(path, F_OK) == 0)
                cur = roster_load_file(path, e, sizeof(e));
        free(path);
        if (cur && r->version <= cur->version) {
                snprintf(err, errsize,
                         "roster version %llu is not newer than the stored version %llu; refused",
                         (unsigned long long)r->version, (unsigned long long)cur->version);
                ret = -ESTALE;
        } else if (cur && strcmp(cur->fleet_id, r->fleet_id) != 0) {
                snprintf(err, errsize, "roster is for fleet '%s', not '%s'; refused", r->fleet_id,
                         cur->fleet_id);
                ret = -EBADMSG;
        } else {
                ret = mesh_roster_store(state_dir, r);
                if (ret < 0)
                        snprintf(err, errsize, "cannot store the roster in '%s': %s", state_dir,
                                 strerror(-ret));
        }
        roster_free(cur);
        return ret;
}

int mesh_roster_update(const char *state_dir, const char *body, size_t len, const char *ifname,
                       const char *self_id, char *err, size_t errsize)
{
        struct roster *r = roster_parse(body, len, err, errsize);
        int ret;

        if (!r)
                return -EINVAL;
        ret = mesh_roster_accept(state_dir, r, err, errsize);
        if (ret == 0) {
                ret = mesh_apply_roster(ifname, r, self_id);
                if (ret < 0)
                        snprintf(err, errsize,
                                 "roster version %llu stored but not applied to '%s': %s",
                                 (unsigned long long)r->version, ifname, strerror(-ret));
        }
        roster_free(r);
        return ret;
}
