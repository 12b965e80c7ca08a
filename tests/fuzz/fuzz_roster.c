/* Fuzz target: the roster parser (rosters arrive over the node API from the genesis node). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/roster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char err[256];
        struct roster *r = roster_parse((const char *)data, size, err, sizeof(err));

        if (r) {
                char *canon = roster_canonical(r);

                free(canon);
                for (size_t i = 0; i < r->n_nodes; i++)
                        (void)roster_find_by_address(r, r->nodes[i].addr);
        }
        roster_free(r);
        return 0;
}
