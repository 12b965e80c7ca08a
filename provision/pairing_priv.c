/* The privileged half of `totebox-pair serve` (provision/pairing.h): the messages between it and
 * the network process, and what only it may do: load the genesis key and sign the roster with
 * the joiner in it, store it, apply it to the WireGuard interface (netlink or UAPI) and push it
 * to the members. The network process is treated as hostile: every message is decoded strictly,
 * an unknown or malformed one ends the ceremony, and one join is signed per run. */
#include "provision/pairing.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/mesh.h"

static const struct imsg_type pair_priv_types[] = {
    {PAIR_PRIV_SIGN_JOIN, sizeof(struct pair_priv_sign_join), sizeof(struct pair_priv_sign_join),
     "sign-join"},
    {PAIR_PRIV_SIGNED, sizeof(struct pair_priv_signed),
     sizeof(struct pair_priv_signed) + PAIR_FRAME_MAX, "signed"},
    {PAIR_PRIV_APPLY, sizeof(struct pair_priv_apply), sizeof(struct pair_priv_apply), "apply"},
    {PAIR_PRIV_APPLIED, sizeof(struct pair_priv_applied), sizeof(struct pair_priv_applied),
     "applied"},
};

const struct imsg_proto pair_priv_proto = {
    .name = "pairing",
    .version = PAIR_PRIV_VERSION,
    .types = pair_priv_types,
    .n_types = sizeof(pair_priv_types) / sizeof(pair_priv_types[0]),
};

/* --- decoding --- */

static int pair_priv_bad(char *err, size_t errsize, const char *what)
{
        snprintf(err, errsize, "pairing message: %s", what);
        return -EBADMSG;
}

static int pair_priv_check_join(const struct pair_priv_sign_join *m, char *err, size_t errsize)
{
        uint8_t k[WG_KEY_LEN];

        if (!imsg_string_ok(m->name, sizeof(m->name)) || !ident_valid(IDENT_NODE, m->name))
                return pair_priv_bad(err, errsize, "'sign-join' name is not a node id");
        if (m->role > ROSTER_ROLE_CLOUD)
                return pair_priv_bad(err, errsize, "'sign-join' role out of range");
        if (!imsg_string_ok(m->wg_public_key, sizeof(m->wg_public_key)) ||
            wg_key_from_base64(k, m->wg_public_key) < 0)
                return pair_priv_bad(err, errsize, "'sign-join' WireGuard key is not a key");
        if (!imsg_string_ok(m->endpoint, sizeof(m->endpoint)))
                return pair_priv_bad(err, errsize, "'sign-join' endpoint is not terminated");
        return 0;
}

static int pair_priv_check_signed(const struct pair_priv_signed *m, size_t len, char *err,
                                  size_t errsize)
{
        if (m->error > PAIR_ERR_INTERNAL || !imsg_string_ok(m->detail, sizeof(m->detail)))
                return pair_priv_bad(err, errsize, "'signed' error or detail malformed");
        if (!imsg_string_ok(m->mesh_address, sizeof(m->mesh_address)) ||
            !imsg_string_ok(m->genesis_public_key, sizeof(m->genesis_public_key)))
                return pair_priv_bad(err, errsize, "'signed' address or key not terminated");
        if (m->roster_len != len - sizeof(*m) || (m->error == PAIR_ERR_NONE) != (m->roster_len > 0))
                return pair_priv_bad(err, errsize, "'signed' roster length disagrees");
        return 0;
}

int pair_priv_decode(const void *buf, size_t n, uint16_t *ret_type, union pair_priv_msg *ret,
                     char **ret_roster, char *err, size_t errsize)
{
        union pair_priv_msg m;
        struct imsg_hdr h;
        const void *p;
        char *roster = NULL;
        int r = imsg_check(&pair_priv_proto, buf, n, &h, &p, err, errsize);

        if (r < 0)
                return r;
        memset(&m, 0, sizeof(m));
        memcpy(&m, p, h.len < sizeof(m) ? h.len : sizeof(m));
        if (h.type == PAIR_PRIV_SIGN_JOIN)
                r = pair_priv_check_join(&m.sign_join, err, errsize);
        else if (h.type == PAIR_PRIV_SIGNED)
                r = pair_priv_check_signed(&m.signed_, h.len, err, errsize);
        else if (h.type == PAIR_PRIV_APPLIED && m.applied.result > 0)
                r = pair_priv_bad(err, errsize, "'applied' result is not 0 or -errno");
        if (r == 0 && h.type == PAIR_PRIV_SIGNED && m.signed_.roster_len > 0) {
                roster = malloc(m.signed_.roster_len + 1);
                if (!roster)
                        return -ENOMEM;
                memcpy(roster, (const char *)p + sizeof(m.signed_), m.signed_.roster_len);
                roster[m.signed_.roster_len] = '\0';
        }
        if (r < 0)
                return r;
        *ret_type = h.type;
        *ret = m;
        if (ret_roster)
                *ret_roster = roster;
        else
                free(roster);
        return 0;
}

/* --- the roster change (parent) --- */

static int pair_next_address(const struct roster *r, const char *subnet, char out[16])
{
        struct in_addr base, a;
        unsigned prefix;
        uint32_t hi = 0, lo;

        if (pair_subnet_parse(subnet, &base, &prefix) < 0)
                return -EINVAL;
        lo = ntohl(base.s_addr);
        for (size_t i = 0; i < r->n_nodes; i++) {
                uint32_t v = ntohl(r->nodes[i].addr.s_addr);

                if (v > hi)
                        hi = v;
        }
        /* a removed node's address is never handed out again */
        for (size_t i = 0; i < r->n_revoked; i++)
                if (ntohl(r->revoked[i].addr.s_addr) > hi)
                        hi = ntohl(r->revoked[i].addr.s_addr);
        if (hi < lo)
                hi = lo;
        if (hi + 1 >= lo + (1u << (32 - prefix)) - 1)
                return -ENOSPC;
        a.s_addr = htonl(hi + 1);
        inet_ntop(AF_INET, &a, out, 16);
        return 0;
}

/* The current roster plus the joiner, version + 1, signed. */
static struct roster *pair_roster_with(const struct roster *cur, const struct pair_msg *req,
                                       const char *addr, const uint8_t sk[64], char *err,
                                       size_t errsize)
{
        json_t *o = roster_to_json(cur);

        json_object_del(o, "signature");
        json_object_set_new(o, "version", json_integer((json_int_t)cur->version + 1));
        json_array_append_new(json_object_get(o, "nodes"),
                              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", req->name, "name",
                                        req->name, "role", roster_role_name(req->role),
                                        "wg_public_key", req->wg_public_key, "mesh_address", addr,
                                        "endpoint", req->endpoint));
        /* A node rejoining under a removed name (a reinstall, admitted through a new SAS-checked
         * ceremony) is a member again: its old entry leaves the revoked list. */
        json_t *revoked = json_object_get(o, "revoked");
        for (size_t i = json_array_size(revoked); i-- > 0;)
                if (strcmp(json_string_value(json_object_get(json_array_get(revoked, i), "id")),
                           req->name) == 0)
                        json_array_remove(revoked, i);
        if (revoked && json_array_size(revoked) == 0)
                json_object_del(o, "revoked");
        /* The cloud node runs the fleet controller once it has joined. */
        if (req->role == ROSTER_ROLE_CLOUD) {
                json_object_set_new(o, "controller", json_string(req->name));
                /* the old controller's pin key names no one now: the new controller's fleetd
                 * has its own, published with 'totebox-pair controller-key' */
                json_object_del(o, "controller_pin_key");
        }
        return roster_from_json_signed(o, sk, err, errsize);
}

static size_t pair_discard(void *p, size_t size, size_t n, void *u)
{
        return size * n;
}

/* Pushes the roster to every member but self and the joiner (who has it): vmhost's
 * POST /v1/roster on the node API. Best effort: a member that is down catches up later. */
void pair_roster_push(const struct roster *r, const char *self_id, const char *joiner,
                      unsigned node_api_port, FILE *out)
{
        json_t *o = roster_to_json(r);
        char *body = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        char url[128];

        json_decref(o);
        for (size_t i = 0; body && i < r->n_nodes; i++) {
                const struct roster_node *n = &r->nodes[i];
                struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
                CURL *c = curl_easy_init();
                long code = 0;
                CURLcode cr;

                if (strcmp(n->id, self_id) == 0 || (joiner && strcmp(n->id, joiner) == 0) || !c) {
                        curl_slist_free_all(h);
                        curl_easy_cleanup(c);
                        continue;
                }
                snprintf(url, sizeof(url), "http://%s:%u/v1/roster", n->mesh_address,
                         node_api_port);
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
                curl_easy_setopt(c, CURLOPT_TIMEOUT, 3L);
                curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, pair_discard);
                cr = curl_easy_perform(c);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
                if (cr == CURLE_OK && code >= 200 && code < 300)
                        fprintf(out, "roster version %llu pushed to '%s' (%s)\n",
                                (unsigned long long)r->version, n->id, n->mesh_address);
                else
                        fprintf(out,
                                "roster version %llu not pushed to '%s' at '%s': %s; apply it "
                                "there with 'totebox-pair apply-roster'\n",
                                (unsigned long long)r->version, n->id, url,
                                cr == CURLE_OK ? "refused" : curl_easy_strerror(cr));
                curl_slist_free_all(h);
                curl_easy_cleanup(c);
        }
        fflush(out);
        free(body);
}

static int pair_priv_reply_signed(int fd, enum pair_error e, const char *detail,
                                  const struct roster *next, const char *addr, const uint8_t pk[32])
{
        json_t *o = next ? roster_to_json(next) : NULL;
        char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        size_t len = text ? strlen(text) : 0;
        struct pair_priv_signed *m = calloc(1, sizeof(*m) + len);
        int r = -ENOMEM;

        json_decref(o);
        if (m && (len > 0 || e != PAIR_ERR_NONE)) {
                m->error = e;
                snprintf(m->detail, sizeof(m->detail), "%s", detail ? detail : "");
                if (len) {
                        m->version = next->version;
                        snprintf(m->mesh_address, sizeof(m->mesh_address), "%s", addr);
                        wg_key_to_base64(m->genesis_public_key, pk);
                        m->roster_len = (uint32_t)len;
                        memcpy(m->roster, text, len);
                }
                r = imsg_send(fd, &pair_priv_proto, PAIR_PRIV_SIGNED, m, sizeof(*m) + len);
        }
        free(m);
        free(text);
        return r;
}

/* The joiner in a new roster version, signed by the genesis key and stored. */
static int pair_priv_on_join(struct pair_priv_parent *p, int fd,
                             const struct pair_priv_sign_join *j)
{
        struct roster *cur, *next = NULL;
        struct pair_msg req = {.role = (enum roster_role)j->role};
        uint8_t sk[64], pk[32] = {0};
        char addr[16] = "", err[256];
        enum pair_error e = PAIR_ERR_INTERNAL;
        const char *why = "cannot load the roster or genesis key";
        int r;

        if (p->signed_once)
                return pair_priv_reply_signed(fd, PAIR_ERR_USED, "one join per ceremony", NULL,
                                              NULL, NULL);
        p->signed_once = true;
        snprintf(req.name, sizeof(req.name), "%s", j->name);
        snprintf(req.wg_public_key, sizeof(req.wg_public_key), "%s", j->wg_public_key);
        snprintf(req.endpoint, sizeof(req.endpoint), "%s", j->endpoint);
        cur = pair_roster_load(p->o->state_dir, err, sizeof(err));
        if (cur && pair_genesis_key_load(p->o->state_dir, sk) == 0) {
                crypto_sign_ed25519_sk_to_pk(pk, sk);
                why = "cannot build the new roster";
                if (roster_find_by_id(cur, req.name)) {
                        e = PAIR_ERR_NAME_TAKEN;
                        why = NULL;
                } else if (pair_next_address(cur, p->conf.subnet, addr) == 0 &&
                           (next = pair_roster_with(cur, &req, addr, sk, err, sizeof(err))) &&
                           pair_roster_store(p->o->state_dir, next) == 0) {
                        e = PAIR_ERR_NONE;
                        why = NULL;
                        p->signed_version = next->version;
                        snprintf(p->signed_for, sizeof(p->signed_for), "%s", req.name);
                }
                sodium_memzero(sk, sizeof(sk));
        }
        r = pair_priv_reply_signed(fd, e, why, e == PAIR_ERR_NONE ? next : NULL, addr, pk);
        roster_free(cur);
        roster_free(next);
        return r;
}

/* The roster the parent signed, now that the joiner has it: the interface, then the members. */
static int pair_priv_on_apply(struct pair_priv_parent *p, int fd, const struct pair_priv_apply *a)
{
        struct pair_priv_applied out = {.result = 0};
        struct roster *r = NULL;
        char err[256];

        if (!p->signed_once || p->applied || a->version != p->signed_version || !p->signed_version)
                out.result = -EPERM;
        else if (!(r = pair_roster_load(p->o->state_dir, err, sizeof(err))) ||
                 r->version != p->signed_version)
                out.result = -ESTALE;
        if (out.result == 0) {
                p->applied = true;
                if (if_nametoindex(p->conf.ifname) &&
                    mesh_apply_roster(p->conf.ifname, r, p->conf.node_id) < 0)
                        fprintf(p->o->out, "warning: roster version %llu not applied to '%s'\n",
                                (unsigned long long)r->version, p->conf.ifname);
                fflush(p->o->out);
                pair_roster_push(r, p->conf.node_id, p->signed_for, p->o->node_api_port, p->o->out);
        }
        roster_free(r);
        return imsg_send(fd, &pair_priv_proto, PAIR_PRIV_APPLIED, &out, sizeof(out));
}

int pair_priv_handle(struct pair_priv_parent *p, int fd, const void *buf, size_t n, char *err,
                     size_t errsize)
{
        union pair_priv_msg m;
        uint16_t type;
        int r = pair_priv_decode(buf, n, &type, &m, NULL, err, errsize);

        if (r < 0)
                return -EPROTO;
        switch ((enum pair_priv_type)type) {
        case PAIR_PRIV_SIGN_JOIN:
                return pair_priv_on_join(p, fd, &m.sign_join);
        case PAIR_PRIV_APPLY:
                return pair_priv_on_apply(p, fd, &m.apply);
        case PAIR_PRIV_SIGNED:
        case PAIR_PRIV_APPLIED:
                break;
        }
        snprintf(err, errsize, "pairing message: '%s' goes from the parent, not to it",
                 imsg_type_find(&pair_priv_proto, type)->name);
        return -EPROTO;
}

int pair_priv_serve(struct pair_priv_parent *p, int fd)
{
        static char buf[4096];
        char err[256];
        ssize_t n;
        int r = 0;

        while (r == 0 && (n = imsg_recv(fd, buf, sizeof(buf), -1)) != 0) {
                if (n < 0) {
                        snprintf(err, sizeof(err), "pairing message: %s", strerror((int)-n));
                        r = -EPROTO;
                } else {
                        r = pair_priv_handle(p, fd, buf, (size_t)n, err, sizeof(err));
                }
        }
        if (r == -EPROTO)
                fprintf(stderr,
                        "pairing server: the network process sent a bad message (%s); "
                        "ending it\n",
                        err);
        return r;
}

/* --- the network process's side --- */

static int pair_priv_call(int fd, uint16_t type, const void *req, size_t len, uint16_t want,
                          union pair_priv_msg *ret, char **ret_roster)
{
        size_t cap = sizeof(struct imsg_hdr) + sizeof(struct pair_priv_signed) + PAIR_FRAME_MAX;
        char *buf = malloc(cap), err[256];
        uint16_t got = 0;
        ssize_t n;
        int r = buf ? imsg_send(fd, &pair_priv_proto, type, req, len) : -ENOMEM;

        n = r == 0 ? imsg_recv(fd, buf, cap, -1) : r;
        if (n == 0)
                r = -ECONNRESET;
        else if (n < 0)
                r = (int)n;
        else
                r = pair_priv_decode(buf, (size_t)n, &got, ret, ret_roster, err, sizeof(err));
        if (r == 0 && got != want) {
                if (ret_roster) {
                        free(*ret_roster);
                        *ret_roster = NULL;
                }
                r = -EBADMSG;
        }
        free(buf);
        return r;
}

int pair_priv_sign_join(int fd, const struct pair_priv_sign_join *req, struct pair_priv_signed *ret,
                        char **ret_roster)
{
        union pair_priv_msg m;
        int r = pair_priv_call(fd, PAIR_PRIV_SIGN_JOIN, req, sizeof(*req), PAIR_PRIV_SIGNED, &m,
                               ret_roster);

        if (r == 0)
                *ret = m.signed_;
        return r;
}

int pair_priv_apply(int fd, uint64_t version)
{
        struct pair_priv_apply a = {.version = version};
        union pair_priv_msg m;
        int r = pair_priv_call(fd, PAIR_PRIV_APPLY, &a, sizeof(a), PAIR_PRIV_APPLIED, &m, NULL);

        return r < 0 ? r : m.applied.result;
}
