/* Fuzz target: the node API's request bodies (create, image import, roster) and the domain
 * metadata parser. The first byte picks the parser; the rest is the body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/roster.h"
#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *body = (const char *)data + 1;
        struct vm_create_req q;
        struct vm_problem p;
        struct vm_meta m;
        char err[256];

        if (size < 1)
                return 0;
        switch (data[0] % 3) {
        case 0:
                vm_create_req_parse(body, size - 1, &q, &p);
                break;
        case 1:
                vm_meta_parse(body, size - 1, &m);
                break;
        default:
                roster_free(roster_parse(body, size - 1, err, sizeof(err)));
                break;
        }
        return 0;
}
