/* Fuzz target: the decoder of the messages between the two processes of the pairing server
 * (provision/pairing_priv.c). Both directions: the privileged parent decodes what the network
 * process sends (which an attacker who owns that process writes), and the network process
 * decodes the parent's answers. A decoded message is re-sent through a socketpair and decoded
 * again: the encoder and decoder agree on every size the table allows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "provision/pairing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint8_t
            back[sizeof(struct imsg_hdr) + sizeof(struct pair_priv_signed) + PAIR_FRAME_MAX];
        union pair_priv_msg m, again;
        uint16_t type, type2;
        char err[256], *roster = NULL, *roster2 = NULL;
        int fds[2];
        ssize_t n;

        if (pair_priv_decode(data, size, &type, &m, &roster, err, sizeof(err)) < 0)
                return 0;
        if (imsg_socketpair(fds) == 0) {
                if (imsg_send(fds[0], &pair_priv_proto, type, data + sizeof(struct imsg_hdr),
                              size - sizeof(struct imsg_hdr)) == 0 &&
                    (n = imsg_recv(fds[1], back, sizeof(back), 0)) > 0 &&
                    (pair_priv_decode(back, (size_t)n, &type2, &again, &roster2, err, sizeof(err)) <
                         0 ||
                     type2 != type))
                        abort();
                close(fds[0]);
                close(fds[1]);
        }
        free(roster);
        free(roster2);
        return 0;
}
