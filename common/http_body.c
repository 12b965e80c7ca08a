/* Request body collection shared by the two HTTP servers. */
#include "common/http_body.h"

#include <stdlib.h>
#include <string.h>

bool http_body_feed(struct http_body *b, const char *chunk, size_t *size, size_t limit)
{
        char *nb;

        if (*size == 0)
                return true;
        if (!b->too_large && b->len + *size <= limit &&
            (nb = realloc(b->data, b->len + *size + 1))) {
                memcpy(nb + b->len, chunk, *size);
                b->data = nb;
                b->len += *size;
                b->data[b->len] = '\0';
        } else {
                b->too_large = true; /* keep reading (and dropping) so the 413 can be sent */
        }
        *size = 0;
        return false;
}

const char *http_body_text(const struct http_body *b)
{
        return b->data ? b->data : "";
}

void http_body_done(struct http_body *b)
{
        free(b->data);
        b->data = NULL;
        b->len = 0;
}

size_t http_answer_write(char *chunk, size_t size, size_t n, void *arg)
{
        struct http_answer *a = arg;
        size_t len = size * n, left = len;

        if (len == 0)
                return 0;
        http_body_feed(&a->body, chunk, &left, a->limit);
        return a->body.too_large ? 0 : len;
}
