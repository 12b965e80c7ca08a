/* Fuzz target: the pairing message decoder (network input from anyone who reaches TCP 9173
 * during a ceremony), the encoder on whatever decodes, and a decoded share fed to both roles'
 * session (the binding, the AD built from it and, for the joiner, the commitment check). */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "provision/pairing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_share(const struct pair_msg *m, bool initiator)
{
        static const uint8_t commit[PAIR_COMMIT_LEN];
        struct pair_binding b = {.role = ROSTER_ROLE_NODE};
        struct pair_session s;
        uint8_t nonce[PAIR_NONCE_LEN] = {1};

        snprintf(b.wg_public_key, sizeof(b.wg_public_key), "%s",
                 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        pair_session_init(&s, initiator, "fuzz");
        if (pair_session_start(&s, "ABCDE-FGHJK", "peer", nonce, &b, commit) == 0)
                pair_session_finish(&s, m);
        pair_session_wipe(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct json_input_error err;
        struct pair_msg m;

        if (sodium_init() < 0)
                return 0;
        if (pair_msg_decode((const char *)data, size, &m, &err) == 0) {
                free(pair_msg_encode(&m));
                if (m.type == PAIR_MSG_SHARE) {
                        fuzz_share(&m, true);
                        fuzz_share(&m, false);
                }
                pair_msg_clear(&m);
        }
        return 0;
}
