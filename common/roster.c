/* Roster parsing, lookup and signatures. The roster is what turns a mesh address into a node
 * identity: WireGuard's cryptokey routing makes the source address proof of the sender. */
#include "common/roster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_input.h"
#include "common/wg.h"

static const char *const roster_role_names[] = {"node", "relay", "cloud"};

const char *roster_role_name(enum roster_role role)
{
        return roster_role_names[role];
}

int roster_role_parse(const char *s, enum roster_role *ret)
{
        for (unsigned i = 0; i < 3; i++) {
                if (strcmp(s, roster_role_names[i]) == 0) {
                        *ret = (enum roster_role)i;
                        return 0;
                }
        }
        return -EINVAL;
}

void roster_free(struct roster *r)
{
        if (!r)
                return;
        free(r->nodes);
        free(r->revoked);
        free(r->by_addr);
        free(r);
}

static int roster_parse_node(const json_t *o, struct roster_node *n, struct json_input_error *err)
{
        static const char *const fields[] = {"id",           "name",     "role", "wg_public_key",
                                             "mesh_address", "endpoint", NULL};
        char role[16] = "";
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, err);
        r = r ?: json_input_copy_string(o, "id", true, n->id, sizeof(n->id), err);
        r = r ?: json_input_copy_string(o, "name", false, n->name, sizeof(n->name), err);
        r = r ?: json_input_copy_string(o, "role", true, role, sizeof(role), err);
        r = r
                ?: json_input_copy_string(o, "wg_public_key", false, n->wg_public_key,
                                          sizeof(n->wg_public_key), err);
        r = r
                ?: json_input_copy_string(o, "mesh_address", true, n->mesh_address,
                                          sizeof(n->mesh_address), err);
        r = r
                ?: json_input_copy_string(o, "endpoint", false, n->endpoint, sizeof(n->endpoint),
                                          err);
        if (r < 0)
                return r;
        if (!ident_valid(IDENT_NODE, n->id))
                return json_input_fail(err, "node id '%s' is not valid", n->id);
        if (roster_role_parse(role, &n->role) < 0)
                return json_input_fail(err, "node '%s' has unknown role '%s'", n->id, role);
        if (inet_pton(AF_INET, n->mesh_address, &n->addr) != 1)
                return json_input_fail(err, "node '%s' has invalid mesh_address '%s'", n->id,
                                       n->mesh_address);
        if (n->endpoint[0] && !wg_endpoint_syntax_ok(n->endpoint))
                return json_input_fail(err,
                                       "node '%s' has endpoint '%s', not IPV4:PORT, [IPV6]:PORT "
                                       "or HOSTNAME:PORT",
                                       n->id, n->endpoint);
        if (!n->name[0])
                memcpy(n->name, n->id, sizeof(n->id));
        return 0;
}

static int roster_id_cmp(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int roster_parse_revoked_one(const json_t *o, struct roster_revoked *v,
                                    struct json_input_error *err)
{
        static const char *const fields[] = {"id", "wg_public_key", "mesh_address", NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, fields, err);
        r = r ?: json_input_copy_string(o, "id", true, v->id, sizeof(v->id), err);
        r = r
                ?: json_input_copy_string(o, "wg_public_key", false, v->wg_public_key,
                                          sizeof(v->wg_public_key), err);
        r = r
                ?: json_input_copy_string(o, "mesh_address", true, v->mesh_address,
                                          sizeof(v->mesh_address), err);
        if (r < 0)
                return r;
        if (!ident_valid(IDENT_NODE, v->id))
                return json_input_fail(err, "revoked node id '%s' is not valid", v->id);
        if (inet_pton(AF_INET, v->mesh_address, &v->addr) != 1)
                return json_input_fail(err, "revoked node '%s' has invalid mesh_address '%s'",
                                       v->id, v->mesh_address);
        return 0;
}

/* No id twice among members and revoked nodes together (sorted, O(n log n): the roster is
 * parsed before its signature is checked). */
static int roster_check_revoked_ids(const struct roster *r, struct json_input_error *err)
{
        size_t n = r->n_nodes + r->n_revoked;
        const char **ids = calloc(n ? n : 1, sizeof(*ids));
        int ret = 0;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_nodes; i++)
                ids[i] = r->nodes[i].id;
        for (size_t i = 0; i < r->n_revoked; i++)
                ids[r->n_nodes + i] = r->revoked[i].id;
        qsort(ids, n, sizeof(*ids), roster_id_cmp);
        for (size_t i = 1; i < n && ret == 0; i++)
                if (strcmp(ids[i], ids[i - 1]) == 0)
                        ret = json_input_fail(err, "revoked node '%s' is a member or revoked twice",
                                              ids[i]);
        free(ids);
        return ret;
}

/* "revoked": optional; no id twice, and no id or address that is also a member's. */
static int roster_parse_revoked(const json_t *o, struct roster *r, struct json_input_error *err)
{
        json_t *a = json_object_get(o, "revoked");
        int ret;

        if (!a)
                return 0;
        if (!json_is_array(a) || json_array_size(a) > ROSTER_MAX_NODES)
                return json_input_fail(err, "field 'revoked' must be an array of at most %d nodes",
                                       ROSTER_MAX_NODES);
        r->n_revoked = json_array_size(a);
        r->revoked = calloc(r->n_revoked ? r->n_revoked : 1, sizeof(*r->revoked));
        if (!r->revoked)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_revoked; i++) {
                ret = roster_parse_revoked_one(json_array_get(a, i), &r->revoked[i], err);
                if (ret < 0)
                        return ret;
                if (roster_find_by_address(r, r->revoked[i].addr))
                        return json_input_fail(err, "revoked node '%s' has a member's address '%s'",
                                               r->revoked[i].id, r->revoked[i].mesh_address);
        }
        return roster_check_revoked_ids(r, err);
}

static int roster_index_cmp(const void *a, const void *b)
{
        const struct roster_addr_index *x = a, *y = b;

        return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int roster_check_unique_ids(const struct roster *r)
{
        const char **ids = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*ids));
        int ret = 0;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_nodes; i++)
                ids[i] = r->nodes[i].id;
        qsort(ids, r->n_nodes, sizeof(*ids), roster_id_cmp);
        for (size_t i = 1; i < r->n_nodes && ret == 0; i++)
                if (strcmp(ids[i], ids[i - 1]) == 0)
                        ret = -EEXIST;
        free(ids);
        return ret;
}

static int roster_build_index(struct roster *r, struct json_input_error *err)
{
        r->by_addr = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*r->by_addr));
        if (!r->by_addr)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_nodes; i++) {
                r->by_addr[i].addr = ntohl(r->nodes[i].addr.s_addr);
                r->by_addr[i].node = (uint32_t)i;
        }
        if (roster_check_unique_ids(r) < 0)
                return json_input_fail(err, "a node id appears twice in the roster");
        qsort(r->by_addr, r->n_nodes, sizeof(*r->by_addr), roster_index_cmp);
        for (size_t i = 1; i < r->n_nodes; i++)
                if (r->by_addr[i].addr == r->by_addr[i - 1].addr)
                        return json_input_fail(err, "mesh address '%s' appears twice",
                                               r->nodes[r->by_addr[i].node].mesh_address);
        return 0;
}

static int roster_parse_signature(const json_t *o, struct roster *r, struct json_input_error *err)
{
        const char *sig = NULL;
        size_t bin_len = 0;
        int ret = json_input_get_string(o, "signature", false, 128, &sig, err);

        if (ret < 0 || !sig)
                return ret;
        if (sodium_base642bin(r->signature, sizeof(r->signature), sig, strlen(sig), NULL, &bin_len,
                              NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin_len != sizeof(r->signature))
                return json_input_fail(err, "field 'signature' is not a base64 Ed25519 signature");
        r->signed_ = true;
        return 0;
}

static int roster_parse_object(const json_t *o, struct roster *r, struct json_input_error *err)
{
        static const char *const fields[] = {
            "v",     "version",   "fleet_id",           "controller", "genesis_public_key",
            "nodes", "signature", "controller_pin_key", "revoked",    NULL};
        json_t *nodes;
        uint64_t v;
        int ret = 0;

        ret = ret ?: json_input_check_keys(o, fields, err);
        ret = ret ?: json_input_get_uint(o, "v", true, 1, 1, &v, err);
        ret = ret ?: json_input_get_uint(o, "version", true, 1, INT64_MAX, &r->version, err);
        ret = ret
                  ?: json_input_copy_string(o, "fleet_id", true, r->fleet_id, sizeof(r->fleet_id),
                                            err);
        ret = ret
                  ?: json_input_copy_string(o, "controller", true, r->controller,
                                            sizeof(r->controller), err);
        ret = ret
                  ?: json_input_copy_string(o, "genesis_public_key", false, r->genesis_public_key,
                                            sizeof(r->genesis_public_key), err);
        ret = ret
                  ?: json_input_copy_string(o, "controller_pin_key", false, r->controller_pin_key,
                                            sizeof(r->controller_pin_key), err);
        ret = ret ?: roster_parse_signature(o, r, err);
        if (ret < 0)
                return ret;
        nodes = json_object_get(o, "nodes");
        if (!json_is_array(nodes) || json_array_size(nodes) > ROSTER_MAX_NODES)
                return json_input_fail(err, "field 'nodes' must be an array of at most %d nodes",
                                       ROSTER_MAX_NODES);
        r->n_nodes = json_array_size(nodes);
        r->nodes = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*r->nodes));
        if (!r->nodes)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_nodes; i++) {
                ret = roster_parse_node(json_array_get(nodes, i), &r->nodes[i], err);
                if (ret < 0)
                        return ret;
        }
        ret = roster_build_index(r, err);
        ret = ret ?: roster_parse_revoked(o, r, err);
        if (ret == 0 && !roster_find_by_id(r, r->controller))
                return json_input_fail(err, "controller '%s' is not a node of the roster",
                                       r->controller);
        return ret;
}

struct roster *roster_parse(const char *buf, size_t len, char *err, size_t errsize)
{
        struct json_input_error jerr = {{0}};
        struct roster *r = calloc(1, sizeof(*r));
        json_t *o = NULL;
        int ret = -ENOMEM;

        if (!r)
                goto cleanup;
        o = json_input_parse(buf, len, ROSTER_MAX_BYTES, 4, &jerr);
        ret = o ? roster_parse_object(o, r, &jerr) : -EINVAL;
cleanup:
        json_decref(o);
        if (ret < 0) {
                if (err)
                        snprintf(err, errsize, "%s", ret == -ENOMEM ? "out of memory" : jerr.text);
                roster_free(r);
                return NULL;
        }
        return r;
}

struct roster *roster_load_file(const char *path, char *err, size_t errsize)
{
        struct roster *r = NULL;
        struct stat st;
        char *buf = NULL;
        ssize_t n = -1;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) < 0) {
                snprintf(err, errsize, "cannot open roster '%s': %s", path, strerror(errno));
                goto cleanup;
        }
        if (st.st_size > ROSTER_MAX_BYTES) {
                snprintf(err, errsize, "roster '%s' is larger than %d bytes", path,
                         ROSTER_MAX_BYTES);
                goto cleanup;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (buf)
                n = read(fd, buf, (size_t)st.st_size);
        if (n != st.st_size) {
                snprintf(err, errsize, "cannot read roster '%s'", path);
                goto cleanup;
        }
        r = roster_parse(buf, (size_t)n, err, errsize);
cleanup:
        free(buf);
        if (fd >= 0)
                close(fd);
        return r;
}

const struct roster_node *roster_find_by_address(const struct roster *r, struct in_addr addr)
{
        struct roster_addr_index key = {.addr = ntohl(addr.s_addr)};
        const struct roster_addr_index *hit;

        hit = bsearch(&key, r->by_addr, r->n_nodes, sizeof(key), roster_index_cmp);
        return hit ? &r->nodes[hit->node] : NULL;
}

const struct roster_node *roster_find_by_id(const struct roster *r, const char *id)
{
        for (size_t i = 0; i < r->n_nodes; i++)
                if (strcmp(r->nodes[i].id, id) == 0)
                        return &r->nodes[i];
        return NULL;
}

const struct roster_revoked *roster_find_revoked(const struct roster *r, const char *id)
{
        for (size_t i = 0; i < r->n_revoked; i++)
                if (strcmp(r->revoked[i].id, id) == 0)
                        return &r->revoked[i];
        return NULL;
}

const struct roster_revoked *roster_find_revoked_by_address(const struct roster *r,
                                                            struct in_addr addr)
{
        for (size_t i = 0; i < r->n_revoked; i++)
                if (r->revoked[i].addr.s_addr == addr.s_addr)
                        return &r->revoked[i];
        return NULL;
}

static json_t *roster_node_to_json(const struct roster_node *n)
{
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", n->id, "name", n->name, "role",
                         roster_role_name(n->role), "wg_public_key", n->wg_public_key,
                         "mesh_address", n->mesh_address, "endpoint", n->endpoint);
}

static json_t *roster_to_json_unsigned(const struct roster *r)
{
        json_t *nodes = json_array();
        json_t *o;

        for (size_t i = 0; i < r->n_nodes; i++)
                json_array_append_new(nodes, roster_node_to_json(&r->nodes[i]));
        o = json_pack("{s:i, s:I, s:s, s:s, s:s, s:o}", "v", 1, "version", (json_int_t)r->version,
                      "fleet_id", r->fleet_id, "controller", r->controller, "genesis_public_key",
                      r->genesis_public_key, "nodes", nodes);
        if (o && r->controller_pin_key[0])
                json_object_set_new(o, "controller_pin_key", json_string(r->controller_pin_key));
        if (o && r->n_revoked) {
                json_t *a = json_array();

                for (size_t i = 0; i < r->n_revoked; i++)
                        json_array_append_new(
                            a, json_pack("{s:s, s:s, s:s}", "id", r->revoked[i].id, "wg_public_key",
                                         r->revoked[i].wg_public_key, "mesh_address",
                                         r->revoked[i].mesh_address));
                json_object_set_new(o, "revoked", a);
        }
        return o;
}

json_t *roster_to_json(const struct roster *r)
{
        char sig[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
        json_t *o = roster_to_json_unsigned(r);

        if (o && r->signed_) {
                sodium_bin2base64(sig, sizeof(sig), r->signature, sizeof(r->signature),
                                  sodium_base64_VARIANT_ORIGINAL);
                json_object_set_new(o, "signature", json_string(sig));
        }
        return o;
}

char *roster_canonical(const struct roster *r)
{
        json_t *o = roster_to_json_unsigned(r);
        char *s = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

        json_decref(o);
        return s;
}

int roster_sign(struct roster *r, const uint8_t sk[64])
{
        char *msg = roster_canonical(r);

        if (!msg)
                return -ENOMEM;
        crypto_sign_detached(r->signature, NULL, (const uint8_t *)msg, strlen(msg), sk);
        r->signed_ = true;
        free(msg);
        return 0;
}

struct roster *roster_from_json_signed(json_t *o, const uint8_t sk[64], char *err, size_t errsize)
{
        struct roster *r = NULL;
        char *s = json_dumps(o, JSON_COMPACT);

        json_decref(o);
        if (s)
                r = roster_parse(s, strlen(s), err, errsize);
        else
                snprintf(err, errsize, "out of memory");
        free(s);
        if (r && roster_sign(r, sk) < 0) {
                snprintf(err, errsize, "cannot sign the roster");
                roster_free(r);
                r = NULL;
        }
        return r;
}

int roster_verify(const struct roster *r, const uint8_t pk[32])
{
        char *msg;
        int ret;

        if (!r->signed_)
                return -ENOKEY;
        msg = roster_canonical(r);
        if (!msg)
                return -ENOMEM;
        ret = crypto_sign_verify_detached(r->signature, (const uint8_t *)msg, strlen(msg), pk) == 0
                  ? 0
                  : -EBADMSG;
        free(msg);
        return ret;
}
