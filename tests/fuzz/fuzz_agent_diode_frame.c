/* Fuzz target: the agent-side Diode decoder (common/diode_frame.c, every byte the host sends on
 * the channel). The input is decoded twice, whole and one byte at a time: both must give the
 * same lines and payload bytes, every payload piece must follow the previous one, and every
 * header the decoder accepted must re-encode to itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diode_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
        uint8_t out[1 << 16];
        size_t n;
        uint64_t lines, pieces, bad, longs, expect_off;
        char id[DIODE_ID_MAX + 1];
        bool in_frame;
};

static void trace_add(struct trace *t, const void *p, size_t n)
{
        size_t k = n < sizeof(t->out) - t->n ? n : sizeof(t->out) - t->n;

        memcpy(t->out + t->n, p, k);
        t->n += k;
}

static void on_line(void *ctx, const char *line, size_t len)
{
        struct trace *t = ctx;

        if (!line) {
                t->longs++;
                return;
        }
        if (t->in_frame || memchr(line, '\n', len))
                abort();
        t->lines++;
        trace_add(t, "L", 1);
        trace_add(t, line, len);
}

static void on_data(void *ctx, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                    bool last)
{
        struct trace *t = ctx;

        if (!diode_id_valid(id) || n > DIODE_CHUNK_MAX)
                abort();
        if (t->in_frame && (strcmp(id, t->id) != 0 || offset != t->expect_off))
                abort();
        snprintf(t->id, sizeof(t->id), "%s", id);
        t->expect_off = offset + n;
        t->in_frame = !last;
        t->pieces++;
        trace_add(t, p, n); /* a frame's bytes in one run, however it was split */
        if (last)
                trace_add(t, "E", 1);
}

static void on_bad(void *ctx, const char *why)
{
        struct trace *t = ctx;

        (void)why;
        t->bad++;
        trace_add(t, "B", 1);
}

static const struct diode_frame_ops fuzz_ops = {on_line, on_data, on_bad};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct trace a, b;
        struct diode_decoder d;
        char hdr[DIODE_HEADER_MAX], id[DIODE_ID_MAX + 1];
        uint64_t off, len;

        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        if (diode_decoder_init(&d, 256) < 0)
                return 0;
        diode_decoder_feed(&d, data, size, &fuzz_ops, &a);
        diode_decoder_reset(&d);
        for (size_t i = 0; i < size; i++)
                diode_decoder_feed(&d, data + i, 1, &fuzz_ops, &b);
        diode_decoder_done(&d);
        if (a.lines != b.lines || a.bad != b.bad || a.longs != b.longs)
                abort();
        if (a.n != b.n || memcmp(a.out, b.out, a.n) != 0)
                abort();
        /* a header that parses re-encodes to the same bytes */
        if (size < DIODE_HEADER_MAX &&
            diode_frame_parse_header((const char *)data, size, id, &off, &len) == 0) {
                int n = diode_frame_header(hdr, sizeof(hdr), id, off, (size_t)len);

                if (n != (int)size + 1 || memcmp(hdr, data, size) != 0)
                        abort();
        }
        return 0;
}
