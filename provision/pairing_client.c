/* The joining side: connect to the genesis pairing server, run CPace with the code, check the
 * genesis' key confirmation, show the SAS and wait for the operator to type the genesis' SAS,
 * then send this node's WireGuard key, endpoint, name and role under the ISK-derived key and
 * receive the signed roster. Nothing is stored or applied before the roster verifies under the
 * genesis key received in the same authenticated channel. Also: applying pushed rosters. */
#include "provision/pairing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mesh.h"

struct pair_join {
        const struct pair_join_opts *o;
        struct pair_session s;
        struct pair_binding self;
        int fd;
        int64_t deadline; /* the handshake's, then the exchange's: absolute */
        char err[256];
};

static enum pair_error pair_join_fail(struct pair_join *j, enum pair_error e, const char *detail)
{
        if (e != PAIR_ERR_NONE && j->fd >= 0)
                pair_send_error(j->fd, j->s.keyed ? &j->s : NULL, e, NULL);
        if (detail != j->err) /* the caller may pass our own buffer back */
                snprintf(j->err, sizeof(j->err), "%s", detail ? detail : pair_error_text(e));
        if (!j->err[0])
                snprintf(j->err, sizeof(j->err), "%s", pair_error_text(e));
        return e;
}

/* The genesis refused in clear text (busy, used, expired, version, wrong code). */
static enum pair_error pair_join_refused(struct pair_join *j, struct pair_msg *m)
{
        enum pair_error e = m->error;
        bool more = m->detail[0] && strcmp(m->detail, pair_error_text(e)) != 0;

        snprintf(j->err, sizeof(j->err), "%s%s%s", pair_error_text(e), more ? ": " : "",
                 more ? m->detail : "");
        pair_printable(j->err);
        pair_msg_clear(m);
        return e;
}

/* Reads the next clear-text message of the handshake: a refusal, or one of type want. */
static enum pair_error pair_join_expect(struct pair_join *j, enum pair_msg_type want,
                                        const char *what, struct pair_msg *m)
{
        int r = pair_recv(j->fd, j->deadline, m, j->err, sizeof(j->err));

        if (r == 0 && m->type == PAIR_MSG_ERROR)
                return pair_join_refused(j, m);
        if (r == -EPROTONOSUPPORT)
                return pair_join_fail(j, PAIR_ERR_VERSION, j->err);
        if (r < 0)
                return pair_join_fail(j, PAIR_ERR_PROTOCOL, j->err);
        if (m->type != want) {
                pair_msg_clear(m);
                snprintf(j->err, sizeof(j->err), "expected '%s' from the genesis", what);
                return pair_join_fail(j, PAIR_ERR_PROTOCOL, j->err);
        }
        return PAIR_ERR_NONE;
}

static enum pair_error pair_join_handshake(struct pair_join *j)
{
        struct pair_msg m, out = {.type = PAIR_MSG_HELLO};
        enum pair_error e;
        int r;

        pair_session_init(&j->s, true, j->o->name);
        snprintf(out.id, sizeof(out.id), "%s", j->o->name);
        memcpy(out.nonce, j->s.nonce_self, PAIR_NONCE_LEN);
        /* A refusal may already be waiting even when the send fails: read it either way. */
        pair_send(j->fd, &out);
        e = pair_join_expect(j, PAIR_MSG_HELLO, "hello", &m);
        if (e != PAIR_ERR_NONE)
                return e;
        if (!m.has_commit) {
                pair_msg_clear(&m);
                return pair_join_fail(j, PAIR_ERR_PROTOCOL,
                                      "the genesis' hello carries no commitment to its share");
        }
        r = pair_session_start(&j->s, j->o->code, m.id, m.nonce, &j->self, m.commit);
        pair_msg_clear(&m);
        if (r < 0)
                return pair_join_fail(j, PAIR_ERR_PROTOCOL, "reflected nonce");
        pair_session_share(&j->s, &out);
        if (pair_send(j->fd, &out) < 0)
                return pair_join_fail(j, PAIR_ERR_PROTOCOL, "cannot send share");
        e = pair_join_expect(j, PAIR_MSG_SHARE, "share", &m);
        if (e != PAIR_ERR_NONE)
                return e;
        r = m.has_tag ? pair_session_finish(&j->s, &m) : -EINVAL;
        if (r < 0) {
                pair_msg_clear(&m);
                return pair_join_fail(j, PAIR_ERR_PROTOCOL,
                                      r == -EBADE
                                          ? "the genesis' share does not open the commitment "
                                            "in its hello (a man in the middle choosing its "
                                            "share after seeing ours?)"
                                          : "invalid or identity point, a bad binding or our "
                                            "own share reflected");
        }
        r = pair_session_check_tag(&j->s, m.tag);
        pair_msg_clear(&m);
        if (r < 0) {
                j->s.keyed = false;
                return pair_join_fail(j, PAIR_ERR_WRONG_CODE, NULL);
        }
        memset(&out, 0, sizeof(out));
        out.type = PAIR_MSG_CONFIRM;
        pair_session_tag(&j->s, true, out.tag);
        if (pair_send(j->fd, &out) < 0)
                return pair_join_fail(j, PAIR_ERR_PROTOCOL, "cannot send confirm");
        return PAIR_ERR_NONE;
}

static int pair_join_wg_key(const struct pair_join_opts *o, char pub64[WG_KEY_B64_SIZE])
{
        uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];
        char *path = NULL;
        int ret = pair_state_path(o->state_dir, "wg.key", &path);

        if (ret < 0)
                return ret;
        ret = wg_key_load(path, k);
        if (ret == -ENOENT) {
                wg_key_generate_private(k);
                ret = wg_key_save(path, k);
        }
        if (ret == 0) {
                wg_key_public_from_private(pub, k);
                wg_key_to_base64(pub64, pub);
        }
        sodium_memzero(k, sizeof(k));
        free(path);
        return ret;
}

/* Checks the accept against what we sent, then stores genesis key, roster and node.conf. */
static enum pair_error pair_join_store(struct pair_join *j, const struct pair_msg *acc,
                                       const char *pub64)
{
        const struct pair_join_opts *o = j->o;
        struct pair_node_conf c = {0};
        const struct roster_node *self, *gen;
        uint8_t pk[32], old[32];
        struct roster *r;
        char *s = json_dumps(acc->roster, JSON_COMPACT);
        enum pair_error e = PAIR_ERR_PROTOCOL;

        r = s ? roster_parse(s, strlen(s), j->err, sizeof(j->err)) : NULL;
        free(s);
        if (!r)
                return PAIR_ERR_PROTOCOL;
        self = roster_find_by_id(r, acc->node_id);
        if (wg_key_from_base64(pk, acc->genesis_public_key) < 0 || roster_verify(r, pk) < 0) {
                snprintf(j->err, sizeof(j->err), "the roster is not signed by the genesis key");
        } else if (!self || strcmp(self->id, o->name) != 0 ||
                   strcmp(self->wg_public_key, pub64) != 0 ||
                   strcmp(self->mesh_address, acc->mesh_address) != 0) {
                snprintf(j->err, sizeof(j->err), "the roster does not list this node as sent");
        } else if (!(gen = roster_find_by_id(r, j->s.peer_id)) ||
                   strcmp(gen->wg_public_key, j->s.bind_peer.wg_public_key) != 0) {
                snprintf(j->err, sizeof(j->err),
                         "the roster lists genesis '%s' with another WireGuard key than the "
                         "one bound in the handshake",
                         j->s.peer_id);
        } else if (pair_genesis_pub_load(o->state_dir, old) == 0 && memcmp(old, pk, 32) != 0) {
                snprintf(j->err, sizeof(j->err), "this node already belongs to another fleet");
        } else if (pair_genesis_pub_save(o->state_dir, pk) < 0 ||
                   pair_roster_accept(o->state_dir, r, j->err, sizeof(j->err)) < 0) {
                e = PAIR_ERR_INTERNAL;
        } else {
                snprintf(c.node_id, sizeof(c.node_id), "%s", o->name);
                snprintf(c.ifname, sizeof(c.ifname), "%s", o->ifname);
                c.wg_port = o->wg_port;
                snprintf(c.role, sizeof(c.role), "%s", roster_role_name(o->role));
                snprintf(c.mesh_address, sizeof(c.mesh_address), "%s", acc->mesh_address);
                snprintf(c.endpoint, sizeof(c.endpoint), "%s", o->endpoint ? o->endpoint : "");
                e = pair_conf_save(o->state_dir, &c) < 0 ? PAIR_ERR_INTERNAL : PAIR_ERR_NONE;
                if (e == PAIR_ERR_NONE)
                        fprintf(o->out,
                                "joined: fleet '%s' as node '%s' mesh address %s roster version "
                                "%llu\n",
                                r->fleet_id, o->name, acc->mesh_address,
                                (unsigned long long)r->version);
        }
        roster_free(r);
        return e;
}

static enum pair_error pair_join_exchange(struct pair_join *j)
{
        const struct pair_join_opts *o = j->o;
        struct pair_msg req = {.type = PAIR_MSG_JOIN_REQUEST}, acc;
        bool peer_spoke = false;
        enum pair_error e;
        int r;

        j->deadline =
            pair_clock_ms() + (int64_t)o->sas_timeout_s * 1000 + (int64_t)o->io_timeout_s * 1000;
        e = pair_confirm_sas(&j->s, fileno(o->confirm_in), j->fd, (int)o->sas_timeout_s * 1000,
                             o->out, &peer_spoke);
        if (peer_spoke) {
                r = pair_recv_sealed(j->fd, j->deadline, &j->s, &acc, j->err, sizeof(j->err));
                if (r < 0)
                        return PAIR_ERR_PROTOCOL;
                e = acc.type == PAIR_MSG_ABORT || acc.type == PAIR_MSG_ERROR ? acc.error
                                                                             : PAIR_ERR_PROTOCOL;
                pair_msg_clear(&acc);
                snprintf(j->err, sizeof(j->err), "the genesis node refused: %s",
                         pair_error_text(e));
                return e;
        }
        if (e != PAIR_ERR_NONE)
                return pair_join_fail(j, e, NULL);
        snprintf(req.name, sizeof(req.name), "%s", o->name);
        req.role = j->self.role;
        snprintf(req.wg_public_key, sizeof(req.wg_public_key), "%s", j->self.wg_public_key);
        snprintf(req.endpoint, sizeof(req.endpoint), "%s", j->self.endpoint);
        /* If the genesis refused meanwhile, the send may fail: its reason is read below. */
        pair_send_sealed(j->fd, &j->s, &req);
        fprintf(o->out, "SAS confirmed here; waiting for the genesis operator\n");
        fflush(o->out);
        r = pair_recv_sealed(j->fd, j->deadline, &j->s, &acc, j->err, sizeof(j->err));
        if (r < 0)
                return PAIR_ERR_PROTOCOL;
        if (acc.type != PAIR_MSG_JOIN_ACCEPT) {
                e = acc.type == PAIR_MSG_ABORT || acc.type == PAIR_MSG_ERROR ? acc.error
                                                                             : PAIR_ERR_PROTOCOL;
                snprintf(j->err, sizeof(j->err), "the genesis node refused: %s",
                         pair_error_text(e));
                pair_msg_clear(&acc);
                return e;
        }
        e = pair_join_store(j, &acc, req.wg_public_key);
        pair_msg_clear(&acc);
        return e;
}

/* The join itself; j's session is wiped after the ceremony (it holds no key before). */
static int pair_join_run_in(struct pair_join *j)
{
        const struct pair_join_opts *o = j->o;
        enum pair_error e;
        char norm[PAIR_CODE_CHARS + 1];
        int ret = 0;

        if (pair_code_normalize(o->code, norm) < 0) {
                fprintf(stderr,
                        "join failed: '%s' is not a pairing code (10 symbols, e.g. "
                        "ABCDE-FGH12)\n",
                        "<code>");
                return -EINVAL;
        }
        /* The key is bound into the handshake: it exists before the first message. */
        j->self.role = o->role;
        snprintf(j->self.endpoint, sizeof(j->self.endpoint), "%s", o->endpoint ? o->endpoint : "");
        if (pair_state_mkdir(o->state_dir) < 0 || pair_join_wg_key(o, j->self.wg_public_key) < 0) {
                fprintf(stderr, "join failed: internal: cannot create this node's key in '%s'\n",
                        o->state_dir);
                return -EIO;
        }
        if (o->listen) {
                /* The genesis dials in (it sits behind NAT): wait for it as long as for a SAS,
                 * then the handshake has its own deadline. */
                fprintf(o->out, "waiting on %s:%u for the genesis to connect\n", o->listen,
                        o->listen_port);
                fflush(o->out);
                j->fd = pair_accept_one(o->listen, o->listen_port,
                                        pair_clock_ms() + (int64_t)o->sas_timeout_s * 1000);
                j->deadline = pair_clock_ms() + (int64_t)o->io_timeout_s * 1000;
                if (j->fd < 0) {
                        fprintf(stderr, "join failed: no genesis connected to %s:%u: %s\n",
                                o->listen, o->listen_port, strerror(-j->fd));
                        return j->fd;
                }
        } else {
                /* One deadline for connecting and the whole handshake. */
                j->deadline = pair_clock_ms() + (int64_t)o->io_timeout_s * 1000;
                j->fd = pair_connect(o->genesis, j->deadline);
        }
        if (j->fd < 0) {
                fprintf(stderr,
                        "join failed: cannot reach the genesis pairing server at '%s': %s%s\n",
                        o->genesis, strerror(-j->fd),
                        j->fd == -ETIMEDOUT ? " (no answer: is 'totebox-pair serve' running there "
                                              "and the port open?)"
                                            : "");
                return j->fd;
        }
        e = pair_join_handshake(j);
        if (e == PAIR_ERR_NONE)
                e = pair_join_exchange(j);
        if (e != PAIR_ERR_NONE) {
                fprintf(stderr, "join failed: %s: %s\n", pair_error_name(e),
                        j->err[0] ? j->err : pair_error_text(e));
                ret = -EACCES;
        }
        pair_session_wipe(&j->s);
        pair_close_gently(j->fd);
        if (ret == 0 && !o->no_wg && pair_mesh_up(o->state_dir, j->err, sizeof(j->err)) < 0) {
                fprintf(stderr, "joined, but the mesh interface failed: %s\n", j->err);
                ret = -EIO;
        }
        return ret;
}

int pair_join_run(const struct pair_join_opts *o)
{
        /* On the heap: the session, with the messages around it, would not fit in one frame. */
        struct pair_join *j = calloc(1, sizeof(*j));
        int ret;

        if (!j) {
                fprintf(stderr, "join failed: internal: out of memory\n");
                return -ENOMEM;
        }
        j->o = o;
        j->fd = -1;
        ret = pair_join_run_in(j);
        pair_session_wipe(&j->s);
        free(j);
        return ret;
}

int pair_mesh_up(const char *state_dir, char *err, size_t errsize)
{
        struct pair_node_conf c;
        struct roster *r;
        struct in_addr a;
        char *path = NULL;
        int ret = pair_conf_load(state_dir, &c);

        if (ret < 0) {
                snprintf(err, errsize, "no node.conf in '%s'", state_dir);
                return ret;
        }
        r = pair_roster_load(state_dir, err, errsize);
        if (!r)
                return -EINVAL;
        ret = inet_pton(AF_INET, c.mesh_address, &a) == 1 ? 0 : -EINVAL;
        ret = ret ?: pair_state_path(state_dir, "wg.key", &path);
        ret = ret ?: mesh_interface_setup(c.ifname, path, (uint16_t)c.wg_port, a);
        ret = ret ?: mesh_apply_roster(c.ifname, r, c.node_id);
        if (ret < 0)
                snprintf(err, errsize, "interface '%s': %s", c.ifname, strerror(-ret));
        free(path);
        roster_free(r);
        return ret;
}

int pair_apply_roster_file(const char *state_dir, const char *path, bool no_wg, char *err,
                           size_t errsize)
{
        struct roster *r = roster_load_file(path, err, errsize);
        struct pair_node_conf c;
        int ret;

        if (!r)
                return -EINVAL;
        ret = pair_roster_accept(state_dir, r, err, errsize);
        if (ret == 0 && !no_wg && pair_conf_load(state_dir, &c) == 0) {
                ret = mesh_apply_roster(c.ifname, r, c.node_id);
                if (ret < 0)
                        snprintf(err, errsize, "roster stored but not applied to '%s': %s",
                                 c.ifname, strerror(-ret));
        }
        roster_free(r);
        return ret;
}
