/* Unit tests for common/diode_frame: the header's exact grammar (no leading zeros, no signs, the
 * chunk limit, id characters), lines and frames interleaved, payloads split at every byte, an
 * over-long line discarded to its newline, and a malformed header reported. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/diode_frame.h"

struct events {
        char log[4096];
        size_t n;
        uint64_t next_off; /* data pieces arrive in order */
        int bad, long_lines;
};

static void ev_add(struct events *e, const char *s, size_t n)
{
        if (e->n + n < sizeof(e->log)) {
                memcpy(e->log + e->n, s, n);
                e->n += n;
                e->log[e->n] = '\0';
        }
}

static void on_line(void *ctx, const char *line, size_t len)
{
        struct events *e = ctx;

        if (!line) {
                e->long_lines++;
                return;
        }
        ev_add(e, "L:", 2);
        ev_add(e, line, len);
        ev_add(e, "|", 1);
}

static void on_data(void *ctx, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                    bool last)
{
        struct events *e = ctx;

        (void)id;
        if (e->next_off != offset)
                ev_add(e, "GAP", 3);
        e->next_off = offset + n;
        ev_add(e, (const char *)p, n);
        if (last)
                ev_add(e, "#", 1);
}

static void on_bad(void *ctx, const char *why)
{
        struct events *e = ctx;

        (void)why;
        e->bad++;
}

static const struct diode_frame_ops ops = {on_line, on_data, on_bad};

static void feed_split(const char *in, size_t step, struct events *e)
{
        struct diode_decoder d;
        size_t n = strlen(in);

        memset(e, 0, sizeof(*e));
        assert_int_equal(diode_decoder_init(&d, 64), 0);
        for (size_t i = 0; i < n; i += step)
                diode_decoder_feed(&d, (const uint8_t *)in + i, n - i < step ? n - i : step, &ops,
                                   e);
        diode_decoder_done(&d);
}

static void test_header_grammar(void **state)
{
        char id[DIODE_ID_MAX + 1];
        uint64_t off = 7, len = 7;
        static const char *const bad[] = {
            "!D a 0",        "!D a 00 1",  "!D a 0 0",
            "!D a 0 262145", "!D a -1 1",  "!D a +1 1",
            "!D  0 1",       "!D a/b 0 1", "!D a 0 1 ",
            "!D a 0 1x",     "!X a 0 1",   "!D a 9223372036854775807 1",
            "!D a 0 01",     "D a 0 1",    "!D a 99999999999999999999 1"};
        (void)state;
        assert_int_equal(diode_frame_parse_header("!D dep-1 0 1", 12, id, &off, &len), 0);
        assert_string_equal(id, "dep-1");
        assert_int_equal(off, 0);
        assert_int_equal(len, 1);
        assert_int_equal(diode_frame_parse_header("!D x 1234 262144", 16, id, &off, &len), 0);
        assert_int_equal(off, 1234);
        assert_int_equal(len, DIODE_CHUNK_MAX);
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                off = len = 7;
                assert_int_equal(diode_frame_parse_header(bad[i], strlen(bad[i]), id, &off, &len),
                                 -EINVAL);
                assert_int_equal(off, 7); /* untouched on failure */
        }
}

static void test_header_round_trip(void **state)
{
        char buf[DIODE_HEADER_MAX], id[DIODE_ID_MAX + 1];
        uint64_t off, len;
        int n;

        (void)state;
        n = diode_frame_header(buf, sizeof(buf), "r_9", 1ull << 40, 4096);
        assert_true(n > 0 && buf[n - 1] == '\n');
        assert_int_equal(diode_frame_parse_header(buf, (size_t)n - 1, id, &off, &len), 0);
        assert_string_equal(id, "r_9");
        assert_true(off == 1ull << 40 && len == 4096);
        assert_int_equal(diode_frame_header(buf, sizeof(buf), "bad id", 0, 1), -EINVAL);
        assert_int_equal(diode_frame_header(buf, sizeof(buf), "a", 0, 0), -EINVAL);
        assert_int_equal(diode_frame_header(buf, sizeof(buf), "a", 0, DIODE_CHUNK_MAX + 1),
                         -EINVAL);
}

static void test_lines_and_frames_at_every_split(void **state)
{
        /* a payload may hold newlines and '!': only the header's length counts */
        const char *in = "{\"a\":1}\n!D x 0 5\nab\n!c\n\n{\"b\":2}\n!D x 5 3\nxyz";
        struct events e;

        (void)state;
        for (size_t step = 1; step <= strlen(in); step++) {
                feed_split(in, step, &e);
                assert_string_equal(e.log, "L:{\"a\":1}|ab\n!c#L:{\"b\":2}|xyz#");
                assert_int_equal(e.bad, 0);
        }
}

static void test_long_line_and_bad_header(void **state)
{
        char in[300];
        struct events e;

        (void)state;
        memset(in, 'q', 100);
        snprintf(in + 100, sizeof(in) - 100, "\n{\"ok\":1}\n!D x 0 0\n{\"c\":3}\n");
        feed_split(in, 7, &e);
        assert_int_equal(e.long_lines, 1);
        assert_int_equal(e.bad, 1);
        assert_string_equal(e.log, "L:{\"ok\":1}|L:{\"c\":3}|");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_header_grammar),
            cmocka_unit_test(test_header_round_trip),
            cmocka_unit_test(test_lines_and_frames_at_every_split),
            cmocka_unit_test(test_long_line_and_bad_header),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
