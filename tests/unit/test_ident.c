/* Unit tests: the identifier rules (common/ident.h). Boundary cases per kind; the module's own
 * pattern strings against its checker on a corpus of ids; and every id field of every schema in
 * schemas/ against the checker on the same corpus, so that a schema and the code cannot drift
 * apart again (fleetd once accepted image names that vmhost refused). */
#include <dirent.h>
#include <jansson.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ident.h"

#define CORPUS_MAX 4096

struct corpus {
        char *ids[CORPUS_MAX];
        size_t n;
};

static struct corpus corpus;

static void corpus_add(const char *s)
{
        if (corpus.n < CORPUS_MAX)
                corpus.ids[corpus.n++] = strdup(s);
}

/* a string of n copies of fill, with `at` put at position pos (pos < 0: none) */
static void corpus_add_run(size_t n, char fill, long pos, char at)
{
        char buf[256];

        if (n >= sizeof(buf))
                return;
        memset(buf, fill, n);
        buf[n] = '\0';
        if (pos >= 0 && (size_t)pos < n)
                buf[pos] = at;
        corpus_add(buf);
}

/* Lengths around every kind's bounds, each interesting character first, in the middle and
 * last, every single byte, and some ids the fleet really uses. */
static void corpus_build(void)
{
        static const char special[] = "azAZ09-._ /@\\\"'<&\x7f\x80\xc3\xff";
        static const char *const real[] = {"node1",
                                           "laptop-a",
                                           "tbx-acme-0123ab",
                                           "ubuntu-24.04",
                                           "totebox-ubuntu-24.04.qcow2",
                                           "Ubuntu",
                                           "UBUNTU",
                                           "_ubuntu",
                                           ".hidden",
                                           "a..b",
                                           "..",
                                           "-x",
                                           "x-",
                                           "acme",
                                           "Acme Ltd",
                                           "0123456789abcdef0123456789abcdef",
                                           "0123456789ABCDEF0123456789ABCDEF",
                                           "0123456789abcdef",
                                           "req-a",
                                           "r_1",
                                           "a/b",
                                           "a\nb",
                                           "é"};
        static const size_t lengths[] = {0, 1, 2, 3, 31, 32, 33, 47, 48, 49, 62, 63, 64, 65, 128};

        for (size_t i = 0; i < sizeof(real) / sizeof(real[0]); i++)
                corpus_add(real[i]);
        for (int c = 1; c < 256; c++)
                corpus_add_run(1, (char)c, -1, 0);
        for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
                corpus_add_run(lengths[l], 'a', -1, 0);
                corpus_add_run(lengths[l], '7', -1, 0);
                for (const char *s = special; *s; s++) {
                        corpus_add_run(lengths[l], 'b', 0, *s);
                        corpus_add_run(lengths[l], 'b', (long)lengths[l] / 2, *s);
                        corpus_add_run(lengths[l], 'b', (long)lengths[l] - 1, *s);
                }
        }
        for (const char *a = special; *a; a++)
                for (const char *b = special; *b; b++) {
                        char two[3] = {*a, *b, 0};

                        corpus_add(two);
                }
}

/* Fails (naming the first disagreeing id) unless pattern accepts exactly what kind accepts. */
static void assert_pattern_agrees(const char *where, const char *pattern, enum ident_kind kind)
{
        regex_t re;
        size_t yes = 0;

        if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
                fail_msg("%s: pattern '%s' does not compile", where, pattern);
        for (size_t i = 0; i < corpus.n; i++) {
                bool by_re = regexec(&re, corpus.ids[i], 0, NULL, 0) == 0;
                bool by_code = ident_valid(kind, corpus.ids[i]);

                if (by_re != by_code) {
                        regfree(&re);
                        fail_msg("%s: pattern '%s' %s '%s', the %s rule %s it", where, pattern,
                                 by_re ? "accepts" : "refuses", corpus.ids[i], ident_name(kind),
                                 by_code ? "accepts" : "refuses");
                }
                yes += by_code;
        }
        regfree(&re);
        assert_true(yes > 3 && yes < corpus.n - 3); /* the corpus has both sides */
}

static void test_boundaries(void **state)
{
        char buf[130];

        (void)state;
        for (int k = 0; k < IDENT_KIND_COUNT; k++) {
                size_t max = ident_max((enum ident_kind)k);
                char fill = k == IDENT_PLAN ? 'f' : 'a';

                memset(buf, fill, max + 1);
                buf[max] = '\0';
                assert_true(ident_valid((enum ident_kind)k, buf));
                buf[max] = fill;
                buf[max + 1] = '\0';
                assert_false(ident_valid((enum ident_kind)k, buf));
                assert_false(ident_valid((enum ident_kind)k, ""));
                assert_false(ident_valid((enum ident_kind)k, NULL));
        }
        assert_false(ident_valid(IDENT_KIND_COUNT, "a"));
        assert_false(ident_valid((enum ident_kind) - 1, "a"));
}

static void test_kinds(void **state)
{
        (void)state;
        assert_true(ident_valid(IDENT_NODE, "n1"));
        assert_true(ident_valid(IDENT_NODE, "a-")); /* as the roster has always allowed */
        assert_false(ident_valid(IDENT_NODE, "-a"));
        assert_false(ident_valid(IDENT_NODE, "a_b"));
        assert_true(ident_valid(IDENT_VM, "tbx-acme-0123ab"));
        assert_false(ident_valid(IDENT_VM, "VM"));
        assert_false(ident_valid(IDENT_VM, "a/b"));
        assert_true(ident_valid(IDENT_ENTITY, "a"));
        assert_true(ident_valid(IDENT_ENTITY, "acme-ltd"));
        assert_false(ident_valid(IDENT_ENTITY, "acme-"));
        assert_false(ident_valid(IDENT_ENTITY, "Acme"));
        assert_false(ident_valid(IDENT_ENTITY, "acme ltd"));
        assert_true(ident_valid(IDENT_IMAGE, "ubuntu-24.04"));
        assert_true(ident_valid(IDENT_IMAGE, "a..b")); /* no '/': cannot leave the directory */
        assert_false(ident_valid(IDENT_IMAGE, "Ubuntu"));
        assert_false(ident_valid(IDENT_IMAGE, "_ubuntu"));
        assert_false(ident_valid(IDENT_IMAGE, ".hidden"));
        assert_false(ident_valid(IDENT_IMAGE, ".."));
        assert_true(ident_valid(IDENT_REQUEST, "0123456789abcdef"));
        assert_true(ident_valid(IDENT_REQUEST, "Req_1-a"));
        assert_false(ident_valid(IDENT_REQUEST, "r 1"));
        assert_false(ident_valid(IDENT_REQUEST, "r.1"));
        assert_true(ident_valid(IDENT_PLAN, "0123456789abcdef0123456789abcdef"));
        assert_false(ident_valid(IDENT_PLAN, "0123456789ABCDEF0123456789ABCDEF"));
        assert_false(ident_valid(IDENT_PLAN, "0123456789abcdef0123456789abcde"));
        assert_true(ident_hex_valid("00ff", 4));
        assert_false(ident_hex_valid("00fF", 4));
        assert_false(ident_hex_valid("00ff0", 4));
        assert_false(ident_hex_valid(NULL, 4));
}

static void test_own_patterns(void **state)
{
        (void)state;
        for (int k = 0; k < IDENT_KIND_COUNT; k++)
                assert_pattern_agrees("common/ident.c", ident_pattern((enum ident_kind)k),
                                      (enum ident_kind)k);
}

/* Which id kind a schema property is, by its name and the path to it; -1: not an id. */
struct schema_walk {
        const char *file;
        const char *path[64];
        size_t depth;
        unsigned checked;
};

static bool walk_on_path(const struct schema_walk *w, const char *part)
{
        for (size_t i = 0; i < w->depth; i++)
                if (strstr(w->path[i], part))
                        return true;
        return false;
}

static int walk_kind_of_id(const struct schema_walk *w)
{
        static const struct {
                const char *part;
                enum ident_kind kind;
        } ctx[] = {
            {"/v1/plans", IDENT_PLAN},   {"/v1/vms", IDENT_VM},     {"/v1/nodes", IDENT_NODE},
            {"PlanSummary", IDENT_PLAN}, {"Plan", IDENT_PLAN},      {"Vm", IDENT_VM},
            {"Node", IDENT_NODE},        {"vm-resource", IDENT_VM}, {"plan.", IDENT_PLAN}};

        for (size_t d = w->depth; d-- > 0;)
                for (size_t i = 0; i < sizeof(ctx) / sizeof(ctx[0]); i++)
                        if (strcmp(w->path[d], ctx[i].part) == 0 ||
                            (ctx[i].part[0] == '/' &&
                             strncmp(w->path[d], ctx[i].part, strlen(ctx[i].part)) == 0) ||
                            (d == 0 && strstr(w->path[d], ctx[i].part)))
                                return (int)ctx[i].kind;
        return -1;
}

static int walk_kind(const struct schema_walk *w, const char *name)
{
        static const struct {
                const char *name;
                enum ident_kind kind;
        } names[] = {{"node_id", IDENT_NODE},       {"fleet_id", IDENT_NODE},
                     {"controller", IDENT_NODE},    {"node", IDENT_NODE},
                     {"vm_id", IDENT_VM},           {"entity", IDENT_ENTITY},
                     {"image", IDENT_IMAGE},        {"image_name", IDENT_IMAGE},
                     {"request_id", IDENT_REQUEST}, {"plan_id", IDENT_PLAN}};

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(name, names[i].name) == 0)
                        return (int)names[i].kind;
        if (strcmp(name, "id") == 0)
                return walk_kind_of_id(w);
        if (strcmp(name, "name") == 0 &&
            (walk_on_path(w, "/v1/images") || strstr(w->file, "image-manifest")) &&
            !walk_on_path(w, "stages"))
                return IDENT_IMAGE;
        return -1;
}

static bool schema_is_string(const json_t *s)
{
        const json_t *t = json_object_get(s, "type");
        size_t i;
        json_t *v;

        if (json_is_string(t))
                return strcmp(json_string_value(t), "string") == 0;
        json_array_foreach(t, i, v) if (json_is_string(v) &&
                                        strcmp(json_string_value(v), "string") == 0) return true;
        return false;
}

static void walk_check(struct schema_walk *w, const char *name, const json_t *s)
{
        int kind = walk_kind(w, name);
        char where[512];
        const char *pattern;

        if (kind < 0 || !json_is_object(s) || json_object_get(s, "$ref") || !schema_is_string(s))
                return;
        snprintf(where, sizeof(where), "%s: '%s' under '%s'", w->file, name,
                 w->depth ? w->path[w->depth - 1] : "/");
        pattern = json_string_value(json_object_get(s, "pattern"));
        if (!pattern)
                fail_msg("%s has no pattern; it must be the %s rule %s", where,
                         ident_name((enum ident_kind)kind), ident_pattern((enum ident_kind)kind));
        assert_pattern_agrees(where, pattern, (enum ident_kind)kind);
        w->checked++;
}

static void walk(struct schema_walk *w, const json_t *o)
{
        const char *k;
        json_t *v;
        size_t i;

        if (json_is_array(o)) {
                json_array_foreach(o, i, v) walk(w, v);
                return;
        }
        if (!json_is_object(o) || w->depth == 64)
                return;
        /* an OpenAPI parameter: {"name": ..., "in": ..., "schema": {...}} */
        if (json_is_string(json_object_get(o, "in")) && json_object_get(o, "schema"))
                walk_check(w, json_string_value(json_object_get(o, "name")),
                           json_object_get(o, "schema"));
        json_object_foreach((json_t *)o, k, v)
        {
                if ((strcmp(k, "properties") == 0 || strcmp(k, "$defs") == 0) &&
                    json_is_object(v)) {
                        const char *pk;
                        json_t *pv;

                        json_object_foreach(v, pk, pv) walk_check(w, pk, pv);
                }
                w->path[w->depth++] = k;
                walk(w, v);
                w->depth--;
        }
}

static void test_schemas(void **state)
{
        DIR *d = opendir(TOTEBOX_SOURCE_DIR "/schemas");
        struct dirent *e;
        unsigned files = 0, checked = 0;

        (void)state;
        assert_non_null(d);
        while ((e = readdir(d))) {
                char path[1024];
                struct schema_walk w = {.file = e->d_name};
                json_t *o;

                if (!strstr(e->d_name, ".json"))
                        continue;
                snprintf(path, sizeof(path), "%s/schemas/%s", TOTEBOX_SOURCE_DIR, e->d_name);
                o = json_load_file(path, 0, NULL);
                if (!o)
                        fail_msg("'%s' does not parse", path);
                w.path[w.depth++] = e->d_name;
                walk(&w, o);
                json_decref(o);
                files++;
                checked += w.checked;
        }
        closedir(d);
        assert_true(files >= 10);
        /* about a hundred id fields and parameters today; a broken walk finds few */
        print_message("%u id fields in %u schema files agree with common/ident.c\n", checked,
                      files);
        assert_true(checked >= 60);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_boundaries),
            cmocka_unit_test(test_kinds),
            cmocka_unit_test(test_own_patterns),
            cmocka_unit_test(test_schemas),
        };

        corpus_build();
        return cmocka_run_group_tests(tests, NULL, NULL);
}
