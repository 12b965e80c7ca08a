/* Fuzz target: vmhost's image import (POST /v1/images): the request body, and the direct-kernel
 * manifest the body's path names (vmhost/images.c). Both come from the controller, the manifest
 * from a file an operator or a build machine wrote. The input is tried as each. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmhost/vmhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char name[IMAGE_NAME_MAX + 1], path[4000], sum[DIGEST_HEX_LEN + 1];
        struct vm_problem p;

        (void)images_parse_import((const char *)data, size, name, path, sum, &p);
        (void)images_manifest_check("/srv/images/test/manifest.json", (const char *)data, size, &p);
        return 0;
}
