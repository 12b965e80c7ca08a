/* Request bodies for libmicrohttpd servers (fleetd's REST API, vmhost's node API): collected
 * across the access-handler calls up to a limit, NUL-terminated, never partial. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct http_body {
        char *data; /* NUL-terminated once complete; NULL while empty */
        size_t len;
        bool too_large; /* over the limit or out of memory: answer 413 */
};

/* Feeds one upload chunk (consumes *size). Returns true when the body is complete (the call
 * with *size == 0), false while more is to come. */
bool http_body_feed(struct http_body *b, const char *chunk, size_t *size, size_t limit);
/* The body as a string ("" when empty). */
const char *http_body_text(const struct http_body *b);
void http_body_done(struct http_body *b);

/* An answer a libcurl client collects: http_answer_write is its CURLOPT_WRITEFUNCTION, with the
 * struct as CURLOPT_WRITEDATA. The body is kept up to limit; more stops the transfer, with
 * too_large set in the body to say why. */
struct http_answer {
        struct http_body body;
        size_t limit;
};
size_t http_answer_write(char *chunk, size_t size, size_t n, void *arg);
