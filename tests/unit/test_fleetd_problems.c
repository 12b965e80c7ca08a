/* The API edge's problem table (fleetd/api_problems.c): every problem type fleetd's domain code
 * can produce maps to the status docs/fleetd.md documents for it. Three lists are checked
 * against each other: the documented statuses below (the grep-able list), the table, and the
 * types the sources pass to outcome_fail, api_fail and api_problem_doc (read from the .c files in
 * fleetd/, so a new type without a row fails here rather than answering 500). docs/fleetd.md
 * carries the same rows ("| `type` | status |"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <dirent.h>

#include "fleetd/api.h"
#include "test_fleetd_util.h"

/* type, errno (0: any other), the documented status */
static const struct api_problem_row documented[] = {
    {"archived", -EBUSY, 409},
    {"backup-failed", -EIO, 500},
    {"bad-checkpoint", -EINVAL, 422},
    {"bad-request", -EINVAL, 400},
    {"body-too-large", -EFBIG, 413},
    {"checksum-mismatch", -EBADMSG, 422},
    {"creation-failed", -EIO, 502},
    {"entity-has-vm", -EEXIST, 409},
    {"export-failed", -EPROTO, 502},
    {"fork", -EBADMSG, 409},
    {"image-name-reused", -EEXIST, 409},
    {"image-too-large", -EFBIG, 413},
    {"import-refused", -EBUSY, 409},
    {"insufficient-memory", -ENOSPC, 409},
    {"interrupted", -EINTR, 503},
    {"invalid-image-name", -EINVAL, 400},
    {"invalid-query", -EINVAL, 400},
    {"length-required", -EINVAL, 411},
    {"no-alive-node", -EHOSTUNREACH, 409},
    {"no-node-fits", -ENOSPC, 422},
    {"no-node-has-image", -ENOENT, 422},
    {"no-witnessed-checkpoint", -ENOENT, 409},
    {"node-error", -EPROTO, 502},
    {"node-not-alive", -EHOSTUNREACH, 409},
    {"node-refused", -EPERM, 409},
    {"node-timeout", -ETIMEDOUT, 504},
    {"node-unavailable", -ECONNREFUSED, 502},
    {"node-unreachable", -EHOSTUNREACH, 409},
    {"not-an-export", -EINVAL, 422},
    {"not-found", -ENOENT, 404},
    {"not-removed-everywhere", -EBUSY, 409},
    {"offset-mismatch", -ERANGE, 409},
    {"out-of-memory", -EAGAIN, 503},
    {"out-of-memory", -ENOMEM, 500},
    {"plan-confirmed", -EALREADY, 409},
    {"plan-dropped", -ECANCELED, 410},
    {"plan-expired", -ETIME, 410},
    {"plan-stale", -ESTALE, 409},
    {"precondition-failed", -ESTALE, 412},
    {"push-failed", -EIO, 502},
    {"push-in-progress", -EBUSY, 409},
    {"rollback", -EBADMSG, 409},
    {"same-node", -EEXIST, 409},
    {"staging-failed", -EIO, 500},
    {"store-failed", -EIO, 500},
    {"too-many-plans", -EAGAIN, 503},
    {"unknown-node", -EINVAL, 422},
    {"unknown-node", -ENOENT, 404},
    {"unknown-operation", -ENOENT, 404},
    {"unknown-plan", -ENOENT, 404},
    {"unknown-verb", -ENOENT, 404},
    {"unknown-vm", -ENOENT, 404},
    {"unwitnessed-checkpoint", -EBADMSG, 409},
    {"upload-failed", -EFBIG, 413},
    {"upload-failed", -EIO, 500},
    {"upload-in-progress", -EBUSY, 409},
    {"vm-busy", -EBUSY, 409},
    {"vm-not-active", -EBUSY, 409},
    {"vm-not-failed", -EBUSY, 409},
    {"vm-not-stopped", -EBUSY, 409},
    {"wrong-lifecycle", -EBUSY, 409},
};
#define N_DOCUMENTED (sizeof(documented) / sizeof(documented[0]))

static bool documented_type(const char *type)
{
        for (size_t i = 0; i < N_DOCUMENTED; i++)
                if (strcmp(documented[i].type, type) == 0)
                        return true;
        return false;
}

static void test_documented_statuses(void **state)
{
        (void)state;
        for (size_t i = 0; i < N_DOCUMENTED; i++) {
                unsigned got = api_problem_status(documented[i].type, documented[i].err);

                if (got != documented[i].status)
                        fail_msg("'%s' (%d) maps to %u, documented %u", documented[i].type,
                                 documented[i].err, got, documented[i].status);
        }
}

/* Every row is documented, and a type with two statuses keeps its specific rows first. */
static void test_table_rows_documented(void **state)
{
        (void)state;
        for (size_t i = 0; i < api_problem_table_len; i++) {
                const struct api_problem_row *row = &api_problem_table[i];

                if (!documented_type(row->type))
                        fail_msg("table row '%s' is not in the documented list", row->type);
                if (row->err)
                        assert_ptr_equal(api_problem_find(row->type, row->err), row);
                for (size_t k = 0; k < i; k++)
                        if (strcmp(api_problem_table[k].type, row->type) == 0 &&
                            api_problem_table[k].err == 0)
                                fail_msg("'%s': a row after its err 0 row is never used",
                                         row->type);
        }
        assert_null(api_problem_find("no-such-type", -EIO));
        assert_int_equal(api_problem_status("no-such-type", -EIO), 500);
}

/* The string literals in the argument that starts at p (up to its top-level comma) that look
 * like problem types; each is checked against the table. */
static void check_argument_types(const char *file, const char *p, unsigned *ret_seen)
{
        int depth = 0;

        for (; *p && !(depth == 0 && (*p == ',' || *p == ')')); p++) {
                if (*p == '(')
                        depth++;
                else if (*p == ')')
                        depth--;
                else if (*p == '"') {
                        char type[64];
                        size_t n = 0;

                        for (p++; *p && *p != '"' && n + 1 < sizeof(type); p++)
                                type[n++] = *p;
                        type[n] = '\0';
                        if (n == 0 || !islower((unsigned char)type[0]))
                                continue;
                        if (!api_problem_find(type, -EIO) || !documented_type(type))
                                fail_msg("%s passes problem type '%s', which the table or the "
                                         "documented list lacks",
                                         file, type);
                        (*ret_seen)++;
                }
        }
}

/* Skips n top-level arguments from just after the call's "(". */
static const char *skip_arguments(const char *p, int n)
{
        int depth = 0;

        for (; *p && n > 0; p++) {
                if (*p == '(')
                        depth++;
                else if (*p == ')' && depth-- == 0)
                        return NULL;
                else if (*p == '"')
                        for (p++; *p && *p != '"'; p++)
                                p += *p == '\\' && p[1];
                else if (*p == ',' && depth == 0)
                        n--;
        }
        return *p ? p : NULL;
}

static char *read_text(const char *path)
{
        FILE *fp = fopen(path, "r");
        char *buf = NULL;
        long len;

        assert_non_null(fp);
        assert_int_equal(fseek(fp, 0, SEEK_END), 0);
        len = ftell(fp);
        rewind(fp);
        buf = calloc(1, (size_t)len + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
        fclose(fp);
        return buf;
}

static void scan_file(const char *path, unsigned *ret_seen)
{
        static const struct {
                const char *call;
                int skip; /* arguments before the type */
        } calls[] = {{"outcome_fail(", 2}, {"api_fail(", 2}, {"api_problem_doc(", 0}};
        char *text = read_text(path);

        for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
                for (const char *p = strstr(text, calls[c].call); p;
                     p = strstr(p + 1, calls[c].call)) {
                        const char *arg = skip_arguments(p + strlen(calls[c].call), calls[c].skip);

                        if (arg)
                                check_argument_types(path, arg, ret_seen);
                }
        free(text);
}

static void test_sources_use_table_types(void **state)
{
        char dir[4096], path[4400];
        unsigned seen = 0;
        struct dirent *e;
        DIR *d;

        (void)state;
        snprintf(dir, sizeof(dir), "%s/fleetd", TOTEBOX_SOURCE_DIR);
        d = opendir(dir);
        assert_non_null(d);
        while ((e = readdir(d))) {
                size_t n = strlen(e->d_name);

                if (n < 3 || strcmp(e->d_name + n - 2, ".c") != 0)
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                scan_file(path, &seen);
        }
        closedir(d);
        assert_true(seen > 100); /* the scan found the calls (about 150 today) */
}

/* docs/fleetd.md lists every row as "| `type` | status |". */
static void test_docs_list_rows(void **state)
{
        char path[4200], want[128];
        char *text;

        (void)state;
        snprintf(path, sizeof(path), "%s/docs/fleetd.md", TOTEBOX_SOURCE_DIR);
        text = read_text(path);
        for (size_t i = 0; i < N_DOCUMENTED; i++) {
                snprintf(want, sizeof(want), "| `%s` | %u |", documented[i].type,
                         documented[i].status);
                if (!strstr(text, want))
                        fail_msg("docs/fleetd.md lacks the row \"%s\"", want);
        }
        free(text);
}

static void test_outcome_status(void **state)
{
        struct plan_outcome o = {0};

        (void)state;
        assert_int_equal(api_outcome_status(&o), 500); /* nothing said: a bug, not a 200 */
        o.done = OUTCOME_OK;
        assert_int_equal(api_outcome_status(&o), 200);
        o.done = OUTCOME_CREATED;
        assert_int_equal(api_outcome_status(&o), 201);
        o.done = OUTCOME_ACCEPTED;
        assert_int_equal(api_outcome_status(&o), 202);
        outcome_fail(&o, -ESTALE, "plan-stale", "plan '%s' moved", "p1");
        assert_int_equal(o.done, OUTCOME_FAILED);
        assert_int_equal(o.err, -ESTALE);
        assert_string_equal(o.detail, "plan 'p1' moved");
        assert_int_equal(api_outcome_status(&o), 409);
        outcome_fail(&o, -EPROTO, "export-failed", "node 'n1': no");
        assert_int_equal(api_outcome_status(&o), 502); /* no node status: a bad gateway */
        o.node_status = 507;
        assert_int_equal(api_outcome_status(&o), 507); /* the node's refusal, relayed */
        o.node_status = 302;
        assert_int_equal(api_outcome_status(&o), 502); /* not a refusal: a bad gateway */
}

/* A stored problem document is the one the API would answer. */
static void test_problem_doc(void **state)
{
        json_t *doc = api_problem_doc("unknown-node", -EINVAL, "no node 'n9'\xff");

        (void)state;
        assert_non_null(doc);
        assert_int_equal(json_integer_value(json_object_get(doc, "status")), 422);
        assert_string_equal(json_string_value(json_object_get(doc, "type")),
                            "https://totebox.example/problems/unknown-node");
        assert_string_equal(json_string_value(json_object_get(doc, "title")),
                            "Unprocessable Content");
        assert_string_equal(json_string_value(json_object_get(doc, "detail")), "no node 'n9'?");
        json_decref(doc);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_documented_statuses),
            cmocka_unit_test(test_table_rows_documented),
            cmocka_unit_test(test_sources_use_table_types),
            cmocka_unit_test(test_docs_list_rows),
            cmocka_unit_test(test_outcome_status),
            cmocka_unit_test(test_problem_doc),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
