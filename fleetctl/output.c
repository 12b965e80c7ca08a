/* Output in the format -f names: aligned tables (the default) and CSV from a view's columns
 * (-c picks them), or the API objects as JSON or YAML. The YAML is written here (block style,
 * double-quoted strings where a plain one could read as something else), small enough to check
 * by eye and read back by any YAML 1.1 or 1.2 parser to the same values as the JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

const char *ctl_time_ms(json_t *ms, char *buf, size_t size)
{
        time_t t;
        struct tm tm;

        if (!json_is_integer(ms) || json_integer_value(ms) <= 0)
                return "-";
        t = (time_t)(json_integer_value(ms) / 1000);
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

int ctl_format_parse(const char *name, enum ctl_format *ret)
{
        static const char *const names[] = {"table", "json", "yaml", "csv"};

        for (unsigned i = 0; i < 4; i++)
                if (strcmp(name, names[i]) == 0) {
                        *ret = (enum ctl_format)i;
                        return 0;
                }
        return -1;
}

/* The columns to show: -c's names in its order, else every column not marked extra. Returns the
 * count, or -1 (message printed) for a name the view has not. */
static int ctl_columns_pick(const struct ctl *c, const struct ctl_column *cols,
                            const struct ctl_column **ret)
{
        char list[512], *save = NULL;
        int n = 0;

        if (!c->columns) {
                for (const struct ctl_column *k = cols; k->name && n < CTL_COLUMNS_MAX; k++)
                        if (!k->extra)
                                ret[n++] = k;
                return n;
        }
        snprintf(list, sizeof(list), "%s", c->columns);
        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                const struct ctl_column *k = cols;

                while (k->name && strcasecmp(k->name, w) != 0)
                        k++;
                if (!k->name || n == CTL_COLUMNS_MAX) {
                        fprintf(stderr, "fleetctl: no column '%s'; the columns are:", w);
                        for (k = cols; k->name; k++)
                                fprintf(stderr, " %s", k->name);
                        fprintf(stderr, "\n");
                        return -1;
                }
                ret[n++] = k;
        }
        return n ? n : -1;
}

int ctl_columns_check(const struct ctl *c, const struct ctl_column *cols)
{
        const struct ctl_column *pick[CTL_COLUMNS_MAX];

        return ctl_columns_pick(c, cols, pick) < 0 ? -1 : 0;
}

static void ctl_csv_field(const char *s, bool last)
{
        if (strpbrk(s, ",\"\r\n") || (*s && (s[0] == ' ' || s[strlen(s) - 1] == ' '))) {
                putchar('"');
                for (; *s; s++) {
                        if (*s == '"')
                                putchar('"');
                        putchar(*s);
                }
                putchar('"');
        } else {
                fputs(s, stdout);
        }
        fputs(last ? "\r\n" : ",", stdout);
}

static void ctl_table_print(bool csv, const char *const *heads, size_t ncols, char ***cells,
                            size_t nrows)
{
        size_t width[CTL_COLUMNS_MAX] = {0};

        for (size_t k = 0; k < ncols; k++) {
                width[k] = strlen(heads[k]);
                for (size_t r = 0; r < nrows; r++)
                        if (strlen(cells[r][k]) > width[k])
                                width[k] = strlen(cells[r][k]);
        }
        for (size_t r = 0; r <= nrows; r++)
                for (size_t k = 0; k < ncols; k++) {
                        const char *s = r ? cells[r - 1][k] : heads[k];

                        if (csv)
                                ctl_csv_field(s, k + 1 == ncols);
                        else
                                printf("%-*s%s", k + 1 < ncols ? (int)width[k] : 0, s,
                                       k + 1 < ncols ? "  " : "\n");
                }
}

int ctl_render(const struct ctl *c, const struct ctl_column *cols, json_t *objects)
{
        const struct ctl_column *pick[CTL_COLUMNS_MAX];
        const char *heads[CTL_COLUMNS_MAX];
        size_t nrows = json_array_size(objects);
        char ***cells = calloc(nrows ? nrows : 1, sizeof(*cells));
        int n = ctl_columns_pick(c, cols, pick);

        if (!cells || n < 0) {
                free(cells);
                return -1;
        }
        for (int k = 0; k < n; k++)
                heads[k] = pick[k]->head;
        for (size_t r = 0; r < nrows; r++) {
                json_t *o = json_array_get(objects, r);

                cells[r] = calloc((size_t)n, sizeof(char *));
                for (int k = 0; cells[r] && k < n; k++) {
                        char buf[512];
                        const char *v = pick[k]->get ? pick[k]->get(o, buf, sizeof(buf))
                                                     : ctl_str(o, pick[k]->key);

                        cells[r][k] = strdup(v ? v : "-");
                }
        }
        for (size_t r = 0; r < nrows; r++)
                for (int k = 0; k < n; k++)
                        if (!cells[r] || !cells[r][k])
                                goto cleanup; /* out of memory: print nothing half */
        ctl_table_print(c->format == CTL_FORMAT_CSV, heads, (size_t)n, cells, nrows);
cleanup:
        for (size_t r = 0; r < nrows; r++) {
                for (int k = 0; cells[r] && k < n; k++)
                        free(cells[r][k]);
                free(cells[r]);
        }
        free(cells);
        return 0;
}

/* A string that YAML would read back as this same string without quotes: a letter first, then
 * letters, digits and _ . / @ -, and none of the words YAML 1.1 reads as a boolean or null. */
static bool ctl_yaml_plain(const char *s)
{
        static const char *const words[] = {"y",   "n",    "yes",   "no",   "on",
                                            "off", "true", "false", "null", NULL};

        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("_./@-", *p)))
                        return false;
        for (unsigned i = 0; words[i]; i++)
                if (strcasecmp(s, words[i]) == 0)
                        return false;
        return true;
}

/* One code point of valid UTF-8 (jansson's strings are): its value, *len its bytes. */
static unsigned ctl_utf8(const unsigned char *s, size_t *len)
{
        if (s[0] < 0x80) {
                *len = 1;
                return s[0];
        }
        if (s[0] < 0xe0) {
                *len = 2;
                return ((s[0] & 0x1fu) << 6) | (s[1] & 0x3fu);
        }
        if (s[0] < 0xf0) {
                *len = 3;
                return ((s[0] & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        }
        *len = 4;
        return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) |
               (s[3] & 0x3fu);
}

/* A double-quoted YAML scalar: escapes for what YAML may not hold as is (C0 and C1 controls,
 * DEL, the line and paragraph separators, BOM and the non-characters U+FFFE, U+FFFF). */
static void ctl_yaml_quoted(FILE *out, const char *s, size_t n)
{
        fputc('"', out);
        for (size_t i = 0, len; i < n; i += len) {
                unsigned cp = ctl_utf8((const unsigned char *)s + i, &len);

                if (cp == '"' || cp == '\\')
                        fprintf(out, "\\%c", (char)cp);
                else if (cp == '\n')
                        fputs("\\n", out);
                else if (cp == '\t')
                        fputs("\\t", out);
                else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
                        fprintf(out, "\\x%02X", cp);
                else if (cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe ||
                         cp == 0xffff)
                        fprintf(out, "\\u%04X", cp);
                else
                        fwrite(s + i, 1, len, out);
        }
        fputc('"', out);
}

static void ctl_yaml_scalar(FILE *out, json_t *v)
{
        char num[64];

        switch (json_typeof(v)) {
        case JSON_STRING:
                if (ctl_yaml_plain(json_string_value(v)))
                        fputs(json_string_value(v), out);
                else
                        ctl_yaml_quoted(out, json_string_value(v), json_string_length(v));
                break;
        case JSON_INTEGER:
                fprintf(out, "%lld", (long long)json_integer_value(v));
                break;
        case JSON_REAL: {
                /* YAML 1.1 reads a float only with a '.' in it ("1e+20" would be a string) */
                char *e;

                /* the shortest of %.15g..%.17g that reads back as the same double */
                for (int prec = 15; prec <= 17; prec++) {
                        snprintf(num, sizeof(num), "%.*g", prec, json_real_value(v));
                        if (strtod(num, NULL) == json_real_value(v))
                                break;
                }
                e = strchr(num, 'e');
                if (!strchr(num, '.') && e) {
                        memmove(e + 2, e, strlen(e) + 1);
                        memcpy(e, ".0", 2);
                } else if (!strchr(num, '.')) {
                        strcat(num, ".0");
                }
                fputs(num, out);
                break;
        }
        case JSON_TRUE:
                fputs("true", out);
                break;
        case JSON_FALSE:
                fputs("false", out);
                break;
        case JSON_OBJECT:
                fputs("{}", out);
                break;
        case JSON_ARRAY:
                fputs("[]", out);
                break;
        case JSON_NULL:
                fputs("null", out);
                break;
        }
}

static bool ctl_yaml_nested(json_t *v)
{
        return (json_is_object(v) && json_object_size(v)) ||
               (json_is_array(v) && json_array_size(v));
}

static void ctl_yaml_block(FILE *out, json_t *v, int indent, bool inline_first);

/* After "key:" or "-": a scalar on the same line, a collection on the lines below. */
static void ctl_yaml_value(FILE *out, json_t *v, int indent)
{
        if (!ctl_yaml_nested(v)) {
                fputc(' ', out);
                ctl_yaml_scalar(out, v);
                fputc('\n', out);
                return;
        }
        fputc('\n', out);
        ctl_yaml_block(out, v, indent, false);
}

/* A non-empty collection, each line at indent; inline_first: the first line goes after a
 * "- " already written. */
static void ctl_yaml_block(FILE *out, json_t *v, int indent, bool inline_first)
{
        bool first = true;

        if (json_is_array(v)) {
                size_t i;
                json_t *item;

                json_array_foreach(v, i, item)
                {
                        fprintf(out, "%*s-", first && inline_first ? 0 : indent, "");
                        first = false;
                        if (json_is_object(item) && json_object_size(item)) {
                                fputc(' ', out);
                                ctl_yaml_block(out, item, indent + 2, true);
                        } else {
                                ctl_yaml_value(out, item, indent + 2);
                        }
                }
                return;
        }
        const char *key;
        json_t *item;

        json_object_foreach(v, key, item)
        {
                json_t *k = json_string(key);

                fprintf(out, "%*s", first && inline_first ? 0 : indent, "");
                first = false;
                ctl_yaml_scalar(out, k);
                json_decref(k);
                fputc(':', out);
                ctl_yaml_value(out, item, indent + 2);
        }
}

void ctl_yaml(FILE *out, json_t *v)
{
        if (ctl_yaml_nested(v)) {
                ctl_yaml_block(out, v, 0, false);
        } else {
                ctl_yaml_scalar(out, v);
                fputc('\n', out);
        }
}

void ctl_print(const struct ctl *c, json_t *o)
{
        if (c->format == CTL_FORMAT_YAML) {
                ctl_yaml(stdout, o);
                return;
        }
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_ENCODE_ANY);

        if (s)
                puts(s);
        free(s);
}
