/* Fuzz target: the messages between vmhost and its privileged helper (vmhost/helper.c). The
 * helper decodes and answers what vmhost sends (which an attacker who owns vmhost writes); vmhost
 * decodes the helper's answers. Here both directions go through vmh_decode, and what vmhost may
 * send goes through the helper's handler too (a node without an interface or keys: nothing is
 * applied or read). */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct vmhost vh;
        struct vmh_helper h = {.vh = &vh};
        union vmh_msg m;
        uint16_t type;
        char err[256], back[256];
        ssize_t n;
        int fds[2];

        vmh_decode(data, size, &type, &m, err, sizeof(err));
        if (imsg_socketpair(fds) < 0)
                return 0;
        if (vmh_handle(&h, fds[0], data, size, err, sizeof(err)) >= 0 &&
            (n = imsg_recv(fds[1], back, sizeof(back), 0)) > 0 &&
            vmh_decode(back, (size_t)n, &type, &m, err, sizeof(err)) < 0)
                __builtin_trap(); /* the helper's own answer must decode */
        close(fds[0]);
        close(fds[1]);
        return 0;
}
