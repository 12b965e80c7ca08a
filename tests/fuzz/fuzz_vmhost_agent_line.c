/* Fuzz target: vmhost's agent-channel line parser and the integrity checks behind it (guest
 * input). Each input is split at newlines; every line is parsed and, when valid, applied, with
 * the host cosigning accepted checkpoints; a cosigned one is then fed back as fleetd's note and
 * the witness state is saved and loaded again. */
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *p = (const char *)data, *end = p + size;
        static struct witness_key wk;
        static bool ready;
        struct integrity in;
        json_t *saved;
        int fleet_err = 0;

        if (!ready) {
                uint8_t pk[32], seed[32] = {9};

                if (sodium_init() < 0)
                        return 0;
                crypto_sign_seed_keypair(pk, wk.sk, seed);
                tlog_cosig_key_init("totebox.host/fuzz", pk, &wk.pub);
                ready = true;
        }
        integrity_init(&in);
        in.signer = &wk;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
                struct agent_msg m;
                char err[256];

                if (agent_line_parse(p, len, &m, err, sizeof(err)) == 0) {
                        if (m.type == AGENT_MSG_REPORT)
                                integrity_on_report(&in, &m, 1);
                        else if (m.type == AGENT_MSG_CONSISTENCY)
                                integrity_on_consistency(&in, &m, 2);
                        agent_msg_clear(&m);
                }
                p += len + 1;
        }
        if (in.note)
                integrity_on_fleet_note(&in, in.note, strlen(in.note), &fleet_err);
        json_decref(integrity_to_json(&in));
        saved = integrity_witness_save(&in);
        integrity_witness_load(&in, saved);
        json_decref(saved);
        integrity_clear(&in);
        return 0;
}
