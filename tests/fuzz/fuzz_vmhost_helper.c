/* Fuzz target: the messages between vmhost and its privileged helper (vmhost/helper.c). The
 * helper decodes and answers what vmhost sends (which an attacker who owns vmhost writes); vmhost
 * decodes the helper's answers and events. Here both directions go through vmh_decode, and what
 * vmhost may send goes through the helper's handler too (a node without an interface or keys and
 * without libvirt: nothing is applied, read or defined, every libvirt request is answered). A
 * define or make-disks request that decodes goes through the helper's image check, and one the
 * check lets through must name files inside the image store. A file request (VMH_FILE) runs
 * against a state directory that does not exist: refused, and answered without a descriptor. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct vmhost vh = {.cfg.state_dir = "/var/lib/tbx"}; /* absent */
        struct vmh_helper h = {.vh = &vh};
        static union vmh_msg m;
        static char back[sizeof(struct imsg_hdr) + sizeof(union vmh_msg)];
        const struct vmh_image *img = NULL;
        uint16_t type = 0;
        char err[256];
        ssize_t n;
        int fds[2], passed = -1;

        if (vmh_decode(data, size, &type, &m, err, sizeof(err)) == 0)
                img = type == VMH_DEFINE       ? &m.define.image
                      : type == VMH_MAKE_DISKS ? &m.disks.image
                                               : NULL;
        if (img && vmh_check_image(&vh.cfg, img) == 0 &&
            (strncmp(img->disk_path, "/var/lib/tbx/images/", 20) != 0 ||
             strchr(img->disk_path + 20, '/') || strcmp(img->disk_path + 20, "..") == 0 ||
             !img->disk_path[20]))
                __builtin_trap(); /* a path out of the store passed the check */
        if (imsg_socketpair(fds) < 0)
                return 0;
        if (vmh_handle(&h, fds[0], data, size, err, sizeof(err)) >= 0 &&
            (n = imsg_recv_fd(fds[1], back, sizeof(back), 0, &passed)) > 0 &&
            (vmh_decode(back, (size_t)n, &type, &m, err, sizeof(err)) < 0 || passed >= 0))
                __builtin_trap(); /* the helper's own answer must decode, and no file opens */
        close(fds[0]);
        close(fds[1]);
        return 0;
}
