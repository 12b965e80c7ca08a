/* Fuzz target: C2SP checkpoints and signed notes (fleetd's audit checkpoints arrive at vmhost
 * over the node API and come back to fleetctl from the nodes). The input is opened without a
 * key, with a fixed key, and its text part is parsed as a checkpoint; an accepted checkpoint is
 * re-encoded and must parse back to the same values. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tlog_checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t pk[TLOG_PUBLIC_KEY_LEN] = {1, 2, 3};
        struct tlog_checkpoint c, back;
        struct tlog_key k;
        char text[TLOG_NOTE_MAX];
        size_t text_len = 0;
        int n;

        (void)tlog_key_init("fleetd.totebox/f1", pk, &k);
        (void)tlog_checkpoint_open((const char *)data, size, &k, &c);
        (void)tlog_note_verify((const char *)data, size, NULL, &text_len);
        if (size < sizeof(text)) {
                memcpy(text, data, size);
                text[size] = '\0';
                (void)tlog_vkey_parse(text, &k);
        }
        if (tlog_checkpoint_open_unverified((const char *)data, size, &c) == 0) {
                n = tlog_checkpoint_text(&c, text, sizeof(text));
                if (n < 0 || tlog_checkpoint_parse_text(text, (size_t)n, &back) != 0 ||
                    back.size != c.size || memcmp(back.root, c.root, sizeof(c.root)) != 0 ||
                    strcmp(back.origin, c.origin) != 0)
                        abort();
        }
        return 0;
}
