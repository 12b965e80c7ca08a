/* Fuzz target: the wireguard-go UAPI reply parser (lines from a local socket, but parsed with the
 * same care), fed one line at a time. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/wg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct wg_device *d = wg_device_new("fuzz0");
        struct wg_uapi_parser p;
        const char *s = (const char *)data, *end = s + size;

        wg_uapi_parser_init(&p, d);
        while (s < end) {
                const char *nl = memchr(s, '\n', (size_t)(end - s));
                size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);

                if (wg_uapi_parser_line(&p, s, len) < 0 || p.done)
                        break;
                s += len + 1;
        }
        wg_device_free(d);
        return 0;
}
