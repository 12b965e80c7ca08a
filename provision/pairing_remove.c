/* The genesis removes (revokes) a node: a new roster version without it, the node moved to the
 * roster's `revoked` list (id, WireGuard key, mesh address), signed by the genesis key, stored,
 * applied to the genesis' own interface and pushed to every remaining member's vmhost, which
 * applies it too: the node's key leaves every peer as soon as the push arrives. fleetd, reading
 * the controller's copy, refuses the node's heartbeats (reason `revoked`) and shows its VMs as on
 * a removed node, never moving them. Like admitting a node, removing one is an operator decision
 * made on the genesis; the removed node itself is not told. */
#include <errno.h>
#include <net/if.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/mesh.h"
#include "provision/pairing.h"

static struct roster *pair_roster_without(const struct roster *cur, const struct roster_node *gone,
                                          const uint8_t sk[64], char *err, size_t errsize)
{
        json_t *o = roster_to_json(cur), *nodes = json_array(), *revoked;

        json_object_del(o, "signature");
        json_object_set_new(o, "version", json_integer((json_int_t)cur->version + 1));
        for (size_t i = 0; i < cur->n_nodes; i++)
                if (&cur->nodes[i] != gone)
                        json_array_append(nodes, json_array_get(json_object_get(o, "nodes"), i));
        json_object_set_new(o, "nodes", nodes);
        revoked = json_object_get(o, "revoked");
        if (!revoked) {
                revoked = json_array();
                json_object_set_new(o, "revoked", revoked);
        }
        json_array_append_new(revoked,
                              json_pack("{s:s, s:s, s:s}", "id", gone->id, "wg_public_key",
                                        gone->wg_public_key, "mesh_address", gone->mesh_address));
        return roster_from_json_signed(o, sk, err, errsize);
}

/* Why this node cannot be removed, or NULL. */
static const char *pair_remove_refusal(const struct roster *cur, const struct pair_node_conf *self,
                                       const char *id)
{
        if (strcmp(id, self->node_id) == 0)
                return "it is the genesis (this node holds the genesis key)";
        if (strcmp(id, cur->controller) == 0)
                return "it runs the fleet controller (move the controller first)";
        return NULL;
}

static int pair_remove_check(const struct roster *cur, const struct pair_node_conf *self,
                             const char *id, FILE *out)
{
        const char *why;

        if (!ident_valid(IDENT_NODE, id)) {
                fprintf(stderr, "remove-node: '%.64s' is not a node id\n", id);
                return -EINVAL;
        }
        if (!roster_find_by_id(cur, id)) {
                if (roster_find_revoked(cur, id)) {
                        fprintf(out, "node '%s' was already removed (roster version %llu)\n", id,
                                (unsigned long long)cur->version);
                        return 1;
                }
                fprintf(stderr, "remove-node: node '%s' is not in roster version %llu\n", id,
                        (unsigned long long)cur->version);
                return -ENOENT;
        }
        why = pair_remove_refusal(cur, self, id);
        if (why) {
                fprintf(stderr, "remove-node: node '%s' is not removed: %s\n", id, why);
                return -EPERM;
        }
        return 0;
}

/* Signs and stores the roster without id; ret_next is the new roster. */
static int pair_remove_sign(const char *state_dir, const struct roster *cur, const char *id,
                            struct roster **ret_next)
{
        struct roster *next = NULL;
        char err[256] = "";
        uint8_t sk[64];
        int ret = pair_genesis_key_require("remove-node", state_dir, sk);

        if (ret < 0)
                return ret;
        next = pair_roster_without(cur, roster_find_by_id(cur, id), sk, err, sizeof(err));
        sodium_memzero(sk, sizeof(sk));
        ret = next ? pair_roster_store(state_dir, next) : -EINVAL;
        if (ret < 0) {
                fprintf(stderr, "remove-node: cannot make the new roster: %s\n",
                        err[0] ? err : strerror(-ret));
                roster_free(next);
                return ret;
        }
        *ret_next = next;
        return 0;
}

int pair_node_remove(const char *state_dir, const char *id, unsigned node_api_port, bool no_wg,
                     FILE *out)
{
        struct pair_node_conf self;
        struct roster *cur = NULL, *next = NULL;
        char err[256] = "";
        int ret = pair_conf_load(state_dir, &self);

        if (ret < 0) {
                fprintf(stderr, "remove-node: no node.conf in '%s': %s\n", state_dir,
                        strerror(-ret));
                return ret;
        }
        cur = pair_roster_load(state_dir, err, sizeof(err));
        if (!cur) {
                fprintf(stderr, "remove-node: %s\n", err);
                return -ENOENT;
        }
        ret = pair_remove_check(cur, &self, id, out);
        if (ret == 0)
                ret = pair_remove_sign(state_dir, cur, id, &next);
        if (ret != 0) {
                roster_free(cur);
                return ret < 0 ? ret : 0;
        }
        fprintf(out, "roster version %llu removes node '%s' (%s)\n",
                (unsigned long long)next->version, id, roster_find_revoked(next, id)->mesh_address);
        if (!no_wg && if_nametoindex(self.ifname) &&
            mesh_apply_roster(self.ifname, next, self.node_id) < 0)
                fprintf(out, "warning: roster version %llu not applied to '%s'\n",
                        (unsigned long long)next->version, self.ifname);
        /* every member, the genesis' own vmhost included (it keeps its own copy) */
        pair_roster_push(next, "", NULL, node_api_port, out);
        roster_free(cur);
        roster_free(next);
        return 0;
}
