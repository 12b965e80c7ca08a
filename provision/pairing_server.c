/* The genesis side: creating the mesh (keys, address plan, genesis key, roster version 1) and
 * the pairing server. One server run is one ceremony: one code, good for one attempt, one join
 * at a time, expiring after code_ttl_s. The ceremony runs on a worker thread; the accept loop
 * answers "busy", "used" or "expired" to anyone else. After a join the new roster (signed by the
 * genesis key) is stored, applied to the local interface and pushed to every member's vmhost. */
#include "provision/pairing.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/mesh.h"

enum pair_code_state { PAIR_CODE_FRESH, PAIR_CODE_IN_USE, PAIR_CODE_BURNED, PAIR_CODE_USED };

struct pair_server {
        const struct pair_server_opts *o;
        struct pair_node_conf conf;
        pthread_mutex_t lock;
        enum pair_code_state state;
        enum pair_error burned_by;
        time_t expires;
        char code[PAIR_CODE_SIZE];
        pthread_t worker;
        bool worker_running;
        int worker_fd;
};

static time_t pair_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

/* --- genesis init --- */

static int pair_subnet_parse(const char *s, struct in_addr *ret_base, unsigned *ret_prefix)
{
        char buf[20];
        char *slash;
        unsigned long prefix;

        snprintf(buf, sizeof(buf), "%s", s);
        slash = strchr(buf, '/');
        if (!slash)
                return -EINVAL;
        *slash = '\0';
        prefix = strtoul(slash + 1, NULL, 10);
        if (inet_pton(AF_INET, buf, ret_base) != 1 || prefix < 16 || prefix > 30)
                return -EINVAL;
        ret_base->s_addr &= htonl(~0u << (32 - prefix));
        *ret_prefix = (unsigned)prefix;
        return 0;
}

static int pair_genesis_create(const struct pair_genesis_opts *o)
{
        uint8_t pk[32], sk[64], wgk[WG_KEY_LEN], wgpub[WG_KEY_LEN];
        char wgpub64[WG_KEY_B64_SIZE], pk64[WG_KEY_B64_SIZE], fleet[NODE_ID_MAX + 1], path[4096];
        char buf[2048], err[256];
        struct pair_node_conf c = {0};
        struct in_addr base;
        unsigned prefix;
        struct roster *r = NULL;
        int ret, n;

        if (pair_subnet_parse(o->subnet, &base, &prefix) < 0)
                return -EINVAL;
        base.s_addr = htonl(ntohl(base.s_addr) + 1);
        crypto_sign_keypair(pk, sk);
        wg_key_generate_private(wgk);
        wg_key_public_from_private(wgpub, wgk);
        wg_key_to_base64(wgpub64, wgpub);
        wg_key_to_base64(pk64, pk);
        if (o->fleet_id && *o->fleet_id) {
                snprintf(fleet, sizeof(fleet), "%s", o->fleet_id);
        } else {
                uint8_t rnd[6];

                randombytes_buf(rnd, sizeof(rnd));
                snprintf(fleet, sizeof(fleet), "fleet-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
                         rnd[2], rnd[3], rnd[4], rnd[5]);
        }
        snprintf(c.node_id, sizeof(c.node_id), "%s", o->name);
        snprintf(c.ifname, sizeof(c.ifname), "%s", o->ifname);
        c.wg_port = o->wg_port;
        snprintf(c.role, sizeof(c.role), "%s", roster_role_name(o->role));
        inet_ntop(AF_INET, &base, c.mesh_address, sizeof(c.mesh_address));
        snprintf(c.endpoint, sizeof(c.endpoint), "%s", o->endpoint ? o->endpoint : "");
        snprintf(c.subnet, sizeof(c.subnet), "%s", o->subnet);
        n = snprintf(buf, sizeof(buf),
                     "{\"v\":1,\"version\":1,\"fleet_id\":\"%s\",\"controller\":\"%s\","
                     "\"genesis_public_key\":\"%s\",\"nodes\":[{\"id\":\"%s\",\"name\":\"%s\","
                     "\"role\":\"%s\",\"wg_public_key\":\"%s\",\"mesh_address\":\"%s\","
                     "\"endpoint\":\"%s\"}]}",
                     fleet, c.node_id, pk64, c.node_id, c.node_id, c.role, wgpub64, c.mesh_address,
                     c.endpoint);
        r = roster_parse(buf, (size_t)n, err, sizeof(err));
        ret = r ? roster_sign(r, sk) : -EINVAL;
        ret = ret ?: pair_state_path(o->state_dir, "wg.key", path, sizeof(path));
        ret = ret ?: wg_key_save(path, wgk);
        ret = ret ?: pair_genesis_key_save(o->state_dir, sk);
        ret = ret ?: pair_genesis_pub_save(o->state_dir, pk);
        ret = ret ?: pair_roster_store(o->state_dir, r);
        ret = ret ?: pair_conf_save(o->state_dir, &c);
        if (ret == 0)
                fprintf(o->out, "created fleet '%s': genesis node '%s', mesh address %s/%u\n",
                        fleet, c.node_id, c.mesh_address, prefix);
        sodium_memzero(sk, sizeof(sk));
        sodium_memzero(wgk, sizeof(wgk));
        roster_free(r);
        return ret;
}

int pair_genesis_init(const struct pair_genesis_opts *o)
{
        struct pair_node_conf c;
        uint8_t sk[64];
        char err[256];
        int ret = pair_state_mkdir(o->state_dir);

        if (ret < 0)
                return ret;
        if (pair_conf_load(o->state_dir, &c) == 0 && pair_genesis_key_load(o->state_dir, sk) == 0) {
                sodium_memzero(sk, sizeof(sk));
                if (strcmp(c.node_id, o->name) != 0) {
                        fprintf(stderr, "state '%s' belongs to genesis node '%s', not '%s'\n",
                                o->state_dir, c.node_id, o->name);
                        return -EEXIST;
                }
                fprintf(o->out, "fleet already created in '%s'; reusing it\n", o->state_dir);
        } else {
                ret = pair_genesis_create(o);
                if (ret < 0)
                        return ret;
        }
        if (o->no_wg)
                return 0;
        ret = pair_mesh_up(o->state_dir, err, sizeof(err));
        if (ret < 0)
                fprintf(stderr, "cannot set up the mesh interface: %s\n", err);
        return ret;
}

/* --- the roster change --- */

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
        struct roster *r = NULL;
        char *s;

        json_object_del(o, "signature");
        json_object_set_new(o, "version", json_integer((json_int_t)cur->version + 1));
        json_array_append_new(json_object_get(o, "nodes"),
                              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", req->name, "name",
                                        req->name, "role", roster_role_name(req->role),
                                        "wg_public_key", req->wg_public_key, "mesh_address", addr,
                                        "endpoint", req->endpoint));
        /* The cloud node runs the fleet controller once it has joined. */
        if (req->role == ROSTER_ROLE_CLOUD) {
                json_object_set_new(o, "controller", json_string(req->name));
                /* the old controller's pin key names no one now: the new controller's fleetd
                 * has its own, published with 'totebox-pair controller-key' */
                json_object_del(o, "controller_pin_key");
        }
        s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (s)
                r = roster_parse(s, strlen(s), err, errsize);
        free(s);
        if (r && roster_sign(r, sk) < 0) {
                roster_free(r);
                r = NULL;
        }
        return r;
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

/* --- the ceremony --- */

struct pair_ceremony {
        struct pair_server *sv;
        struct pair_session s;
        int fd, io_ms;
        char err[256];
};

static enum pair_error pair_fail(struct pair_ceremony *c, enum pair_error e, const char *detail)
{
        pair_send_error(c->fd, c->s.keyed ? &c->s : NULL, e, NULL);
        if (detail != c->err) /* the caller may pass our own buffer back */
                snprintf(c->err, sizeof(c->err), "%s", detail ? detail : pair_error_text(e));
        return e;
}

/* hello, shares, key confirmation. */
static enum pair_error pair_handshake(struct pair_ceremony *c, const char *code)
{
        struct pair_msg m, out = {0};
        int r;

        r = pair_recv(c->fd, c->io_ms, &m, c->err, sizeof(c->err));
        if (r == -EPROTONOSUPPORT)
                return pair_fail(c, PAIR_ERR_VERSION, NULL);
        if (r < 0 || m.type != PAIR_MSG_HELLO)
                return pair_fail(c, PAIR_ERR_PROTOCOL, r < 0 ? c->err : "expected 'hello'");
        pair_session_init(&c->s, false, c->sv->conf.node_id);
        out.type = PAIR_MSG_HELLO;
        snprintf(out.id, sizeof(out.id), "%s", c->s.self_id);
        memcpy(out.nonce, c->s.nonce_self, PAIR_NONCE_LEN);
        r = pair_session_start(&c->s, code, m.id, m.nonce);
        pair_msg_clear(&m);
        if (r < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, "reflected nonce or bad code");
        if (pair_send(c->fd, &out) < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, "cannot send hello");
        r = pair_recv(c->fd, c->io_ms, &m, c->err, sizeof(c->err));
        if (r < 0 || m.type != PAIR_MSG_SHARE || m.has_tag) {
                pair_msg_clear(&m);
                return pair_fail(c, PAIR_ERR_PROTOCOL, r < 0 ? c->err : "expected 'share'");
        }
        r = pair_session_finish(&c->s, &m);
        pair_msg_clear(&m);
        if (r == -EPROTONOSUPPORT)
                return pair_fail(c, PAIR_ERR_VERSION, NULL);
        if (r < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL,
                                 "invalid or identity point, or our own share reflected");
        memset(&out, 0, sizeof(out));
        out.type = PAIR_MSG_SHARE;
        memcpy(out.point, c->s.point_self, CPACE_POINT_LEN);
        out.ad_len = strlen(pair_ad_for(false));
        memcpy(out.ad, pair_ad_for(false), out.ad_len);
        out.has_tag = true;
        pair_session_tag(&c->s, true, out.tag);
        if (pair_send(c->fd, &out) < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, "cannot send share");
        r = pair_recv(c->fd, c->io_ms, &m, c->err, sizeof(c->err));
        if (r == 0 && m.type == PAIR_MSG_ERROR) {
                snprintf(c->err, sizeof(c->err), "the joiner reports: %s",
                         pair_error_text(m.error));
                return m.error == PAIR_ERR_WRONG_CODE ? PAIR_ERR_WRONG_CODE : PAIR_ERR_PROTOCOL;
        }
        if (r < 0 || m.type != PAIR_MSG_CONFIRM) {
                pair_msg_clear(&m);
                return pair_fail(c, PAIR_ERR_PROTOCOL, r < 0 ? c->err : "expected 'confirm'");
        }
        r = pair_session_check_tag(&c->s, m.tag);
        pair_msg_clear(&m);
        if (r < 0) {
                c->s.keyed = false; /* the keys are wrong: answer in clear */
                return pair_fail(c, PAIR_ERR_WRONG_CODE, NULL);
        }
        return PAIR_ERR_NONE;
}

static enum pair_error pair_admit(struct pair_ceremony *c, const struct pair_msg *req)
{
        struct pair_server *sv = c->sv;
        struct pair_msg acc = {.type = PAIR_MSG_JOIN_ACCEPT};
        struct roster *cur, *next = NULL;
        uint8_t sk[64], pk[32];
        char addr[16], err[256];
        enum pair_error e = PAIR_ERR_INTERNAL;

        cur = pair_roster_load(sv->o->state_dir, err, sizeof(err));
        if (!cur || pair_genesis_key_load(sv->o->state_dir, sk) < 0)
                return pair_fail(c, PAIR_ERR_INTERNAL, "cannot load the roster or genesis key");
        crypto_sign_ed25519_sk_to_pk(pk, sk);
        /* The name was bound into CPace's CI through the hello: it may not change now. */
        if (strcmp(req->name, c->s.peer_id) != 0) {
                e = pair_fail(c, PAIR_ERR_PROTOCOL,
                              "the join request names another node than "
                              "the hello");
                goto cleanup;
        }
        if (roster_find_by_id(cur, req->name)) {
                e = pair_fail(c, PAIR_ERR_NAME_TAKEN, NULL);
                goto cleanup;
        }
        if (pair_next_address(cur, sv->conf.subnet, addr) < 0 ||
            !(next = pair_roster_with(cur, req, addr, sk, err, sizeof(err))) ||
            pair_roster_store(sv->o->state_dir, next) < 0) {
                e = pair_fail(c, PAIR_ERR_INTERNAL, "cannot build the new roster");
                goto cleanup;
        }
        snprintf(acc.node_id, sizeof(acc.node_id), "%s", req->name);
        snprintf(acc.mesh_address, sizeof(acc.mesh_address), "%s", addr);
        wg_key_to_base64(acc.genesis_public_key, pk);
        acc.roster = roster_to_json(next);
        if (pair_send_sealed(c->fd, &c->s, &acc) < 0) {
                snprintf(c->err, sizeof(c->err), "cannot send the roster to the joiner");
                e = PAIR_ERR_PROTOCOL;
        } else {
                e = PAIR_ERR_NONE;
        }
        json_decref(acc.roster);
        if (if_nametoindex(sv->conf.ifname) &&
            mesh_apply_roster(sv->conf.ifname, next, sv->conf.node_id) < 0)
                fprintf(sv->o->out, "warning: roster version %llu not applied to '%s'\n",
                        (unsigned long long)next->version, sv->conf.ifname);
        fprintf(sv->o->out, "joined: node '%s' role %s mesh address %s roster version %llu\n",
                req->name, roster_role_name(req->role), addr, (unsigned long long)next->version);
        fflush(sv->o->out);
        pair_roster_push(next, sv->conf.node_id, req->name, sv->o->node_api_port, sv->o->out);
cleanup:
        sodium_memzero(sk, sizeof(sk));
        roster_free(cur);
        roster_free(next);
        return e;
}

static enum pair_error pair_ceremony_run(struct pair_ceremony *c, const char *code)
{
        const struct pair_server_opts *o = c->sv->o;
        struct pair_msg req = {0};
        enum pair_error e = pair_handshake(c, code);
        bool peer_spoke = false;
        int r;

        if (e != PAIR_ERR_NONE)
                return e;
        e = pair_confirm_sas(&c->s, fileno(o->confirm_in), c->fd, (int)o->sas_timeout_s * 1000,
                             o->out, &peer_spoke);
        if (!peer_spoke && e != PAIR_ERR_NONE)
                return pair_fail(c, e, NULL);
        /* The joiner's sealed request (or its refusal) comes after its own operator confirms. */
        r = pair_recv_sealed(c->fd, (int)o->sas_timeout_s * 1000, &c->s, &req, c->err,
                             sizeof(c->err));
        if (r < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, c->err);
        if (req.type == PAIR_MSG_ABORT || req.type == PAIR_MSG_ERROR) {
                snprintf(c->err, sizeof(c->err), "the joiner refused: %s",
                         pair_error_text(req.error));
                e = req.error;
                pair_msg_clear(&req);
                return e;
        }
        if (peer_spoke) {
                /* The request arrived first; now our operator must still confirm. */
                e = pair_confirm_sas(&c->s, fileno(o->confirm_in), -1, (int)o->sas_timeout_s * 1000,
                                     o->out, &peer_spoke);
                if (e != PAIR_ERR_NONE) {
                        pair_msg_clear(&req);
                        return pair_fail(c, e, NULL);
                }
        }
        if (req.type != PAIR_MSG_JOIN_REQUEST) {
                pair_msg_clear(&req);
                return pair_fail(c, PAIR_ERR_PROTOCOL, "expected 'join-request'");
        }
        e = pair_admit(c, &req);
        pair_msg_clear(&req);
        return e;
}

static void *pair_worker(void *arg)
{
        struct pair_server *sv = arg;
        struct pair_ceremony c = {.sv = sv, .fd = sv->worker_fd};
        enum pair_error e;

        c.io_ms = (int)sv->o->io_timeout_s * 1000;
        e = pair_ceremony_run(&c, sv->code);
        pthread_mutex_lock(&sv->lock);
        if (e == PAIR_ERR_NONE) {
                sv->state = PAIR_CODE_USED;
        } else if (e == PAIR_ERR_VERSION) {
                sv->state = PAIR_CODE_FRESH; /* never reached the code */
        } else {
                sv->state = PAIR_CODE_BURNED;
                sv->burned_by = e;
        }
        pthread_mutex_unlock(&sv->lock);
        if (e != PAIR_ERR_NONE) {
                fprintf(sv->o->out, "pairing failed: %s: %s%s\n", pair_error_name(e), c.err,
                        e == PAIR_ERR_VERSION ? "" : "; the code is burned");
                fflush(sv->o->out);
        }
        pair_session_wipe(&c.s);
        pair_close_gently(c.fd);
        return NULL;
}

static int pair_listen(const struct pair_server_opts *o)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
        int fd, one = 1;

        if (inet_pton(AF_INET, o->listen_addr, &sa.sin_addr) != 1)
                return -EINVAL;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
                int e = -errno;

                close(fd);
                return e;
        }
        return fd;
}

/* Answers a connection that cannot run a ceremony: busy, used or expired. */
static void pair_refuse(int fd, enum pair_error e)
{
        char *buf = NULL;
        size_t len = 0;

        /* Take the hello first (briefly) so the joiner's send never meets a closed socket. */
        if (pair_frame_read(fd, 1000, &buf, &len) == 0)
                free(buf);
        pair_send_error(fd, NULL, e, NULL);
        pair_close_gently(fd);
}

static void pair_on_connection(struct pair_server *sv, int fd)
{
        enum pair_error refuse = PAIR_ERR_NONE;

        pthread_mutex_lock(&sv->lock);
        if (sv->state == PAIR_CODE_IN_USE)
                refuse = PAIR_ERR_BUSY;
        else if (sv->state != PAIR_CODE_FRESH)
                refuse = PAIR_ERR_USED;
        else if (pair_now() >= sv->expires)
                refuse = PAIR_ERR_EXPIRED;
        else
                sv->state = PAIR_CODE_IN_USE;
        pthread_mutex_unlock(&sv->lock);
        if (refuse != PAIR_ERR_NONE) {
                fprintf(sv->o->out, "pairing attempt refused: %s\n", pair_error_text(refuse));
                fflush(sv->o->out);
                pair_refuse(fd, refuse);
                return;
        }
        if (sv->worker_running)
                pthread_join(sv->worker, NULL);
        sv->worker_fd = fd;
        sv->worker_running = pthread_create(&sv->worker, NULL, pair_worker, sv) == 0;
        if (!sv->worker_running) {
                close(fd);
                pthread_mutex_lock(&sv->lock);
                sv->state = PAIR_CODE_FRESH;
                pthread_mutex_unlock(&sv->lock);
        }
}

int pair_server_run(const struct pair_server_opts *o)
{
        struct pair_server sv = {.o = o, .state = PAIR_CODE_FRESH};
        char norm[PAIR_CODE_CHARS + 1];
        time_t linger_until;
        int lfd, ret = 0;

        if (pair_conf_load(o->state_dir, &sv.conf) < 0 || !sv.conf.subnet[0]) {
                fprintf(stderr, "'%s' holds no genesis state; run 'totebox-pair genesis' first\n",
                        o->state_dir);
                return -ENOENT;
        }
        if (o->code && pair_code_normalize(o->code, norm) < 0)
                return -EINVAL;
        lfd = pair_listen(o);
        if (lfd < 0) {
                fprintf(stderr, "cannot listen on '%s:%u': %s\n", o->listen_addr, o->port,
                        strerror(-lfd));
                return lfd;
        }
        pthread_mutex_init(&sv.lock, NULL);
        if (o->code)
                snprintf(sv.code, sizeof(sv.code), "%s", o->code);
        else
                pair_code_generate(sv.code);
        sv.expires = pair_now() + (time_t)o->code_ttl_s;
        /* After expiry the server stays a little to say "expired" rather than go silent. */
        linger_until = sv.expires + 60;
        fprintf(o->out, "pairing code: %s (expires in %u s, good for one attempt)\n", sv.code,
                o->code_ttl_s);
        fprintf(o->out, "pairing server listening on %s:%u\n", o->listen_addr, o->port);
        fflush(o->out);
        for (;;) {
                struct pollfd p = {.fd = lfd, .events = POLLIN};
                enum pair_code_state st;
                int fd;

                pthread_mutex_lock(&sv.lock);
                st = sv.state;
                pthread_mutex_unlock(&sv.lock);
                if (st == PAIR_CODE_USED)
                        break;
                /* A burned code is announced for a short while, then the ceremony is over. */
                if (st == PAIR_CODE_BURNED && linger_until > pair_now() + 30)
                        linger_until = pair_now() + 30;
                if (st != PAIR_CODE_IN_USE && pair_now() >= linger_until) {
                        ret = st == PAIR_CODE_BURNED ? -EACCES : -ETIMEDOUT;
                        fprintf(o->out, "pairing server closed: %s\n",
                                st == PAIR_CODE_BURNED ? "the code was burned"
                                                       : "the code expired unused");
                        break;
                }
                if (poll(&p, 1, 200) <= 0)
                        continue;
                fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0)
                        pair_on_connection(&sv, fd);
        }
        close(lfd);
        if (sv.worker_running)
                pthread_join(sv.worker, NULL);
        sodium_memzero(sv.code, sizeof(sv.code));
        pthread_mutex_destroy(&sv.lock);
        fflush(o->out);
        return ret;
}
