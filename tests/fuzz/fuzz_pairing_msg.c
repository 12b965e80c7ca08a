/* Fuzz target: the pairing message decoder (network input from anyone who reaches TCP 9173
 * during a ceremony), and the encoder on whatever decodes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "provision/pairing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct json_input_error err;
        struct pair_msg m;

        if (pair_msg_decode((const char *)data, size, &m, &err) == 0) {
                free(pair_msg_encode(&m));
                pair_msg_clear(&m);
        }
        return 0;
}
