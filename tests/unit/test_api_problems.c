/* The API edges' problem tables (fleetd/api_problems.c, vmhost/node_api.c): every problem type
 * the domain code can produce maps to the status the docs give it. For each edge three lists
 * are checked against each other: the documented statuses below (the grep-able lists), the
 * table, and the types the sources pass to the problem functions (outcome_fail, api_fail,
 * api_problem_doc; vms_problem), read from the .c files of fleetd/ and vmhost/, so that a new
 * type without a row fails here rather than answering 500. docs/fleetd.md and docs/vmhost.md
 * carry the same rows ("| `type` | status |"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <dirent.h>

#include "fleetd/api.h"
#include "test_fleetd_util.h"
#include "vmhost/vmhost.h"

/* type, errno (0: any other), the documented status */
static const struct problem_row fleetd_documented[] = {
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

/* vmhost: type, errno (0: any other; -EREMOTEIO: a guest agent's code, relayed), status */
static const struct problem_row vmhost_documented[] = {
    {"agent-failed", -EREMOTEIO, 502},
    {"bad-request", -EREMOTEIO, 400},
    {"busy", -EREMOTEIO, 503},
    {"conflict", -EREMOTEIO, 409},
    {"hash-mismatch", -EREMOTEIO, 422},
    {"not-covered", -EREMOTEIO, 409},
    {"not-found", -EREMOTEIO, 404},
    {"out-of-step", -EREMOTEIO, 503},
    {"too-large", -EREMOTEIO, 413},
    {"vault-refuses", -EREMOTEIO, 409},
    {"agent-not-connected", -ENOTCONN, 409},
    {"agent-timeout", -ETIMEDOUT, 504},
    {"archived", -EBUSY, 409},
    {"audit-bad-signature", -EINVAL, 422},
    {"audit-inconsistent", -EBUSY, 409},
    {"audit-key-mismatch", -EBUSY, 409},
    {"audit-stale", -ESTALE, 409},
    {"bad-manifest", -EINVAL, 422},
    {"bad-receipt", -EPROTO, 502},
    {"bad-record", -EPROTO, 502},
    {"bad-request", -EIO, 500},
    {"bad-request", -EINVAL, 400},
    {"bad-roster", -EINVAL, 400},
    {"bad-signature", -EACCES, 403},
    {"bad-signature", -EBADMSG, 422},
    {"body-too-large", -EFBIG, 413},
    {"checksum-mismatch", -EBADMSG, 422},
    {"creation-counter", -EIO, 500},
    {"define", -EIO, 500},
    {"export-failed", -ENOSPC, 507},
    {"export-failed", -EIO, 500},
    {"hash-mismatch", -EBADMSG, 422},
    {"image-exists", -EEXIST, 409},
    {"image-in-use", -EBUSY, 409},
    {"image-too-large", -EFBIG, 413},
    {"image-unreadable", -EINVAL, 422},
    {"import-failed", -EIO, 500},
    {"insufficient-memory", -ENOSPC, 422},
    {"internal", -EIO, 500},
    {"libvirt", -EIO, 500},
    {"libvirt-unavailable", -ENOTCONN, 503},
    {"method-not-allowed", -EOPNOTSUPP, 405},
    {"no-checksum", -EINVAL, 422},
    {"no-export", -ENOENT, 404},
    {"no-export-file", -ENOENT, 404},
    {"no-genesis-key", -ENOKEY, 403},
    {"no-spool", -EAGAIN, 503},
    {"no-vault-disk", -EIO, 500},
    {"not-an-export", -EINVAL, 422},
    {"not-found", -ENOENT, 404},
    {"not-running", -EBUSY, 409},
    {"not-the-controller", -EACCES, 403},
    {"not-this-vault", -EINVAL, 422},
    {"not-this-vm", -EINVAL, 422},
    {"offset-mismatch", -ERANGE, 409},
    {"out-of-memory", -EAGAIN, 503},
    {"pin-refused", -EACCES, 403},
    {"pin-refused", -EPERM, 409},
    {"pinned-elsewhere", -EPERM, 409},
    {"seed", -EIO, 500},
    {"stale-roster", -ESTALE, 409},
    {"start", -EIO, 500},
    {"storage", -EIO, 500},
    {"tampered-export", -EBADMSG, 422},
    {"too-large", -EFBIG, 413},
    {"unknown-image", -ENOENT, 422},
    {"upload-failed", -EFBIG, 413},
    {"upload-failed", -EIO, 500},
    {"upload-in-progress", -EBUSY, 409},
    {"vault-disk-exists", -EEXIST, 409},
    {"vm-exists", -EEXIST, 409},
    {"vm-not-stopped", -EBUSY, 409},
    {"wrong-state", -EBUSY, 409},
};

static unsigned fleetd_status(const char *type, int err)
{
        return api_problem_status(type, err);
}

static unsigned vmhost_status(const char *type, int err)
{
        struct vm_problem p = {.err = err};

        snprintf(p.type, sizeof(p.type), "%s", type);
        return node_problem_status(&p);
}

/* The table's row for (type, err): its index, or -1. */
static long fleetd_row(const char *type, int err)
{
        const struct problem_row *row = api_problem_find(type, err);

        return row ? row - api_problem_table : -1;
}

static long vmhost_row(const char *type, int err)
{
        const struct problem_row *row = node_problem_find(type, err);

        return row ? row - node_problem_table : -1;
}

struct edge_call {
        const char *call;
        int skip; /* arguments before the type */
};

/* One API edge: its documented list, its table (as type/err pairs) and where its types come
 * from. */
struct edge {
        const char *dir, *doc;
        const struct problem_row *documented;
        size_t n_documented;
        unsigned (*status)(const char *type, int err);
        long (*row)(const char *type, int err);
        size_t n_rows;
        const char *(*row_type)(size_t i);
        int (*row_err)(size_t i);
        struct edge_call calls[3];
};

static const char *fleetd_row_type(size_t i)
{
        return api_problem_table[i].type;
}

static int fleetd_row_err(size_t i)
{
        return api_problem_table[i].err;
}

static const char *vmhost_row_type(size_t i)
{
        return node_problem_table[i].type;
}

static int vmhost_row_err(size_t i)
{
        return node_problem_table[i].err;
}

static struct edge edges[2];

static int edges_setup(void **state)
{
        (void)state;
        edges[0] = (struct edge){"fleetd",
                                 "docs/fleetd.md",
                                 fleetd_documented,
                                 sizeof(fleetd_documented) / sizeof(fleetd_documented[0]),
                                 fleetd_status,
                                 fleetd_row,
                                 api_problem_table_len,
                                 fleetd_row_type,
                                 fleetd_row_err,
                                 {{"outcome_fail(", 2}, {"api_fail(", 2}, {"api_problem_doc(", 0}}};
        edges[1] = (struct edge){"vmhost",
                                 "docs/vmhost.md",
                                 vmhost_documented,
                                 sizeof(vmhost_documented) / sizeof(vmhost_documented[0]),
                                 vmhost_status,
                                 vmhost_row,
                                 node_problem_table_len,
                                 vmhost_row_type,
                                 vmhost_row_err,
                                 {{"vms_problem(", 2}, {NULL, 0}, {NULL, 0}}};
        return 0;
}

static bool documented_type(const struct edge *e, const char *type)
{
        for (size_t i = 0; i < e->n_documented; i++)
                if (strcmp(e->documented[i].type, type) == 0)
                        return true;
        return false;
}

static void test_documented_statuses(void **state)
{
        (void)state;
        for (size_t k = 0; k < 2; k++)
                for (size_t i = 0; i < edges[k].n_documented; i++) {
                        const struct problem_row *d = &edges[k].documented[i];
                        unsigned got = edges[k].status(d->type, d->err);

                        if (got != d->status)
                                fail_msg("%s: '%s' (%d) maps to %u, documented %u", edges[k].dir,
                                         d->type, d->err, got, d->status);
                }
}

/* Every row is documented and reachable: no row of a type after its err 0 row. */
static void test_table_rows_documented(void **state)
{
        (void)state;
        for (size_t k = 0; k < 2; k++) {
                const struct edge *e = &edges[k];

                for (size_t i = 0; i < e->n_rows; i++) {
                        const char *type = e->row_type(i);

                        if (!documented_type(e, type))
                                fail_msg("%s: table row '%s' is not in the documented list", e->dir,
                                         type);
                        if (e->row_err(i) && e->row(type, e->row_err(i)) != (long)i)
                                fail_msg("%s: the row '%s' (%d) is never used", e->dir, type,
                                         e->row_err(i));
                }
                assert_int_equal(e->row("no-such-type", -EIO), -1);
                assert_int_equal(e->status("no-such-type", -EIO), 500);
        }
}

/* The string literals in the argument that starts at p (up to its top-level comma) that look
 * like problem types; each is checked against the table. */
static void check_argument_types(const struct edge *e, const char *file, const char *p,
                                 unsigned *ret_seen)
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
                        if ((e->row(type, -EIO) < 0 && e->row(type, -EREMOTEIO) < 0) ||
                            !documented_type(e, type))
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

static void scan_file(const struct edge *e, const char *path, unsigned *ret_seen)
{
        char *text = read_text(path);

        for (size_t c = 0; c < sizeof(e->calls) / sizeof(e->calls[0]) && e->calls[c].call; c++)
                for (const char *p = strstr(text, e->calls[c].call); p;
                     p = strstr(p + 1, e->calls[c].call)) {
                        const char *arg =
                            skip_arguments(p + strlen(e->calls[c].call), e->calls[c].skip);

                        if (arg)
                                check_argument_types(e, path, arg, ret_seen);
                }
        free(text);
}

static void test_sources_use_table_types(void **state)
{
        (void)state;
        for (size_t k = 0; k < 2; k++) {
                char dir[4096], path[4400];
                unsigned seen = 0;
                struct dirent *d;
                DIR *dp;

                snprintf(dir, sizeof(dir), "%s/%s", TOTEBOX_SOURCE_DIR, edges[k].dir);
                dp = opendir(dir);
                assert_non_null(dp);
                while ((d = readdir(dp))) {
                        size_t n = strlen(d->d_name);

                        if (n < 3 || strcmp(d->d_name + n - 2, ".c") != 0)
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
                        scan_file(&edges[k], path, &seen);
                }
                closedir(dp);
                if (seen < 100) /* the scan found the calls (about 150 in each today) */
                        fail_msg("%s: only %u problem types found in the sources", edges[k].dir,
                                 seen);
        }
}

/* The docs list every documented row as "| `type` | status |". */
static void test_docs_list_rows(void **state)
{
        (void)state;
        for (size_t k = 0; k < 2; k++) {
                char path[4200], want[128];
                char *text;

                snprintf(path, sizeof(path), "%s/%s", TOTEBOX_SOURCE_DIR, edges[k].doc);
                text = read_text(path);
                for (size_t i = 0; i < edges[k].n_documented; i++) {
                        snprintf(want, sizeof(want), "| `%s` | %u |", edges[k].documented[i].type,
                                 edges[k].documented[i].status);
                        if (!strstr(text, want))
                                fail_msg("%s lacks the row \"%s\"", edges[k].doc, want);
                }
                free(text);
        }
}

/* A guest agent's code is relayed with the agent's status; one the table lacks is 502, and
 * vmhost's own rows never answer for it. */
static void test_vmhost_agent_codes(void **state)
{
        (void)state;
        assert_int_equal(vmhost_status("not-found", -EREMOTEIO), 404);
        assert_int_equal(vmhost_status("internal", -EREMOTEIO), 502);
        assert_int_equal(vmhost_status("a-new-agent-code", -EREMOTEIO), 502);
        assert_int_equal(vmhost_status("busy", -EIO), 500); /* not vmhost's own type */
        assert_int_equal(vmhost_status("internal", -EIO), 500);
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
            cmocka_unit_test(test_vmhost_agent_codes),
            cmocka_unit_test(test_table_rows_documented),
            cmocka_unit_test(test_sources_use_table_types),
            cmocka_unit_test(test_docs_list_rows),
            cmocka_unit_test(test_outcome_status),
            cmocka_unit_test(test_problem_doc),
        };

        return cmocka_run_group_tests(tests, edges_setup, NULL);
}
