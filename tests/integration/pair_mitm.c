/* A man in the middle who knows the pairing code (test helper for test_pairing_adversarial.py).
 * It takes the victim joiner's connection, joins the real genesis itself under the victim's
 * name with its own WireGuard key (so the genesis shows a SAS), then plays the genesis towards
 * the victim and tries to make the victim's SAS equal the genesis' one:
 *   --mode grind:  after the victim's share, draws up to --tries fresh shares of its own and
 *                  sends the first whose SAS agrees with the genesis' on the last --digits
 *                  digits (the attack on totebox-pair/1, where the genesis spoke last);
 *   --mode honest: sends the share it committed to in its hello (all that version 2 allows).
 * It prints what it did on stdout ("mitm: ..." lines) and what the victim answered. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "provision/pairing.h"

struct mitm {
        const char *code, *mode;
        unsigned listen_port, genesis_port, digits;
        int tries;
        struct pair_binding bind; /* the attacker's own key, towards both sides */
        struct pair_session to_g, to_v;
        int gfd, vfd;
        int64_t deadline;
};

static int mitm_die(const char *what, const char *err)
{
        printf("mitm: failed: %s: %s\n", what, err);
        return 1;
}

static int mitm_tcp(unsigned port, bool listen_side)
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, c;

        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (!listen_side)
                return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? fd : -errno;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
                return -errno;
        printf("mitm: listening on 127.0.0.1:%u\n", port);
        fflush(stdout);
        c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        close(fd);
        return c;
}

/* Joins the real genesis as `name` with our own key, up to key confirmation: its SAS. */
static int mitm_join_genesis(struct mitm *m, const char *name)
{
        struct pair_msg h = {.type = PAIR_MSG_HELLO}, r;
        char err[256];

        pair_session_init(&m->to_g, true, name);
        snprintf(h.id, sizeof(h.id), "%s", name);
        memcpy(h.nonce, m->to_g.nonce_self, PAIR_NONCE_LEN);
        if (pair_send(m->gfd, &h) < 0 || pair_recv(m->gfd, m->deadline, &r, err, sizeof(err)) < 0)
                return mitm_die("genesis hello", err);
        if (r.type != PAIR_MSG_HELLO ||
            pair_session_start(&m->to_g, m->code, r.id, r.nonce, &m->bind, r.commit) < 0)
                return mitm_die("genesis hello", "not a hello with a commitment");
        pair_session_share(&m->to_g, &h);
        if (pair_send(m->gfd, &h) < 0 || pair_recv(m->gfd, m->deadline, &r, err, sizeof(err)) < 0)
                return mitm_die("genesis share", err);
        if (r.type != PAIR_MSG_SHARE || pair_session_finish(&m->to_g, &r) < 0 ||
            pair_session_check_tag(&m->to_g, r.tag) < 0)
                return mitm_die("genesis share", "refused");
        memset(&h, 0, sizeof(h));
        h.type = PAIR_MSG_CONFIRM;
        pair_session_tag(&m->to_g, true, h.tag);
        pair_send(m->gfd, &h);
        printf("mitm: genesis SAS '%s'\n", m->to_g.sas);
        return 0;
}

static unsigned mitm_sas_value(const char *sas)
{
        return (unsigned)atoi(sas) * 1000 + (unsigned)atoi(sas + 4);
}

/* Fresh shares of ours against the victim's until the SAS agrees on m->digits digits. */
static int mitm_grind(struct mitm *m, const struct pair_msg *vshare, struct pair_session *t)
{
        unsigned mod = 1, want;
        int64_t t0 = pair_clock_ms(), dt;
        int i;

        for (unsigned d = 0; d < m->digits; d++)
                mod *= 10;
        want = mitm_sas_value(m->to_g.sas) % mod;
        for (i = 1; i <= m->tries; i++) {
                pair_session_init(t, false, m->to_v.self_id);
                memcpy(t->nonce_self, m->to_v.nonce_self, PAIR_NONCE_LEN);
                if (pair_session_start(t, m->code, m->to_v.peer_id, m->to_v.nonce_peer, &m->bind,
                                       NULL) < 0 ||
                    pair_session_finish(t, vshare) < 0)
                        return -1;
                if (mitm_sas_value(t->sas) % mod == want)
                        break;
        }
        dt = pair_clock_ms() - t0;
        printf("mitm: grind tries=%d matched=%s digits=%u candidate SAS '%s' rate=%.0f/s "
               "(a full 6-digit match needs ~10^6 tries: ~%.0f s here)\n",
               i > m->tries ? m->tries : i, i > m->tries ? "no" : "yes", m->digits, t->sas,
               dt > 0 ? 1000.0 * i / (double)dt : 0.0,
               dt > 0 ? 1e6 * (double)dt / 1000.0 / i : 0.0);
        return 0;
}

static int mitm_play_genesis(struct mitm *m, const struct pair_msg *vhello)
{
        struct pair_session *t = calloc(1, sizeof(*t));
        struct pair_msg h = {.type = PAIR_MSG_HELLO}, vshare, ans;
        char err[256];
        int ret = 1;

        pair_session_init(&m->to_v, false, m->to_g.peer_id);
        if (!t ||
            pair_session_start(&m->to_v, m->code, vhello->id, vhello->nonce, &m->bind, NULL) < 0)
                return mitm_die("victim", "cannot start");
        snprintf(h.id, sizeof(h.id), "%s", m->to_v.self_id);
        memcpy(h.nonce, m->to_v.nonce_self, PAIR_NONCE_LEN);
        h.has_commit = true;
        memcpy(h.commit, m->to_v.commit, PAIR_COMMIT_LEN);
        if (pair_send(m->vfd, &h) < 0 ||
            pair_recv(m->vfd, m->deadline, &vshare, err, sizeof(err)) < 0) {
                free(t);
                return mitm_die("victim share", err);
        }
        if (strcmp(m->mode, "grind") == 0) {
                if (mitm_grind(m, &vshare, t) < 0)
                        goto cleanup;
        } else {
                *t = m->to_v;
                if (pair_session_finish(t, &vshare) < 0)
                        goto cleanup;
                printf("mitm: sent the committed share: victim SAS will be '%s'\n", t->sas);
        }
        pair_session_share(t, &h);
        pair_send(m->vfd, &h);
        fflush(stdout);
        if (pair_recv(m->vfd, pair_clock_ms() + 30000, &ans, err, sizeof(err)) < 0)
                printf("mitm: victim answered nothing: %s\n", err);
        else
                printf("mitm: victim answered '%s'%s%s\n",
                       ans.type == PAIR_MSG_ERROR     ? pair_error_name(ans.error)
                       : ans.type == PAIR_MSG_CONFIRM ? "confirm"
                                                      : "other",
                       ans.detail[0] ? ": " : "", ans.detail);
        pair_msg_clear(&ans);
        ret = 0;
cleanup:
        free(t);
        return ret;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                             {"genesis-port", required_argument, NULL, 'g'},
                                             {"code", required_argument, NULL, 'c'},
                                             {"mode", required_argument, NULL, 'm'},
                                             {"tries", required_argument, NULL, 't'},
                                             {"digits", required_argument, NULL, 'd'},
                                             {NULL, 0, NULL, 0}};
        struct mitm m = {.mode = "grind", .tries = 5000, .digits = 2, .gfd = -1, .vfd = -1};
        uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];
        struct pair_msg vhello;
        char err[256];
        int c, ret;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 'l')
                        m.listen_port = (unsigned)atoi(optarg);
                else if (c == 'g')
                        m.genesis_port = (unsigned)atoi(optarg);
                else if (c == 'c')
                        m.code = optarg;
                else if (c == 'm')
                        m.mode = optarg;
                else if (c == 't')
                        m.tries = atoi(optarg);
                else if (c == 'd')
                        m.digits = (unsigned)atoi(optarg);
                else
                        return 2;
        }
        if (sodium_init() < 0 || !m.code || !m.listen_port || !m.genesis_port || m.digits > 6)
                return 2;
        setvbuf(stdout, NULL, _IOLBF, 0);
        wg_key_generate_private(k);
        wg_key_public_from_private(pub, k);
        wg_key_to_base64(m.bind.wg_public_key, pub);
        m.bind.role = ROSTER_ROLE_NODE;
        m.vfd = mitm_tcp(m.listen_port, true);
        m.deadline = pair_clock_ms() + 30000;
        if (m.vfd < 0 || pair_recv(m.vfd, m.deadline, &vhello, err, sizeof(err)) < 0)
                return mitm_die("victim hello", m.vfd < 0 ? strerror(-m.vfd) : err);
        m.gfd = mitm_tcp(m.genesis_port, false);
        if (m.gfd < 0)
                return mitm_die("genesis", strerror(-m.gfd));
        ret = mitm_join_genesis(&m, vhello.id) ?: mitm_play_genesis(&m, &vhello);
        close(m.vfd);
        close(m.gfd);
        return ret;
}
