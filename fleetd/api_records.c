/* The Diode at the fleet (docs/fleetd.md "Records"): POST /v1/vms/{id}/records deposits the
 * spooled body into that Totebox, GET /v1/vms/{id}/records lists its ledger, GET
 * /v1/vms/{id}/records/{seq} reads one record back. A deposit is a long operation (202 and
 * /v1/operations/{id}, the receipt its result): what fleetd can check it answers at once (4xx),
 * then a thread of its own forwards the spooled body. fleetd only forwards, to the node the VM is
 * pinned to and for that VM's id only: the node answers from that VM's own agent channel. A
 * deposit is retried with the same deposit id when the node does not answer (a vmhost restart),
 * which the agent makes idempotent; every deposit is audited (vm.deposit). Read answers are
 * spooled and passed on as they came: fleetctl checks the hash and the proof. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/diode_frame.h"
#include "common/diode_record.h"
#include "common/http_body.h"
#include "common/log.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

#define RECORDS_ANSWER_MAX (1u << 20) /* a JSON answer (receipt, page, problem) */
#define RECORDS_TRIES      5

struct records_call {
        int out_fd; /* a 200's body goes here (a read); -1: buffered */
        uint64_t out_len;
        uint64_t out_max;
        struct http_body answer; /* any other answer: JSON, bounded */
        long status;
        char *record; /* the Totebox-Record header */
};

static size_t records_header(char *data, size_t size, size_t nmemb, void *arg)
{
        struct records_call *c = arg;
        size_t n = size * nmemb;

        if (!c->record)
                c->record = diode_record_header(data, n);
        return n;
}

static size_t records_write(char *data, size_t size, size_t nmemb, void *arg)
{
        struct records_call *c = arg;
        size_t n = size * nmemb, k = n;

        if (c->out_fd >= 0 && c->record) {
                if (c->out_len + n > c->out_max ||
                    pwrite(c->out_fd, data, n, (off_t)c->out_len) != (ssize_t)n)
                        return 0;
                c->out_len += n;
                return n;
        }
        http_body_feed(&c->answer, data, &k, RECORDS_ANSWER_MAX);
        return c->answer.too_large ? 0 : n;
}

/* One call to the node API; 0 when an HTTP answer came back. */
static int records_http(struct fleetd *f, const char *address, const char *method, const char *path,
                        int in_fd, uint64_t in_len, struct records_call *c, uint64_t timeout_ms)
{
        char url[1024];
        CURL *h = curl_easy_init();
        struct curl_slist *hdr = NULL;
        FILE *in = NULL;
        CURLcode rc;

        if (!h)
                return -ENOMEM;
        snprintf(url, sizeof(url), "http://%s:%u%s", address, (unsigned)f->cfg.node_api_port, path);
        curl_easy_setopt(h, CURLOPT_URL, url);
        if (f->transport.ctx)
                curl_easy_setopt(h, CURLOPT_INTERFACE, (const char *)f->transport.ctx);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, records_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, records_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
        if (in_fd >= 0) {
                int fd = dup(in_fd);

                in = fd >= 0 ? fdopen(fd, "rb") : NULL;
                if (!in) {
                        if (fd >= 0)
                                close(fd);
                        curl_easy_cleanup(h);
                        return -errno;
                }
                rewind(in);
                hdr = curl_slist_append(hdr, "Content-Type: application/octet-stream");
                hdr = curl_slist_append(hdr, "Expect:");
                curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_READDATA, in);
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)in_len);
        } else {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        }
        rc = curl_easy_perform(h);
        if (rc == CURLE_OK)
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
        curl_slist_free_all(hdr);
        curl_easy_cleanup(h);
        if (in)
                fclose(in);
        return rc == CURLE_OK ? 0 : rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EHOSTUNREACH;
}

static void records_call_done(struct records_call *c)
{
        http_body_done(&c->answer);
        free(c->record);
}

/* The VM's node, when records can move now: 0 and the node's mesh address, or a problem. */
static int records_target(struct api_request *req, struct api_response *resp, char *ret_address,
                          size_t size, char *ret_node, size_t nsize)
{
        struct fleetd *f = req->f;
        const char *id = req->params[0];
        struct fleet_vm *vm;
        struct fleet_node *node;
        enum node_state ns;
        int r = -EBUSY;

        if (!ident_valid(IDENT_VM, id)) {
                api_problem(resp, 400, "invalid-vm-id",
                            "'%.64s' is not a VM id (1..%d of [a-z0-9-])", id, VM_ID_MAX);
                return -EINVAL;
        }
        pthread_mutex_lock(&f->lock);
        vm = vm_table_find(f, id);
        node = vm ? node_table_find(&f->table, vm->node_id) : NULL;
        ns = node ? node_state_at(node, &f->cfg, clock_monotonic_ms()) : NODE_UNSEEN;
        if (!vm)
                api_problem(resp, 404, "unknown-vm", "no VM '%s'", id);
        else if (vm->status != VM_ACTIVE || vm->lifecycle != VM_LC_ACTIVE)
                api_problem(resp, 409, "vm-not-active",
                            "VM '%s' is '%s' and '%s': records move only in and out of an "
                            "active Totebox",
                            id, vm_status_name(vm->status), vm_lifecycle_name(vm->lifecycle));
        else if (!node || ns != NODE_ALIVE)
                api_problem(resp, 409, "node-unreachable",
                            "VM '%s' is pinned to node '%s', which is '%s'; it is not moved", id,
                            vm->node_id,
                            node ? node_state_name(ns) : node_absent_name(&f->table, vm->node_id));
        else {
                snprintf(ret_address, size, "%s", node->rn->mesh_address);
                snprintf(ret_node, nsize, "%s", vm->node_id);
                r = 0;
        }
        pthread_mutex_unlock(&f->lock);
        return r;
}

/* The node's answer as ours: its JSON (a receipt, a page, or its problem with its status). */
static void records_pass(struct api_response *resp, struct records_call *c, const char *node)
{
        json_t *o = json_loads(http_body_text(&c->answer), JSON_REJECT_DUPLICATES, NULL);

        if (!json_is_object(o) || c->status < 200 || c->status > 599) {
                json_decref(o);
                api_problem(resp, 502, "node-error", "node '%s' answered %ld without a JSON body",
                            node, c->status);
                return;
        }
        api_ok(resp, o);
        resp->status = (unsigned)c->status;
        if (c->status >= 400)
                resp->content_type = "application/problem+json";
}

static void records_unreachable(struct api_response *resp, int r, const char *node)
{
        if (r == -ETIMEDOUT)
                api_problem(resp, 504, "node-timeout", "node '%s' did not answer in time", node);
        else
                api_problem(resp, 502, "node-unavailable", "node '%s' did not answer: %s", node,
                            strerror(-r));
}

static int records_query_path(struct api_request *req, const char *deposit_id, char *buf,
                              size_t size)
{
        const char *name = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "name");
        const char *sup =
            MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "supersedes");
        char hex[65], *ename = name ? curl_easy_escape(NULL, name, 0) : NULL;
        int n;

        sodium_bin2hex(hex, sizeof(hex), req->body_hash, sizeof(req->body_hash));
        n = snprintf(buf, size, "/v1/vms/%s/records?name=%s&deposit_id=%s&blake2b_256=%s%s%s",
                     req->params[0], ename ? ename : "", deposit_id, hex, sup ? "&supersedes=" : "",
                     sup && strspn(sup, "0123456789") == strlen(sup) ? sup : "");
        curl_free(ename);
        return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

/* Checks the fields fleetd can check itself; the agent checks the rest. */
static bool records_deposit_args(struct api_request *req, struct api_response *resp,
                                 char *ret_deposit_id, size_t size)
{
        const char *name = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "name");
        const char *did =
            MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "deposit_id");
        const char *hash =
            MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "blake2b_256");
        uint8_t raw[16], claimed[32];

        if (req->body_too_large) {
                api_problem(resp, 413, "record-too-large",
                            "the record exceeds max_record_bytes (%" PRIu64 " bytes)",
                            req->f->cfg.max_record_bytes);
                return false;
        }
        if (!name || !name[0] || strlen(name) > 200) {
                api_problem(resp, 400, "invalid-name",
                            "query 'name' (the record's name) must be 1..200 bytes");
                return false;
        }
        if (hash &&
            (strlen(hash) != 64 || sodium_hex2bin(claimed, 32, hash, 64, NULL, NULL, NULL) != 0 ||
             sodium_memcmp(claimed, req->body_hash, 32) != 0)) {
                api_problem(resp, 422, "hash-mismatch",
                            "the body's BLAKE2b-256 is not the 'blake2b_256' given: the record "
                            "was changed on the way");
                return false;
        }
        if (did && !diode_id_valid(did)) {
                api_problem(resp, 400, "invalid-deposit-id",
                            "'deposit_id' must be 1..64 of [A-Za-z0-9_-]");
                return false;
        }
        if (did)
                snprintf(ret_deposit_id, size, "%s", did);
        else {
                randombytes_buf(raw, sizeof(raw));
                memcpy(ret_deposit_id, "f-", 3);
                sodium_bin2hex(ret_deposit_id + 2, size - 2, raw, sizeof(raw));
        }
        return true;
}

/* A deposit checked and spooled, forwarded on the operation's own thread. */
struct records_deposit {
        int fd; /* the spooled body (a dup of the request's) */
        uint64_t size;
        uint8_t hash[32];
        char vm[VM_ID_MAX + 1], actor[64], address[64], node[64];
        char did[DIODE_ID_MAX + 1], path[1024];
};

static void records_audit(struct fleetd *f, const struct records_deposit *d,
                          const struct api_response *resp)
{
        json_t *b = resp->body;
        char hex[65];

        sodium_bin2hex(hex, sizeof(hex), d->hash, sizeof(d->hash));
        audit_append(f->store, false, "vm.deposit", d->vm, d->actor,
                     json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o}", "node_id", d->node,
                               "deposit_id", d->did, "blake2b_256", hex, "size",
                               (json_int_t)d->size, "status", (json_int_t)resp->status, "seq",
                               json_incref(json_object_get(b, "seq")) ?: json_null(), "path",
                               json_incref(json_object_get(b, "path")) ?: json_null()));
}

/* The node's answer (resp) as the operation's outcome: the receipt, or the problem. */
static void records_outcome(struct api_response *resp, struct plan_outcome *o)
{
        if (resp->status >= 400) {
                /* the node's own type, title and detail win, and its status is relayed */
                outcome_fail(o, -EPROTO, "node-error", "%s",
                             json_string_value(json_object_get(resp->body, "detail")) ?: "");
                o->node_status = resp->status;
        } else {
                o->done = resp->status == 201 ? OUTCOME_CREATED : OUTCOME_OK;
        }
        o->body = resp->body;
        resp->body = NULL;
}

static void records_deposit_run(struct fleetd *f, void *arg, const char *actor, struct op_call *op,
                                struct plan_outcome *o)
{
        (void)actor; /* the deposit carries its own (d->actor) */
        (void)op;    /* a deposit's bytes went to fleetd's spool before it began */
        struct records_deposit *d = arg;
        struct records_call c = {.out_fd = -1};
        struct api_response resp = {0};
        int r = -EIO;

        memset(o, 0, sizeof(*o));
        /* the same deposit id again after no answer: the agent seals it once */
        for (int i = 0; i < RECORDS_TRIES; i++) {
                records_call_done(&c);
                c = (struct records_call){.out_fd = -1};
                r = records_http(f, d->address, "POST", d->path, d->fd, d->size, &c,
                                 120000 + d->size / (1u << 20) * 1000);
                if (r == 0 && c.status != 503 && c.status != 504)
                        break;
                log_info("deposit '%s' into VM '%s': node '%s' %s; trying again", d->did, d->vm,
                         d->node, r < 0 ? "did not answer" : "is busy");
                usleep((useconds_t)(500000u << i));
        }
        if (r < 0)
                records_unreachable(&resp, r, d->node);
        else
                records_pass(&resp, &c, d->node);
        records_call_done(&c);
        records_audit(f, d, &resp);
        if (resp.status == 201)
                log_info("record deposited into VM '%s' ('%s', by '%s')", d->vm, d->did, d->actor);
        records_outcome(&resp, o);
        close(d->fd);
        free(d);
}

void api_records_deposit(struct api_request *req, struct api_response *resp)
{
        struct records_deposit *d = calloc(1, sizeof(*d));
        struct plan_outcome o;

        if (!d) {
                api_problem(resp, 503, "out-of-memory", "cannot take the deposit now");
                return;
        }
        if (records_target(req, resp, d->address, sizeof(d->address), d->node, sizeof(d->node)) <
                0 ||
            !records_deposit_args(req, resp, d->did, sizeof(d->did))) {
                free(d);
                return;
        }
        if (records_query_path(req, d->did, d->path, sizeof(d->path)) < 0) {
                api_problem(resp, 414, "uri-too-long", "the record's name is too long");
                free(d);
                return;
        }
        d->fd = fcntl(req->body_fd, F_DUPFD_CLOEXEC, 0);
        if (d->fd < 0) {
                api_problem(resp, 503, "no-spool", "cannot keep the spooled record: %s",
                            strerror(errno));
                free(d);
                return;
        }
        d->size = req->body_size;
        memcpy(d->hash, req->body_hash, sizeof(d->hash));
        snprintf(d->vm, sizeof(d->vm), "%s", req->params[0]);
        snprintf(d->actor, sizeof(d->actor), "%s", req->actor);
        ops_task_start(req->f, "deposit", d->vm, d->actor, records_deposit_run, d, &o);
        api_operation_accepted(resp, &o);
}

void api_records_list(struct api_request *req, struct api_response *resp)
{
        const char *after = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "after");
        const char *limit = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "limit");
        char address[64], node[64], path[256];
        struct records_call c = {.out_fd = -1};
        int r;

        if (records_target(req, resp, address, sizeof(address), node, sizeof(node)) < 0)
                return;
        if ((after && strspn(after, "0123456789") != strlen(after)) ||
            (limit && strspn(limit, "0123456789") != strlen(limit)) ||
            (after && strlen(after) > 19) || (limit && strlen(limit) > 9)) {
                api_problem(resp, 400, "invalid-query", "'after' and 'limit' are whole numbers");
                return;
        }
        snprintf(path, sizeof(path), "/v1/vms/%s/records?after=%s&limit=%s", req->params[0],
                 after && after[0] ? after : "0", limit && limit[0] ? limit : "50");
        r = records_http(req->f, address, "GET", path, -1, 0, &c, 60000);
        if (r < 0)
                records_unreachable(resp, r, node);
        else
                records_pass(resp, &c, node);
        records_call_done(&c);
}

void api_records_read(struct api_request *req, struct api_response *resp)
{
        const char *seq = req->params[1];
        char address[64], node[64], path[256];
        struct records_call c = {.out_fd = -1};
        int r;

        if (records_target(req, resp, address, sizeof(address), node, sizeof(node)) < 0)
                return;
        if (!seq || seq[0] < '1' || seq[0] > '9' || strspn(seq, "0123456789") != strlen(seq) ||
            strlen(seq) > 18) {
                api_problem(resp, 400, "invalid-seq", "'%.32s' is not a record number", seq);
                return;
        }
        c.out_fd = api_spool_open(req->f);
        c.out_max = req->f->cfg.max_record_bytes;
        if (c.out_fd < 0) {
                api_problem(resp, 503, "no-spool", "cannot spool the record in '%s/diode'",
                            req->f->cfg.state_dir);
                return;
        }
        snprintf(path, sizeof(path), "/v1/vms/%s/records/%s", req->params[0], seq);
        r = records_http(req->f, address, "GET", path, -1, 0, &c,
                         120000 + c.out_max / (1u << 20) * 1000);
        if (r < 0)
                records_unreachable(resp, r, node);
        else if (c.status != 200 || !c.record)
                records_pass(resp, &c, node);
        else {
                resp->status = 200;
                resp->has_file = true;
                resp->file_fd = c.out_fd;
                resp->file_len = c.out_len;
                c.out_fd = -1;
                resp->content_type = "application/octet-stream";
                resp->header_name = "Totebox-Record";
                resp->header_owned = c.record; /* freed once sent */
                resp->header_value = c.record;
                c.record = NULL;
        }
        if (c.out_fd >= 0)
                close(c.out_fd);
        records_call_done(&c);
}
