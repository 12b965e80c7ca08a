/* The genesis side: creating the mesh (keys, address plan, genesis key, roster version 1; a
 * WireGuard port in use is named first, a failed genesis undone) and the pairing server. One
 * server run is one ceremony: one code, good for one guess, one join at a time, expiring after
 * code_ttl_s. Every connection has its own worker and absolute deadlines; the code is claimed
 * when a well-formed share arrives and spent once it has been processed, so junk never burns it
 * (docs/mesh.md). After a join the new roster (signed by the genesis key) is stored, applied to
 * the local interface and pushed to every member's vmhost. */
#include "provision/pairing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/mesh.h"
#include "common/privsep.h"

/* FRESH until a connection's share is processed (a guess); CLAIMED while that ceremony runs
 * (a share that turns out invalid releases the claim: no guess was made); then USED or BURNED. */
enum pair_code_state { PAIR_CODE_FRESH, PAIR_CODE_CLAIMED, PAIR_CODE_BURNED, PAIR_CODE_USED };

/* One connection being served. Slots are twice PAIR_CONN_MAX so that a dropped connection
 * keeps its slot until its worker has closed the socket. */
struct pair_conn {
        int fd;
        uint32_t addr; /* the peer's IPv4 address */
        int64_t started;
        bool active, dropped, claimed;
        bool spoke; /* a well-formed hello came: a joiner's connection, or junk that works */
        char peer[INET_ADDRSTRLEN];
};

struct pair_server {
        const struct pair_server_opts *o;
        struct pair_node_conf conf;
        struct pair_binding bind;       /* the genesis' own role, WireGuard key and endpoint */
        char dial[INET_ADDRSTRLEN + 8]; /* --connect resolved: the joiner's "address:port" */
        pthread_mutex_t lock;
        pthread_cond_t idle;
        enum pair_code_state state;
        enum pair_error burned_by;
        int64_t expires;
        char code[PAIR_CODE_SIZE];
        struct pair_conn conns[2 * PAIR_CONN_MAX];
        size_t n_active;
        int priv_fd; /* to the privileged parent (pairing_priv.c) */
        pid_t parent;
        pthread_mutex_t priv_lock;
};

/* --- genesis init --- */

int pair_subnet_parse(const char *s, struct in_addr *ret_base, unsigned *ret_prefix)
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
        char wgpub64[WG_KEY_B64_SIZE], pk64[WG_KEY_B64_SIZE], fleet[NODE_ID_MAX + 1];
        char *path = NULL, *json = NULL, err[256];
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
        n = asprintf(&json,
                     "{\"v\":1,\"version\":1,\"fleet_id\":\"%s\",\"controller\":\"%s\","
                     "\"genesis_public_key\":\"%s\",\"nodes\":[{\"id\":\"%s\",\"name\":\"%s\","
                     "\"role\":\"%s\",\"wg_public_key\":\"%s\",\"mesh_address\":\"%s\","
                     "\"endpoint\":\"%s\"}]}",
                     fleet, c.node_id, pk64, c.node_id, c.node_id, c.role, wgpub64, c.mesh_address,
                     c.endpoint);
        r = n < 0 ? NULL : roster_parse(json, (size_t)n, err, sizeof(err));
        if (n >= 0) /* json is undefined when asprintf fails */
                free(json);
        ret = r ? roster_sign(r, sk) : n < 0 ? -ENOMEM : -EINVAL;
        ret = ret ?: pair_state_path(o->state_dir, "wg.key", &path);
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
        free(path);
        roster_free(r);
        return ret;
}

/* 0 when UDP port is free on this host (for the interface's socket), else -EADDRINUSE. */
static int pair_udp_port_free(unsigned port)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                ret = -errno;
        close(fd);
        return ret;
}

/* Undoes a genesis that could not bring its interface up: no half-made fleet stays behind. */
static void pair_genesis_undo(const struct pair_genesis_opts *o, bool had_interface)
{
        static const char *const files[] = {"node.conf",   "roster.json", "genesis.pub",
                                            "genesis.key", "wg.key",      NULL};

        for (size_t i = 0; files[i]; i++) {
                char *path = NULL;

                if (pair_state_path(o->state_dir, files[i], &path) == 0)
                        unlink(path);
                free(path);
        }
        rmdir(o->state_dir); /* only when it holds nothing else */
        if (!had_interface)
                wg_interface_delete(o->ifname);
}

int pair_genesis_init(const struct pair_genesis_opts *o)
{
        struct pair_node_conf c;
        uint8_t sk[64];
        char err[256];
        bool created = false, had_interface = o->no_wg || if_nametoindex(o->ifname) != 0;
        int ret;

        /* A port held by someone else would only show as a failure deep in the WireGuard
         * set-up, after the state was written: check first. */
        if (!had_interface && pair_udp_port_free(o->wg_port) == -EADDRINUSE) {
                fprintf(stderr,
                        "cannot create the mesh: WireGuard port %u/udp is already in use on this "
                        "host; choose another with --wg-port\n",
                        o->wg_port);
                return -EADDRINUSE;
        }
        ret = pair_state_mkdir(o->state_dir);
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
                created = true;
        }
        if (ret == 0 && !o->no_wg) {
                ret = pair_mesh_up(o->state_dir, err, sizeof(err));
                if (ret < 0)
                        fprintf(stderr, "cannot set up the mesh interface: %s\n", err);
        }
        if (ret < 0 && created) {
                pair_genesis_undo(o, had_interface);
                fprintf(stderr, "genesis undone: nothing was kept in '%s'\n", o->state_dir);
        }
        return ret;
}

/* --- the ceremony --- */

struct pair_ceremony {
        struct pair_server *sv;
        struct pair_conn *conn;
        struct pair_session s;
        int fd, io_ms;
        int64_t deadline; /* the handshake's (io_timeout after accept), then the SAS phase's */
        bool guessed;     /* a share was processed: whatever happens now, the code is spent */
        enum pair_error refused; /* busy, used or expired: told, nothing else done */
        char err[256];
};

static enum pair_error pair_fail(struct pair_ceremony *c, enum pair_error e, const char *detail)
{
        pair_send_error(c->fd, c->s.keyed ? &c->s : NULL, e, detail);
        if (detail != c->err) /* the caller may pass our own buffer back */
                snprintf(c->err, sizeof(c->err), "%s", detail ? detail : pair_error_text(e));
        return e;
}

/* Under sv->lock: why the code cannot serve a ceremony now, or PAIR_ERR_NONE. */
static enum pair_error pair_code_refusal(const struct pair_server *sv)
{
        if (sv->state == PAIR_CODE_CLAIMED)
                return PAIR_ERR_BUSY;
        if (sv->state != PAIR_CODE_FRESH)
                return PAIR_ERR_USED;
        return pair_clock_ms() >= sv->expires ? PAIR_ERR_EXPIRED : PAIR_ERR_NONE;
}

/* Tells a refusal (busy, used, expired) or, with claim, takes the code for this connection. */
static enum pair_error pair_code_check(struct pair_ceremony *c, bool claim)
{
        enum pair_error e;

        pthread_mutex_lock(&c->sv->lock);
        e = pair_code_refusal(c->sv);
        c->conn->spoke = true; /* called only once a well-formed frame has arrived */
        if (e == PAIR_ERR_NONE && claim) {
                c->sv->state = PAIR_CODE_CLAIMED;
                c->conn->claimed = true;
        }
        pthread_mutex_unlock(&c->sv->lock);
        if (e != PAIR_ERR_NONE) {
                c->refused = e;
                pair_fail(c, e, NULL);
        }
        return e;
}

/* Reads the next clear-text message, of type want. */
static enum pair_error pair_expect(struct pair_ceremony *c, enum pair_msg_type want,
                                   const char *what, struct pair_msg *m)
{
        int r = pair_recv(c->fd, c->deadline, m, c->err, sizeof(c->err));

        if (r == -EPROTONOSUPPORT) {
                /* Answered in the peer's own version when it is older, so that it can read it. */
                pair_send_error_v(c->fd, m->v && m->v < PAIR_VERSION ? m->v : PAIR_VERSION,
                                  PAIR_ERR_VERSION, c->err);
                return PAIR_ERR_VERSION;
        }
        if (r < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, c->err);
        if (m->type == PAIR_MSG_ERROR && c->guessed) {
                snprintf(c->err, sizeof(c->err), "the joiner reports: %s",
                         pair_error_text(m->error));
                return m->error == PAIR_ERR_WRONG_CODE ? PAIR_ERR_WRONG_CODE : PAIR_ERR_PROTOCOL;
        }
        if (m->type != want) {
                pair_msg_clear(m);
                snprintf(c->err, sizeof(c->err), "expected '%s'", what);
                return pair_fail(c, PAIR_ERR_PROTOCOL, c->err);
        }
        return PAIR_ERR_NONE;
}

/* hello (ours commits to our share), shares, key confirmation. The code is claimed only when a
 * well-formed share arrives, and spent only once that share has been processed. */
static enum pair_error pair_handshake(struct pair_ceremony *c, const char *code)
{
        struct pair_msg m, out = {.type = PAIR_MSG_HELLO};
        enum pair_error e;
        int r;

        e = pair_expect(c, PAIR_MSG_HELLO, "hello", &m);
        if (e != PAIR_ERR_NONE || pair_code_check(c, false) != PAIR_ERR_NONE) {
                pair_msg_clear(&m);
                return e != PAIR_ERR_NONE ? e : c->refused;
        }
        pair_session_init(&c->s, false, c->sv->conf.node_id);
        r = pair_session_start(&c->s, code, m.id, m.nonce, &c->sv->bind, NULL);
        pair_msg_clear(&m);
        if (r < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, "reflected nonce or bad code");
        snprintf(out.id, sizeof(out.id), "%s", c->s.self_id);
        memcpy(out.nonce, c->s.nonce_self, PAIR_NONCE_LEN);
        out.has_commit = true;
        memcpy(out.commit, c->s.commit, PAIR_COMMIT_LEN);
        if (pair_send(c->fd, &out) < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, "cannot send hello");
        e = pair_expect(c, PAIR_MSG_SHARE, "share", &m);
        if (e == PAIR_ERR_NONE && m.has_tag) {
                pair_msg_clear(&m);
                return pair_fail(c, PAIR_ERR_PROTOCOL, "a joiner's share carries no tag");
        }
        if (e != PAIR_ERR_NONE || pair_code_check(c, true) != PAIR_ERR_NONE) {
                pair_msg_clear(&m);
                return e != PAIR_ERR_NONE ? e : c->refused;
        }
        r = pair_session_finish(&c->s, &m);
        pair_msg_clear(&m);
        if (r < 0) /* nothing was computed from the code: no guess, the claim is released */
                return pair_fail(c, PAIR_ERR_PROTOCOL,
                                 "invalid or identity point, or our own share reflected");
        c->guessed = true;
        pair_session_share(&c->s, &out);
        if (pair_send(c->fd, &out) < 0)
                return pair_fail(c, PAIR_ERR_PROTOCOL, "cannot send share");
        e = pair_expect(c, PAIR_MSG_CONFIRM, "confirm", &m);
        if (e != PAIR_ERR_NONE)
                return e;
        r = pair_session_check_tag(&c->s, m.tag);
        pair_msg_clear(&m);
        if (r < 0) {
                c->s.keyed = false; /* the keys are wrong: answer in clear */
                return pair_fail(c, PAIR_ERR_WRONG_CODE, NULL);
        }
        return PAIR_ERR_NONE;
}

/* The join request repeats what the joiner bound into the handshake; nothing else is taken. */
static bool pair_request_as_bound(const struct pair_session *s, const struct pair_msg *req)
{
        return strcmp(req->name, s->peer_id) == 0 && req->role == s->bind_peer.role &&
               strcmp(req->wg_public_key, s->bind_peer.wg_public_key) == 0 &&
               strcmp(req->endpoint, s->bind_peer.endpoint) == 0;
}

/* The roster with the joiner comes from the privileged parent, which holds the genesis key; this
 * process sends it to the joiner and then asks the parent to apply and push it. */
static enum pair_error pair_admit(struct pair_ceremony *c, const struct pair_msg *req)
{
        struct pair_server *sv = c->sv;
        struct pair_msg *acc; /* on the heap: the caller's frame holds the request */
        struct pair_priv_sign_join j = {.role = (uint32_t)req->role};
        struct pair_priv_signed s;
        char *roster = NULL;
        json_error_t jerr;
        enum pair_error e;
        int r;

        if (!pair_request_as_bound(&c->s, req))
                return pair_fail(c, PAIR_ERR_PROTOCOL,
                                 "the join request differs from what the handshake bound (name, "
                                 "role, WireGuard key or endpoint)");
        acc = calloc(1, sizeof(*acc));
        if (!acc)
                return pair_fail(c, PAIR_ERR_INTERNAL, "out of memory");
        acc->type = PAIR_MSG_JOIN_ACCEPT;
        snprintf(j.name, sizeof(j.name), "%s", req->name);
        snprintf(j.wg_public_key, sizeof(j.wg_public_key), "%s", req->wg_public_key);
        snprintf(j.endpoint, sizeof(j.endpoint), "%s", req->endpoint);
        pthread_mutex_lock(&sv->priv_lock);
        r = pair_priv_sign_join(sv->priv_fd, &j, &s, &roster);
        pthread_mutex_unlock(&sv->priv_lock);
        if (r < 0 || s.error != PAIR_ERR_NONE) {
                free(acc);
                if (r < 0)
                        return pair_fail(c, PAIR_ERR_INTERNAL,
                                         "the privileged process did not answer");
                return pair_fail(c, (enum pair_error)s.error, s.detail[0] ? s.detail : NULL);
        }
        snprintf(acc->node_id, sizeof(acc->node_id), "%s", req->name);
        snprintf(acc->mesh_address, sizeof(acc->mesh_address), "%s", s.mesh_address);
        snprintf(acc->genesis_public_key, sizeof(acc->genesis_public_key), "%s",
                 s.genesis_public_key);
        acc->roster = json_loads(roster, JSON_REJECT_DUPLICATES, &jerr);
        free(roster);
        e = PAIR_ERR_NONE;
        if (!acc->roster || pair_send_sealed(c->fd, &c->s, acc) < 0) {
                snprintf(c->err, sizeof(c->err), "cannot send the roster to the joiner");
                e = PAIR_ERR_PROTOCOL;
        }
        json_decref(acc->roster);
        free(acc);
        fprintf(sv->o->out, "joined: node '%s' role %s mesh address %s roster version %llu\n",
                req->name, roster_role_name(req->role), s.mesh_address,
                (unsigned long long)s.version);
        fflush(sv->o->out);
        pthread_mutex_lock(&sv->priv_lock);
        r = pair_priv_apply(sv->priv_fd, s.version);
        pthread_mutex_unlock(&sv->priv_lock);
        if (r < 0)
                fprintf(sv->o->out, "warning: roster version %llu not applied: %s\n",
                        (unsigned long long)s.version, strerror(-r));
        return e;
}

/* After the SAS phase (peer_spoke: the joiner's request came before our operator confirmed):
 * the joiner's request, then its admission. Apart from pair_handshake, so that the request and
 * the handshake's messages do not share a frame. */
static enum pair_error pair_ceremony_join(struct pair_ceremony *c, bool peer_spoke)
{
        const struct pair_server_opts *o = c->sv->o;
        struct pair_msg req = {0};
        enum pair_error e;
        int r;

        /* The joiner's sealed request (or its refusal) comes after its own operator confirms. */
        r = pair_recv_sealed(c->fd, c->deadline, &c->s, &req, c->err, sizeof(c->err));
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
                e = pair_confirm_sas(&c->s, fileno(o->confirm_in), -1,
                                     pair_remaining_ms(c->deadline), o->out, &peer_spoke);
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

static enum pair_error pair_ceremony_run(struct pair_ceremony *c, const char *code)
{
        const struct pair_server_opts *o = c->sv->o;
        enum pair_error e = pair_handshake(c, code);
        bool peer_spoke = false;

        if (e != PAIR_ERR_NONE)
                return e;
        /* The SAS phase waits for people: its own absolute deadline. */
        c->deadline = pair_clock_ms() + (int64_t)o->sas_timeout_s * 1000 + c->io_ms;
        e = pair_confirm_sas(&c->s, fileno(o->confirm_in), c->fd, (int)o->sas_timeout_s * 1000,
                             o->out, &peer_spoke);
        if (!peer_spoke && e != PAIR_ERR_NONE)
                return pair_fail(c, e, NULL);
        return pair_ceremony_join(c, peer_spoke);
}

/* The code's new state after a connection, under sv->lock. */
static void pair_code_settle(struct pair_server *sv, const struct pair_ceremony *c,
                             enum pair_error e)
{
        if (c->guessed && e == PAIR_ERR_NONE) {
                sv->state = PAIR_CODE_USED;
        } else if (c->guessed) {
                sv->state = PAIR_CODE_BURNED;
                sv->burned_by = e;
        } else if (c->conn->claimed) {
                sv->state = PAIR_CODE_FRESH; /* claimed, but the share was invalid */
        }
}

static void pair_report(const struct pair_ceremony *c, enum pair_error e)
{
        FILE *out = c->sv->o->out;

        if (e == PAIR_ERR_NONE)
                return;
        if (c->guessed)
                fprintf(out, "pairing failed: %s: %s; the code is burned\n", pair_error_name(e),
                        c->err);
        else if (c->refused != PAIR_ERR_NONE)
                fprintf(out, "pairing attempt from '%s' refused: %s\n", c->conn->peer,
                        pair_error_text(e));
        else
                fprintf(out,
                        "pairing attempt from '%s' rejected before any guess: %s: %s; the code "
                        "is still valid\n",
                        c->conn->peer, pair_error_name(e), c->err);
        fflush(out);
}

static void *pair_worker(void *arg)
{
        struct pair_ceremony *c = arg;
        struct pair_server *sv = c->sv;
        enum pair_error e = pair_ceremony_run(c, sv->code);

        pthread_mutex_lock(&sv->lock);
        pair_code_settle(sv, c, e);
        pthread_mutex_unlock(&sv->lock);
        pair_report(c, e);
        pair_session_wipe(&c->s);
        pair_close_gently(c->fd);
        pthread_mutex_lock(&sv->lock);
        c->conn->active = false;
        sv->n_active--;
        pthread_cond_broadcast(&sv->idle);
        pthread_mutex_unlock(&sv->lock);
        free(c);
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
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
                int e = -errno;

                close(fd);
                return e;
        }
        return fd;
}

/* Under sv->lock: how many live connections come from k's address. */
static size_t pair_conn_same_source(const struct pair_server *sv, const struct pair_conn *k)
{
        size_t n = 0;

        for (size_t i = 0; i < 2 * PAIR_CONN_MAX; i++) {
                const struct pair_conn *o = &sv->conns[i];

                n += o->active && !o->dropped && o->addr == k->addr;
        }
        return n;
}

/* Under sv->lock: whether silent connection k goes before the current victim v (n: live
 * connections from k's address, vn: from v's, each counting the newcomer for its address). */
static bool pair_conn_before(const struct pair_conn *k, size_t n, const struct pair_conn *v,
                             size_t vn, uint32_t newcomer)
{
        if (!v)
                return true;
        if (v->spoke != k->spoke)
                return !k->spoke;
        if (n != vn)
                return n > vn;
        if ((k->addr == newcomer) != (v->addr == newcomer))
                return k->addr == newcomer;
        return k->started < v->started;
}

/* Under sv->lock: a free slot for a new connection from newcomer. When PAIR_CONN_MAX
 * connections are being served, one that has not claimed the code is dropped (shut down; its
 * worker ends): a silent one before one that sent a well-formed hello, then one of the address
 * that holds the most (the newcomer counted for its own), the newcomer's own address on a tie,
 * then the oldest. Junk from one address so only ever pushes out its own connections once it
 * holds as many as any other address (ties went to the oldest overall, so a flood from a second
 * address could push out a joiner yet to speak: the likely cause of a CI failure), silent junk
 * never pushes out a joiner that has spoken, and junk from many can delay a real joiner by its own
 * handshake, never block it. NULL when every slot is taken (dropped connections whose workers have
 * not yet ended). */
static struct pair_conn *pair_conn_slot(struct pair_server *sv, uint32_t newcomer)
{
        struct pair_conn *free_slot = NULL, *victim = NULL;
        size_t live = 0, victim_n = 0;

        for (size_t i = 0; i < 2 * PAIR_CONN_MAX; i++) {
                struct pair_conn *k = &sv->conns[i];
                size_t n;

                if (!k->active) {
                        free_slot = free_slot ? free_slot : k;
                        continue;
                }
                if (k->dropped)
                        continue;
                live++;
                n = pair_conn_same_source(sv, k) + (k->addr == newcomer);
                if (!k->claimed && pair_conn_before(k, n, victim, victim_n, newcomer)) {
                        victim = k;
                        victim_n = n;
                }
        }
        if (live < PAIR_CONN_MAX)
                return free_slot;
        if (!victim)
                return NULL;
        shutdown(victim->fd, SHUT_RDWR);
        victim->dropped = true;
        return free_slot;
}

/* Under sv->lock: a slot for a connection from newcomer, waiting up to a second for the worker
 * of a dropped connection to end when every slot is taken (under load the workers of a flood's
 * dropped connections end late, and a joiner arriving then was closed at once). */
static struct pair_conn *pair_conn_wait_slot(struct pair_server *sv, uint32_t newcomer)
{
        struct pair_conn *k = pair_conn_slot(sv, newcomer);
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        while (!k && sv->n_active > 0) {
                if (pthread_cond_timedwait(&sv->idle, &sv->lock, &until) != 0)
                        return pair_conn_slot(sv, newcomer);
                k = pair_conn_slot(sv, newcomer);
        }
        return k;
}

static void pair_on_connection(struct pair_server *sv, int fd, const struct sockaddr_in *from)
{
        struct pair_ceremony *c = calloc(1, sizeof(*c));
        struct pair_conn *k = NULL;
        pthread_attr_t attr;
        pthread_t t;
        int r = -ENOMEM;

        pthread_mutex_lock(&sv->lock);
        if (c && (k = pair_conn_wait_slot(sv, from->sin_addr.s_addr))) {
                *k = (struct pair_conn){.fd = fd,
                                        .addr = from->sin_addr.s_addr,
                                        .started = pair_clock_ms(),
                                        .active = true};
                inet_ntop(AF_INET, &from->sin_addr, k->peer, sizeof(k->peer));
                *c = (struct pair_ceremony){.sv = sv, .conn = k, .fd = fd};
                c->io_ms = (int)sv->o->io_timeout_s * 1000;
                c->deadline = k->started + c->io_ms;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = -pthread_create(&t, &attr, pair_worker, c);
                pthread_attr_destroy(&attr);
                if (r == 0)
                        sv->n_active++;
                else
                        k->active = false;
        }
        pthread_mutex_unlock(&sv->lock);
        if (r < 0) { /* no slot (a flood) or no thread: this connection is not served */
                free(c);
                close(fd);
        }
}

/* Ends the connections still served (junk, or late joiners) and waits for their workers. */
static void pair_server_drain(struct pair_server *sv)
{
        pthread_mutex_lock(&sv->lock);
        for (size_t i = 0; i < 2 * PAIR_CONN_MAX; i++) {
                if (sv->conns[i].active && !sv->conns[i].claimed)
                        shutdown(sv->conns[i].fd, SHUT_RDWR);
        }
        while (sv->n_active > 0)
                pthread_cond_wait(&sv->idle, &sv->lock);
        pthread_mutex_unlock(&sv->lock);
}

/* The genesis' own binding: role, WireGuard public key (from wg.key) and endpoint. */
static int pair_server_binding(struct pair_server *sv)
{
        uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];
        char *path = NULL;
        int ret = pair_state_path(sv->o->state_dir, "wg.key", &path);

        ret = ret ?: wg_key_load(path, k);
        free(path);
        ret = ret ?: roster_role_parse(sv->conf.role, &sv->bind.role);
        if (ret == 0) {
                wg_key_public_from_private(pub, k);
                wg_key_to_base64(sv->bind.wg_public_key, pub);
                snprintf(sv->bind.endpoint, sizeof(sv->bind.endpoint), "%s", sv->conf.endpoint);
        }
        sodium_memzero(k, sizeof(k));
        return ret;
}

/* The genesis behind NAT dials the joiner (which waits with 'join --listen'): one connection at a
 * time while the code is fresh, tried again every second until one is served; that ceremony
 * then runs as an accepted one would. */
static void pair_server_dial(struct pair_server *sv)
{
        struct sockaddr_in from = {0};
        socklen_t flen = sizeof(from);
        bool busy;
        int fd;

        pthread_mutex_lock(&sv->lock);
        busy = sv->n_active > 0 || sv->state != PAIR_CODE_FRESH;
        pthread_mutex_unlock(&sv->lock);
        if (!busy) {
                struct sockaddr_in self = {0};
                socklen_t slen = sizeof(self);

                fd = pair_connect(sv->dial, pair_clock_ms() + 2000);
                /* A local port no one listens on can connect to itself (TCP simultaneous open
                 * when the source port the kernel picks is that port): that is no joiner. */
                if (fd >= 0 && getpeername(fd, (struct sockaddr *)&from, &flen) == 0 &&
                    getsockname(fd, (struct sockaddr *)&self, &slen) == 0 &&
                    (self.sin_port != from.sin_port ||
                     self.sin_addr.s_addr != from.sin_addr.s_addr)) {
                        pair_on_connection(sv, fd, &from);
                        return;
                }
                if (fd >= 0)
                        close(fd);
        }
        sleep(1);
}

/* Whether the accept loop is done: 0 to go on, else the server's result. */
static int pair_server_done(struct pair_server *sv, int64_t *linger_until)
{
        enum pair_code_state st;

        pthread_mutex_lock(&sv->lock);
        st = sv->state;
        pthread_mutex_unlock(&sv->lock);
        if (st == PAIR_CODE_USED)
                return 1;
        /* A burned code is announced for a short while, then the ceremony is over. */
        if (st == PAIR_CODE_BURNED && *linger_until > pair_clock_ms() + 30000)
                *linger_until = pair_clock_ms() + 30000;
        if (st == PAIR_CODE_CLAIMED || pair_clock_ms() < *linger_until)
                return 0;
        fprintf(sv->o->out, "pairing server closed: %s\n",
                st == PAIR_CODE_BURNED ? "the code was burned" : "the code expired unused");
        return st == PAIR_CODE_BURNED ? -EACCES : -ETIMEDOUT;
}

/* The network process: drops privilege, then serves the ceremony; its result is its exit
 * status (a positive errno). */
static int pair_server_child(struct pair_server *sv, int lfd)
{
        const struct pair_server_opts *o = sv->o;
        /* a genesis that dials (behind NAT) makes its connections here, to the address the
         * parent resolved: sockets, but still no file opens */
        struct privsep_drop d = {.no_files = true, .no_sockets = !o->connect};
        const int keep[] = {lfd, sv->priv_fd};
        char err[256];
        int64_t linger_until;
        int ret;

        if (privsep_user_find(PRIVSEP_USER, &d) < 0 && geteuid() == 0) {
                fprintf(stderr, "pairing server: no user '%s' to run the network process as\n",
                        PRIVSEP_USER);
                return EPERM;
        }
        /* nothing the server was started with but stdio: a descriptor an operator's shell
         * left open (a key file, a netlink socket) does not reach this process */
        privsep_close_fds_except(keep, 2);
        if (privsep_drop_now(&d, err, sizeof(err)) < 0) {
                fprintf(stderr, "pairing server: %s\n", err);
                return EPERM;
        }
        /* set after the drop (a change of credentials clears it): no ceremony outlives the
         * process that holds the key */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != sv->parent)
                return ECONNRESET;
        pthread_mutex_init(&sv->lock, NULL);
        pthread_mutex_init(&sv->priv_lock, NULL);
        pthread_cond_init(&sv->idle, NULL);
        if (o->code)
                snprintf(sv->code, sizeof(sv->code), "%s", o->code);
        else
                pair_code_generate(sv->code);
        sv->expires = pair_clock_ms() + (int64_t)o->code_ttl_s * 1000;
        /* After expiry the server stays a little to say "expired" rather than go silent. */
        linger_until = sv->expires + 60000;
        fprintf(o->out,
                "pairing server: network frames are read by process %d (uid %u, no "
                "capabilities); the genesis key stays in process %d\n",
                (int)getpid(), (unsigned)getuid(), (int)sv->parent);
        fprintf(o->out, "pairing code: %s (expires in %u s, good for one guess)\n", sv->code,
                o->code_ttl_s);
        if (o->connect)
                fprintf(o->out, "pairing: dialling the joiner at %s (%s)\n", o->connect, sv->dial);
        else
                fprintf(o->out, "pairing server listening on %s:%u\n", o->listen_addr, o->port);
        fflush(o->out);
        while ((ret = pair_server_done(sv, &linger_until)) == 0) {
                struct pollfd p = {.fd = lfd, .events = POLLIN};

                if (o->connect) {
                        pair_server_dial(sv);
                        continue;
                }
                struct sockaddr_in from = {0};
                socklen_t flen = sizeof(from);
                int fd;

                if (poll(&p, 1, 200) <= 0)
                        continue;
                fd = accept4(lfd, (struct sockaddr *)&from, &flen, SOCK_CLOEXEC);
                if (fd >= 0)
                        pair_on_connection(sv, fd, &from);
        }
        if (lfd >= 0)
                close(lfd);
        pair_server_drain(sv);
        sodium_memzero(sv->code, sizeof(sv->code));
        fflush(o->out);
        return ret > 0 ? 0 : -ret;
}

/* The privileged parent: serves the child's requests until it ends. */
static int pair_server_parent(struct pair_server *sv, pid_t child, int fd)
{
        struct pair_priv_parent p = {.o = sv->o, .conf = sv->conf};
        int r = pair_priv_serve(&p, fd), status = 0;

        if (r == -EPROTO)
                kill(child, SIGKILL);
        close(fd);
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
                ;
        if (r == -EPROTO)
                return r;
        if (WIFEXITED(status))
                return -WEXITSTATUS(status);
        fprintf(stderr, "pairing server: the network process ended by signal %d\n",
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return -EIO;
}

/* pair_server_run with the server's state in sv. */
static int pair_server_run_in(struct pair_server *sv)
{
        const struct pair_server_opts *o = sv->o;
        char norm[PAIR_CODE_CHARS + 1];
        int lfd, fds[2];
        pid_t pid;

        if (pair_conf_load(o->state_dir, &sv->conf) < 0 || !sv->conf.subnet[0]) {
                fprintf(stderr, "'%s' holds no genesis state; run 'totebox-pair genesis' first\n",
                        o->state_dir);
                return -ENOENT;
        }
        if (pair_server_binding(sv) < 0) {
                fprintf(stderr, "cannot read the genesis WireGuard key in '%s'\n", o->state_dir);
                return -ENOKEY;
        }
        if (o->code && pair_code_normalize(o->code, norm) < 0)
                return -EINVAL;
        if (o->connect && pair_resolve(o->connect, sv->dial, sizeof(sv->dial)) < 0) {
                fprintf(stderr, "cannot resolve the joiner's address '%s'\n", o->connect);
                return -EHOSTUNREACH;
        }
        lfd = o->connect ? -1 : pair_listen(o);
        if (lfd < 0 && !o->connect) {
                fprintf(stderr, "cannot listen on '%s:%u': %s\n", o->listen_addr, o->port,
                        strerror(-lfd));
                return lfd;
        }
        if (imsg_socketpair(fds) < 0) {
                if (lfd >= 0)
                        close(lfd);
                return -errno;
        }
        fflush(o->out);
        fflush(stderr);
        sv->parent = getpid();
        pid = fork();
        if (pid == 0) {
                close(fds[0]);
                sv->priv_fd = fds[1];
                _exit(pair_server_child(sv, lfd));
        }
        close(fds[1]);
        if (lfd >= 0)
                close(lfd);
        if (pid < 0) {
                close(fds[0]);
                return -errno;
        }
        return pair_server_parent(sv, pid, fds[0]);
}

int pair_server_run(const struct pair_server_opts *o)
{
        /* On the heap: its table of connections alone is most of a frame. */
        struct pair_server *sv = calloc(1, sizeof(*sv));
        int ret;

        if (!sv) {
                fprintf(stderr, "pairing server: out of memory\n");
                return -ENOMEM;
        }
        sv->o = o;
        sv->state = PAIR_CODE_FRESH;
        sv->priv_fd = -1;
        ret = pair_server_run_in(sv);
        free(sv);
        return ret;
}
