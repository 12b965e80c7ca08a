/* Fuzz target: C2SP cosignatures (cosignature/v1) and vault checkpoints, which vmhost and fleetd
 * read from each other and from the guest: a note with any signature lines is checked for a
 * cosignature of a fixed key, opened as a vault checkpoint, and the input's first line is
 * parsed as a cosigner verifier key. A note that parses is cosigned and must then verify under
 * the cosigning key, at the time it was signed, and keep its checkpoint. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/sth.h"
#include "common/tlog_checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint8_t seed[32] = {7}, pk[32], sk[64];
        static bool ready;
        struct tlog_checkpoint c, back;
        struct tlog_key k;
        char note[TLOG_NOTE_MAX + 1], line[TLOG_VKEY_MAX + 1];
        size_t text_len = 0;
        uint64_t t = 0;
        int n;

        if (!ready) {
                if (sodium_init() < 0)
                        abort();
                crypto_sign_seed_keypair(pk, sk, seed);
                ready = true;
        }
        (void)tlog_cosig_key_init("totebox.host/n1", pk, &k);
        (void)tlog_note_cosig_verify((const char *)data, size, &k, &t);
        (void)sth_checkpoint_open((const char *)data, size, pk, &c);
        if (size < sizeof(line)) {
                memcpy(line, data, size);
                line[size] = '\0';
                (void)tlog_cosig_vkey_parse(line, &k);
                (void)tlog_cosig_key_init("totebox.host/n1", pk, &k);
        }
        if (size > TLOG_NOTE_MAX || tlog_note_verify((const char *)data, size, NULL, &text_len) < 0)
                return 0;
        memcpy(note, data, size);
        note[size] = '\0';
        n = tlog_note_cosign(note, size, sizeof(note), &k, sk, 1700000000);
        if (n < 0)
                return 0; /* no room */
        /* ours verifies, unless a line of the same name came first (the first line decides) */
        if (tlog_note_cosig_verify(note, (size_t)n, &k, &t) != 0 &&
            memmem(data, size, "totebox.host/n1 ", 16) == NULL)
                abort();
        if (tlog_checkpoint_open_unverified((const char *)data, size, &c) == 0 &&
            (tlog_checkpoint_open_unverified(note, (size_t)n, &back) != 0 || back.size != c.size ||
             memcmp(back.root, c.root, sizeof(c.root)) != 0))
                abort();
        return 0;
}
