/* Roster -> WireGuard peers. The plan (mesh_plan_peers) is pure so the topology is unit-tested;
 * mesh_apply_roster diffs it against the live interface, so unchanged peers keep their sessions. */
#include "common/mesh.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

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
                        if (wg_endpoint_parse(n->endpoint, &p->endpoint) < 0)
                                return -EINVAL;
                        p->has_endpoint = true;
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
