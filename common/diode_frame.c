/* The Diode's data frames over the agent channel: a header line "!D ID OFFSET LEN" and LEN raw
 * bytes, between the ordinary JSON lines. See diode_frame.h for the contract. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diode_frame.h"
#include "common/ident.h"

bool diode_id_valid(const char *id)
{
        return ident_valid(IDENT_REQUEST, id); /* [A-Za-z0-9_-]{1,64} */
}

int diode_decoder_init(struct diode_decoder *d, size_t line_max)
{
        memset(d, 0, sizeof(*d));
        d->line_max = line_max;
        d->buf = malloc(line_max + 1);
        return d->buf ? 0 : -ENOMEM;
}

void diode_decoder_reset(struct diode_decoder *d)
{
        d->len = 0;
        d->discarding = false;
        d->data_left = 0;
}

void diode_decoder_done(struct diode_decoder *d)
{
        if (!d)
                return;
        free(d->buf);
        d->buf = NULL;
}

/* A decimal without sign or leading zeros, at most 2^63 - 1. */
static int diode_parse_u64(const char *s, size_t n, uint64_t *ret)
{
        uint64_t v = 0;

        if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (v > INT64_MAX)
                return -EINVAL;
        *ret = v;
        return 0;
}

int diode_frame_parse_header(const char *line, size_t len, char ret_id[DIODE_ID_MAX + 1],
                             uint64_t *ret_offset, uint64_t *ret_len)
{
        const char *f[3], *end = line + len;
        size_t fl[3];
        const char *p;
        char id[DIODE_ID_MAX + 1];
        uint64_t off, n;

        if (len < 3 || len > DIODE_HEADER_MAX || memcmp(line, "!D ", 3) != 0)
                return -EINVAL;
        p = line + 3;
        for (int i = 0; i < 3; i++) {
                const char *sp = memchr(p, ' ', (size_t)(end - p));

                f[i] = p;
                fl[i] = (size_t)((i < 2 ? (sp ? sp : end) : end) - p);
                if (i < 2 && !sp)
                        return -EINVAL;
                p = f[i] + fl[i] + 1;
        }
        if (fl[0] == 0 || fl[0] > DIODE_ID_MAX || memchr(f[0], '\0', fl[0]))
                return -EINVAL;
        memcpy(id, f[0], fl[0]);
        id[fl[0]] = '\0';
        if (!diode_id_valid(id) || diode_parse_u64(f[1], fl[1], &off) < 0 ||
            diode_parse_u64(f[2], fl[2], &n) < 0 || n == 0 || n > DIODE_CHUNK_MAX ||
            off > INT64_MAX - n)
                return -EINVAL;
        memcpy(ret_id, id, fl[0] + 1);
        *ret_offset = off;
        *ret_len = n;
        return 0;
}

int diode_frame_header(char *buf, size_t size, const char *id, uint64_t offset, size_t len)
{
        int n;

        if (!diode_id_valid(id) || len == 0 || len > DIODE_CHUNK_MAX || offset > INT64_MAX - len)
                return -EINVAL;
        n = snprintf(buf, size, "!D %s %" PRIu64 " %zu\n", id, offset, len);
        return n > 0 && (size_t)n < size ? n : -EINVAL;
}

static void diode_end_line(struct diode_decoder *d, const struct diode_frame_ops *ops, void *ctx)
{
        uint64_t off = 0, n = 0;

        if (d->len == 0 || d->buf[0] != '!') {
                if (d->len > 0)
                        ops->line(ctx, d->buf, d->len);
                return;
        }
        if (diode_frame_parse_header(d->buf, d->len, d->id, &off, &n) < 0) {
                ops->bad(ctx, "malformed data frame header");
                return;
        }
        d->data_off = off;
        d->data_left = n;
}

/* Consumes payload bytes of the current frame; returns how many. */
static size_t diode_take_data(struct diode_decoder *d, const uint8_t *p, size_t n,
                              const struct diode_frame_ops *ops, void *ctx)
{
        size_t k = n < d->data_left ? n : (size_t)d->data_left;

        d->data_left -= k;
        ops->data(ctx, d->id, d->data_off, p, k, d->data_left == 0);
        d->data_off += k;
        return k;
}

void diode_decoder_feed(struct diode_decoder *d, const uint8_t *p, size_t n,
                        const struct diode_frame_ops *ops, void *ctx)
{
        size_t i = 0;

        while (i < n) {
                if (d->data_left) {
                        i += diode_take_data(d, p + i, n - i, ops, ctx);
                        continue;
                }
                const uint8_t *nl = memchr(p + i, '\n', n - i);
                size_t run = nl ? (size_t)(nl - (p + i)) : n - i;

                if (!d->discarding && d->len + run > d->line_max) {
                        d->discarding = true;
                        d->len = 0;
                        ops->line(ctx, NULL, 0);
                }
                if (!d->discarding) {
                        memcpy(d->buf + d->len, p + i, run);
                        d->len += run;
                }
                i += run;
                if (!nl)
                        break;
                i++; /* the newline */
                if (!d->discarding)
                        diode_end_line(d, ops, ctx);
                d->len = 0;
                d->discarding = false;
        }
}
