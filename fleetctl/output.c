/* Human output: aligned tables with a header row; --json prints fleetd's answer as is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

const char *ctl_str(json_t *o, const char *key)
{
        static __thread char buf[8][64];
        static __thread unsigned slot;
        json_t *v = json_object_get(o, key);
        char *b = buf[slot++ % 8];

        if (json_is_string(v))
                return json_string_value(v);
        if (json_is_integer(v))
                snprintf(b, 64, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
                snprintf(b, 64, "%.1f", json_real_value(v));
        else if (json_is_boolean(v))
                snprintf(b, 64, "%s", json_is_true(v) ? "yes" : "no");
        else
                snprintf(b, 64, "-");
        return b;
}

void ctl_table(const char *const *heads, size_t ncols, json_t *rows)
{
        size_t width[16] = {0};

        for (size_t c = 0; c < ncols && c < 16; c++)
                width[c] = strlen(heads[c]);
        for (size_t r = 0; r < json_array_size(rows); r++)
                for (size_t c = 0; c < ncols && c < 16; c++) {
                        size_t n =
                            strlen(json_string_value(json_array_get(json_array_get(rows, r), c)));

                        if (n > width[c])
                                width[c] = n;
                }
        for (size_t c = 0; c < ncols; c++)
                printf("%-*s%s", c + 1 < ncols ? (int)width[c] : 0, heads[c],
                       c + 1 < ncols ? "  " : "\n");
        for (size_t r = 0; r < json_array_size(rows); r++)
                for (size_t c = 0; c < ncols; c++)
                        printf("%-*s%s", c + 1 < ncols ? (int)width[c] : 0,
                               json_string_value(json_array_get(json_array_get(rows, r), c)),
                               c + 1 < ncols ? "  " : "\n");
}

void ctl_print_json(json_t *o)
{
        char *s = json_dumps(o, JSON_INDENT(2));

        if (s)
                puts(s);
        free(s);
}
