/* Fuzz target: the body of POST /v1/audit-checkpoint as vmhost's witness takes it (JSON, the
 * verifier key, the checkpoint note, the proof). The state directory does not exist, so nothing
 * is written and every run starts from "no checkpoint held". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct vmhost vh;
        struct vm_problem p;
        json_t *st = NULL;

        if (!vh.cfg.state_dir[0]) {
                if (sodium_init() < 0)
                        abort();
                strcpy(vh.cfg.state_dir, "/nonexistent/totebox-fuzz-witness");
                strcpy(vh.cfg.node_id, "n1");
        }
        if (audit_witness_accept(&vh, (const char *)data, size, &st, &p) == 0)
                json_decref(st);
        return 0;
}
