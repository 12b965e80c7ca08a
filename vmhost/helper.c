/* vmhost's privileged helper (vmhost/helper.h): the messages, the helper process and vmhost's
 * calls to it. The helper is forked before vmhost starts any thread, keeps only its end of the
 * socketpair and stderr, and serves one request at a time until vmhost closes its end or dies
 * (PR_SET_PDEATHSIG). */
#include "vmhost/helper.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mesh.h"
#include "vmhost/vmhost.h"

#define VMH_CALL_TIMEOUT_MS 10000

static const struct imsg_type vmh_types[] = {
    {VMH_APPLY_PEERS, sizeof(struct vmh_apply_peers), sizeof(struct vmh_apply_peers),
     "apply-peers"},
    {VMH_APPLIED, sizeof(struct vmh_result), sizeof(struct vmh_result), "applied"},
    {VMH_WG_KEY, sizeof(struct vmh_wg_key_req), sizeof(struct vmh_wg_key_req), "wg-key"},
    {VMH_WG_KEY_IS, sizeof(struct vmh_wg_key), sizeof(struct vmh_wg_key), "wg-key-is"},
};

const struct imsg_proto vmh_proto = {
    .name = "vmhost helper",
    .version = VMH_VERSION,
    .types = vmh_types,
    .n_types = sizeof(vmh_types) / sizeof(vmh_types[0]),
};

int vmh_decode(const void *buf, size_t n, uint16_t *ret_type, union vmh_msg *ret, char *err,
               size_t errsize)
{
        const void *p;
        struct imsg_hdr h;
        union vmh_msg m;
        uint8_t k[WG_KEY_LEN];
        int r = imsg_check(&vmh_proto, buf, n, &h, &p, err, errsize);

        if (r < 0)
                return r;
        memset(&m, 0, sizeof(m));
        memcpy(&m, p, h.len);
        if ((h.type == VMH_APPLIED && m.result.result > 0) ||
            (h.type == VMH_WG_KEY_IS && m.wg_key.result > 0) ||
            (h.type == VMH_WG_KEY && m.wg_key_req.reserved != 0) ||
            (h.type == VMH_APPLY_PEERS && m.apply_peers.version == 0))
                r = -EBADMSG;
        else if (h.type == VMH_WG_KEY_IS && m.wg_key.result == 0 &&
                 (!imsg_string_ok(m.wg_key.key, sizeof(m.wg_key.key)) ||
                  wg_key_from_base64(k, m.wg_key.key) < 0))
                r = -EBADMSG;
        if (r < 0) {
                snprintf(err, errsize, "%s message '%s': a field is out of range", vmh_proto.name,
                         imsg_type_find(&vmh_proto, h.type)->name);
                return r;
        }
        *ret_type = h.type;
        *ret = m;
        return 0;
}

/* --- the helper --- */

static int vmh_on_apply(struct vmh_helper *h, const struct vmh_apply_peers *a)
{
        const struct vmhost_config *cfg = &h->vh->cfg;
        char path[PATH_MAX], err[256];
        struct roster *r;
        int ret;

        if (!cfg->wg_interface[0])
                return 0;
        if (!h->have_genesis)
                return -ENOKEY;
        if (a->version < h->applied_version)
                return -ESTALE;
        if (snprintf(path, sizeof(path), "%s/roster.json", cfg->state_dir) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        r = roster_load_file(path, err, sizeof(err));
        if (!r)
                return -ENOENT;
        if (r->version != a->version)
                ret = -ESTALE;
        else if (roster_verify(r, h->genesis_pk) < 0)
                ret = -EBADMSG;
        else
                ret = mesh_apply_roster(cfg->wg_interface, r, cfg->node_id);
        if (ret == 0)
                h->applied_version = r->version;
        roster_free(r);
        return ret;
}

static void vmh_on_wg_key(struct vmh_helper *h, struct vmh_wg_key *out)
{
        const struct vmhost_config *cfg = &h->vh->cfg;
        uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
        char path[PATH_MAX];
        struct wg_device *d = NULL;

        out->result = -ENOKEY;
        if (cfg->wg_interface[0]) {
                if (wg_device_get(cfg->wg_interface, &d) == 0 && d->has_public_key) {
                        memcpy(pub, d->public_key, sizeof(pub));
                        out->result = 0;
                }
                wg_device_free(d);
        } else if (cfg->mesh_state_dir[0] &&
                   snprintf(path, sizeof(path), "%s/wg.key", cfg->mesh_state_dir) <
                       (int)sizeof(path) &&
                   wg_key_load(path, priv) == 0) {
                wg_key_public_from_private(pub, priv);
                sodium_memzero(priv, sizeof(priv));
                out->result = 0;
        }
        if (out->result == 0)
                wg_key_to_base64(out->key, pub);
}

int vmh_handle(struct vmh_helper *h, int fd, const void *buf, size_t n, char *err, size_t errsize)
{
        struct vmh_result res = {0};
        struct vmh_wg_key key;
        union vmh_msg m;
        uint16_t type;

        if (vmh_decode(buf, n, &type, &m, err, errsize) < 0)
                return -EPROTO;
        switch ((enum vmh_type)type) {
        case VMH_APPLY_PEERS:
                res.result = vmh_on_apply(h, &m.apply_peers);
                return imsg_send(fd, &vmh_proto, VMH_APPLIED, &res, sizeof(res));
        case VMH_WG_KEY:
                memset(&key, 0, sizeof(key));
                vmh_on_wg_key(h, &key);
                return imsg_send(fd, &vmh_proto, VMH_WG_KEY_IS, &key, sizeof(key));
        case VMH_APPLIED:
        case VMH_WG_KEY_IS:
                break;
        }
        snprintf(err, errsize, "%s message '%s' goes from the helper, not to it", vmh_proto.name,
                 imsg_type_find(&vmh_proto, type)->name);
        return -EPROTO;
}

static int vmh_serve(struct vmh_helper *h, int fd)
{
        static char buf[1024];
        char err[256] = "";
        ssize_t n;
        int r = 0;

        while (r == 0 && (n = imsg_recv(fd, buf, sizeof(buf), -1)) != 0)
                r = n < 0 ? (int)n : vmh_handle(h, fd, buf, (size_t)n, err, sizeof(err));
        if (r < 0)
                log_error("helper: ending: %s", err[0] ? err : strerror(-r));
        return r;
}

static void vmh_child(struct vmhost *vh, int fd, pid_t parent)
{
        struct vmh_helper h = {.vh = vh};

        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent)
                _exit(1);
        /* nothing of vmhost's but stderr and the socket: not its listeners, not its timers */
        if (fd != 3) {
                dup2(fd, 3);
                close(fd);
        }
        close_range(4, ~0U, 0);
        prctl(PR_SET_NAME, "vmhost-helper", 0, 0, 0);
        h.have_genesis = roster_genesis_key(vh, h.genesis_pk) == 0;
        _exit(vmh_serve(&h, 3) < 0 ? 1 : 0);
}

int vmh_start(struct vmhost *vh)
{
        pid_t parent = getpid(), pid;
        int fds[2], r = imsg_socketpair(fds);

        if (r < 0)
                return r;
        fflush(stderr);
        pid = fork();
        if (pid == 0) {
                close(fds[0]);
                vmh_child(vh, fds[1], parent);
        }
        close(fds[1]);
        if (pid < 0) {
                close(fds[0]);
                return -errno;
        }
        vh->helper_fd = fds[0];
        vh->helper_pid = pid;
        vh->helper_up = true;
        log_info("helper: process %d applies WireGuard peers", (int)pid);
        return 0;
}

void vmh_stop(struct vmhost *vh)
{
        if (!vh->helper_up)
                return;
        close(vh->helper_fd);
        vh->helper_fd = -1;
        vh->helper_up = false;
        while (waitpid(vh->helper_pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

static int vmh_call(struct vmhost *vh, uint16_t type, const void *req, size_t len, uint16_t want,
                    union vmh_msg *ret)
{
        char buf[256], err[256];
        uint16_t got = 0;
        ssize_t n;
        int r;

        if (!vh->helper_up)
                return -ENOTCONN;
        pthread_mutex_lock(&vh->helper_lock);
        r = imsg_send(vh->helper_fd, &vmh_proto, type, req, len);
        n = r == 0 ? imsg_recv(vh->helper_fd, buf, sizeof(buf), VMH_CALL_TIMEOUT_MS) : r;
        pthread_mutex_unlock(&vh->helper_lock);
        if (n <= 0)
                return n == 0 ? -ECONNRESET : (int)n;
        r = vmh_decode(buf, (size_t)n, &got, ret, err, sizeof(err));
        if (r == 0 && got != want)
                r = -EBADMSG;
        if (r < 0)
                log_error("helper: bad answer: %s", err);
        return r;
}

int vmh_apply_peers(struct vmhost *vh, uint64_t version)
{
        struct vmh_apply_peers a = {.version = version};
        union vmh_msg m;
        int r = vmh_call(vh, VMH_APPLY_PEERS, &a, sizeof(a), VMH_APPLIED, &m);

        return r < 0 ? r : m.result.result;
}

int vmh_wg_public_key(struct vmhost *vh, char ret[WG_KEY_B64_LEN + 1])
{
        struct vmh_wg_key_req q = {0};
        union vmh_msg m;
        int r = vmh_call(vh, VMH_WG_KEY, &q, sizeof(q), VMH_WG_KEY_IS, &m);

        if (r == 0 && m.wg_key.result < 0)
                r = m.wg_key.result;
        if (r == 0)
                memcpy(ret, m.wg_key.key, WG_KEY_B64_LEN + 1);
        return r;
}
