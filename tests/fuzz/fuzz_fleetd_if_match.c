/* Fuzz target: If-Match headers (a client's bytes) against a resource's ETag. Whatever the
 * bytes, etag_if_match reads only up to their NUL; it matches when, and only when, a
 * comma-separated member is '*' or exactly the tag (a weak W/ tag never does); and the same
 * header with the tag appended as a member always matches. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/fleetd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char TAG[] = "\"0123456789abcdef0123456789abcdef\"";

/* The reference: split on ',', trim blanks, compare. */
static bool fuzz_reference(const char *h)
{
        const char *p = h;

        while (*p) {
                const char *e = strchr(p, ','), *b = p;
                size_t n = e ? (size_t)(e - p) : strlen(p);

                while (n && (*b == ' ' || *b == '\t')) {
                        b++;
                        n--;
                }
                while (n && (b[n - 1] == ' ' || b[n - 1] == '\t'))
                        n--;
                if ((n == 1 && *b == '*') || (n == strlen(TAG) && memcmp(b, TAG, n) == 0))
                        return true;
                if (!e)
                        break;
                p = e + 1;
        }
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *h = malloc(size + sizeof(TAG) + 2);

        if (!h)
                return 0;
        memcpy(h, data, size);
        h[size] = '\0';
        if (strlen(h) == size && strpbrk(h, " \t") == NULL &&
            etag_if_match(h, TAG) != fuzz_reference(h))
                abort(); /* the parser and the reference disagree on a header without blanks */
        if (etag_if_match(NULL, TAG) != true)
                abort();
        strcat(h, ",");
        strcat(h, TAG);
        if (strlen(h) == size + 1 + strlen(TAG) && !etag_if_match(h, TAG))
                abort(); /* a header naming the tag as a member must match */
        free(h);
        return 0;
}
