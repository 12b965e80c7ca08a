/* vmhost-helper: vmhost's privileged helper program (vmhost/helper.h). vmhost starts it with
 * its request socket as fd 3 and the event socket as fd 4; the first message is vmhost's
 * configuration. It then serves until vmhost closes the socket or dies (the parent-death signal
 * set before exec). SIGTERM and SIGINT are ignored: a service manager's stop reaches vmhost,
 * which closes the socket, and the embedded driver is shut down in order. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "vmhost/helper.h"
#include "vmhost/helper_virt.h"
#include "vmhost/vmhost.h"

static int helper_config(struct vmhost *vh)
{
        static char buf[sizeof(struct imsg_hdr) + sizeof(union vmh_msg)];
        static union vmh_msg m;
        struct vmh_result res = {0};
        char err[256] = "";
        uint16_t type = 0;
        ssize_t n = imsg_recv(3, buf, sizeof(buf), 30000);

        if (n <= 0 || vmh_decode(buf, (size_t)n, &type, &m, err, sizeof(err)) < 0 ||
            type != VMH_CONFIG) {
                fprintf(stderr, "vmhost-helper: no configuration from vmhost%s%s\n",
                        err[0] ? ": " : "", err);
                return -EPROTO;
        }
        vh->cfg = m.config.cfg;
        return imsg_send(3, &vmh_proto, VMH_APPLIED, &res, sizeof(res));
}

int main(void)
{
        static struct vmhost vh;
        struct vmh_helper h = {.vh = &vh};
        enum log_level level = LOG_LEVEL_INFO;
        int r;

        /* libvirt's threads, a small heap: one arena keeps the idle footprint down (as vmhost) */
        mallopt(M_ARENA_MAX, 1);
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        if (sodium_init() < 0 || helper_config(&vh) < 0)
                return 1;
        log_level_parse(vh.cfg.log_level, &level);
        log_init("vmhost-helper", level);
        h.have_genesis = roster_genesis_key(&vh, h.genesis_pk) == 0;
        if (vh.cfg.libvirt_uri[0] && (r = hv_start_virt(&h, &vh, 4)) < 0)
                log_error("helper: no libvirt side: %s", strerror(-r));
        /* start-up (libvirt's capabilities probe) leaves freed heap behind; give it back */
        malloc_trim(0);
        r = vmh_serve(&h, 3);
        hv_stop_virt();
        return r < 0 ? 1 : 0;
}
