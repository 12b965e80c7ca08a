/* The node API (docs/contracts.md section 2): HTTP/JSON on libmicrohttpd, one thread, TCP 9172
 * on the mesh address. A connection is accepted only from the controller's address (the
 * roster's controller, or node_api_allow) or another roster member's, which may only relay a
 * genesis-signed roster (POST /v1/roster); others are dropped at accept. Routes are a table;
 * bodies are bounded (max_body_bytes); errors are application/problem+json (RFC 9457). There is
 * no migrate, undefine or disk-delete route, and none may be added. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_body.h"
#include "common/json_input.h"
#include "common/log.h"
#include "common/small_file.h"
#include "vmhost/vmhost.h"

#define NODE_API_MAX_LISTEN 4

struct node_req {
        struct vmhost *vh;
        bool controller; /* the caller is the controller (or node_api_allow), not only a member */
        const char *method;
        const char *param; /* the {…} segment, if any */
        char param_buf[128];
        const char *body;
        size_t body_len;
        const char *sha256; /* the query argument, if any */
};

struct node_resp {
        unsigned status;
        json_t *body;
        const char *content_type;
};

typedef void (*node_handler)(struct node_req *q, struct node_resp *resp);

struct node_route {
        const char *method;
        const char *prefix; /* the path up to {id}, or the whole path */
        const char *suffix; /* after {id}; NULL when the route has no parameter */
        node_handler handler;
        const char *summary;
};

/* Every problem type vmhost answers and its status, the one place one is chosen (docs/vmhost.md).
 * Sorted by type within each group; rows of one type with a specific errno before its err 0
 * row. */
const struct problem_row node_problem_table[] = {
    /* a guest agent's refusal (diode.c), relayed with its code (one not listed: 502) */
    {"agent-failed", -EREMOTEIO, 502}, /* it named no code */
    {"bad-request", -EREMOTEIO, 400},
    {"busy", -EREMOTEIO, 503},
    {"conflict", -EREMOTEIO, 409},
    {"hash-mismatch", -EREMOTEIO, 422},
    {"not-covered", -EREMOTEIO, 409},
    {"not-found", -EREMOTEIO, 404},
    {"out-of-step", -EREMOTEIO, 503},
    {"too-large", -EREMOTEIO, 413},
    {"vault-refuses", -EREMOTEIO, 409},
    /* vmhost's own */
    {"agent-not-connected", 0, 409},
    {"agent-timeout", 0, 504},
    {"archived", 0, 409},
    {"audit-bad-signature", 0, 422},
    {"audit-inconsistent", 0, 409},
    {"audit-key-mismatch", 0, 409},
    {"audit-stale", 0, 409},
    {"bad-manifest", 0, 422},
    {"bad-receipt", 0, 502},
    {"bad-record", 0, 502},
    {"bad-request", -EIO, 500}, /* an upload vmhost cannot take for its own reasons */
    {"bad-request", 0, 400},
    {"bad-roster", 0, 400},
    {"bad-signature", -EACCES, 403}, /* a roster's */
    {"bad-signature", 0, 422},       /* an export's */
    {"body-too-large", 0, 413},
    {"checksum-mismatch", 0, 422},
    {"creation-counter", 0, 500},
    {"define", 0, 500},
    {"export-failed", -ENOSPC, 507},
    {"export-failed", 0, 500},
    {"hash-mismatch", 0, 422},
    {"image-exists", 0, 409},
    {"image-in-use", 0, 409},
    {"image-too-large", 0, 413},
    {"image-unreadable", 0, 422},
    {"import-failed", 0, 500},
    {"insufficient-memory", 0, 422},
    {"internal", 0, 500},
    {"libvirt", 0, 500},
    {"libvirt-unavailable", 0, 503},
    {"method-not-allowed", 0, 405},
    {"no-checksum", 0, 422},
    {"no-export", 0, 404},
    {"no-export-file", 0, 404},
    {"no-genesis-key", 0, 403},
    {"no-spool", 0, 503},
    {"no-vault-disk", 0, 500},
    {"not-an-export", 0, 422},
    {"not-found", 0, 404},
    {"not-running", 0, 409},
    {"not-the-controller", 0, 403},
    {"not-this-vault", 0, 422},
    {"not-this-vm", 0, 422},
    {"offset-mismatch", 0, 409},
    {"out-of-memory", 0, 503},
    {"pin-refused", -EACCES, 403}, /* a request's pin */
    {"pin-refused", 0, 409},       /* a start's, from the domain */
    {"pinned-elsewhere", 0, 409},
    {"seed", 0, 500},
    {"stale-roster", 0, 409},
    {"start", 0, 500},
    {"storage", 0, 500},
    {"tampered-export", 0, 422},
    {"too-large", 0, 413},
    {"unknown-image", 0, 422},
    {"upload-failed", -EFBIG, 413},
    {"upload-failed", 0, 500},
    {"upload-in-progress", 0, 409},
    {"vault-disk-exists", 0, 409},
    {"vm-exists", 0, 409},
    {"vm-not-stopped", 0, 409},
    {"wrong-state", 0, 409},
};
const size_t node_problem_table_len = sizeof(node_problem_table) / sizeof(node_problem_table[0]);

const struct problem_row *node_problem_find(const char *type, int err)
{
        /* an agent's code matches the agent rows only; vmhost's own never match those */
        return problem_row_find(node_problem_table, node_problem_table_len, type, err,
                                err == -EREMOTEIO);
}

unsigned node_problem_status(const struct vm_problem *p)
{
        const struct problem_row *row = node_problem_find(p->type, p->err);

        return row ? row->status : p->err == -EREMOTEIO ? 502 : 500;
}

/* The one builder of vmhost's problem documents (RFC 9457). */
static void node_problem(struct node_resp *resp, const struct vm_problem *p)
{
        unsigned status = node_problem_status(p);
        char type[128];

        snprintf(type, sizeof(type), "https://totebox.example/problems/%s", p->type);
        json_decref(resp->body);
        resp->status = status;
        resp->content_type = "application/problem+json";
        resp->body = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", p->type, "status",
                               (int)status, "detail", p->detail);
}

static void node_json(struct node_resp *resp, unsigned status, json_t *body)
{
        json_decref(resp->body);
        resp->status = status;
        resp->content_type = "application/json";
        resp->body = body;
}

static void node_inventory(struct node_req *q, struct node_resp *resp)
{
        struct vmhost *vh = q->vh;
        json_t *o;

        inventory_refresh(vh);
        pthread_mutex_lock(&vh->state_lock);
        o = json_pack("{s:s, s:s, s:O, s:I, s:o}", "node", vh->cfg.node_id, "digest", vh->digest,
                      "vms", vh->vms ? vh->vms : json_array(), "creations",
                      (json_int_t)vh->cache_creations, "images",
                      vh->images ? json_incref(vh->images) : json_array());
        pthread_mutex_unlock(&vh->state_lock);
        node_json(resp, 200, o);
}

static void node_vm_get(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *vm;

        inventory_refresh(q->vh);
        vm = inventory_get(q->vh, q->param);
        if (vm)
                node_json(resp, 200, vm);
        else {
                vms_problem(&p, -ENOENT, "not-found", "no Totebox VM '%s'", q->param);
                node_problem(resp, &p);
        }
}

static void node_vm_create(struct node_req *q, struct node_resp *resp)
{
        struct vm_create_req cr;
        struct vm_problem p;
        json_t *vm = NULL;
        int r = vm_create_req_parse(q->body, q->body_len, &cr, &p);

        if (r == 0)
                r = vms_create(q->vh, &cr, &vm, &p);
        if (r < 0)
                node_problem(resp, &p);
        else
                node_json(resp, r == VMS_CREATED ? 201 : 200, vm);
}

static void node_vm_verb(struct node_req *q, struct node_resp *resp, const char *verb)
{
        struct vm_problem p;
        json_t *vm = NULL;

        if (vms_action(q->vh, q->param, verb, &vm, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, vm);
}

static void node_vm_start(struct node_req *q, struct node_resp *resp)
{
        node_vm_verb(q, resp, "start");
}

static void node_vm_suspend(struct node_req *q, struct node_resp *resp)
{
        node_vm_verb(q, resp, "suspend");
}

static void node_vm_resume(struct node_req *q, struct node_resp *resp)
{
        node_vm_verb(q, resp, "resume");
}

static void node_vm_archive(struct node_req *q, struct node_resp *resp)
{
        node_vm_verb(q, resp, "archive");
}

static void node_vm_verify(struct node_req *q, struct node_resp *resp)
{
        char rid[32];
        struct vm_problem p;
        json_t *vm = inventory_get(q->vh, q->param);

        if (!vm) {
                vms_problem(&p, -ENOENT, "not-found", "no Totebox VM '%s'", q->param);
                node_problem(resp, &p);
        } else if (agent_chan_request_verify(q->vh, q->param, rid, sizeof(rid)) < 0) {
                vms_problem(&p, -ENOTCONN, "agent-not-connected",
                            "VM '%s' has no connected agent channel", q->param);
                node_problem(resp, &p);
        } else {
                log_info("VM '%s': full verification requested ('%s')", q->param, rid);
                node_json(resp, 202, json_pack("{s:s, s:s}", "vm", q->param, "request_id", rid));
        }
        json_decref(vm);
}

/* fleetd's cosigned checkpoint of the VM's vault (docs/contracts.md section 2). */
static void node_vm_witness(struct node_req *q, struct node_resp *resp)
{
        struct json_input_error jerr = {{0}};
        static const char *const fields[] = {"v", "checkpoint", NULL};
        json_t *o = json_input_parse(q->body, q->body_len, 16384, 2, &jerr), *w = NULL;
        const char *note = NULL;
        struct vm_problem p;
        int r = o ? 0 : -EINVAL;

        r = r ?: json_input_check_keys(o, fields, &jerr);
        r = r ?: json_input_get_string(o, "checkpoint", true, 8192, &note, &jerr);
        if (r < 0)
                vms_problem(&p, -EINVAL, "bad-request", "%s", jerr.text);
        else if ((r = agent_chan_fleet_note(q->vh, q->param, note, strlen(note), &w)) == -ENOENT)
                vms_problem(&p, -ENOENT, "not-found", "no agent channel state for VM '%s'",
                            q->param);
        else if (r < 0)
                vms_problem(&p, -EINVAL, "not-this-vault",
                            "the checkpoint is not one of VM '%s''s vault (origin or syntax)",
                            q->param);
        if (r < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, w);
        json_decref(o);
}

static void node_images_list(struct node_req *q, struct node_resp *resp)
{
        node_json(resp, 200, json_pack("{s:o}", "images", images_list(q->vh)));
}

static void node_images_import(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *m = NULL;

        if (images_import(q->vh, q->body, q->body_len, &m, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 201, m);
}

static void node_images_remove(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;

        if (images_remove(q->vh, q->param, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, json_pack("{s:s, s:b}", "image", q->param, "removed", 1));
}

static void node_images_upload_get(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (images_upload_status(q->vh, q->param, q->sha256, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

/* PUT /v1/images/{name}/upload is streamed (node_upload_*); the table row names it for 405s. */
static void node_images_upload_put(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;

        vms_problem(&p, -EIO, "internal", "the upload of '%s' was not streamed", q->param);
        node_problem(resp, &p);
}

static void node_roster(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (roster_update_apply(q->vh, q->body, q->body_len, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

static void node_audit_get(struct node_req *q, struct node_resp *resp)
{
        node_json(resp, 200, audit_witness_state(q->vh));
}

static void node_audit_post(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (audit_witness_accept(q->vh, q->body, q->body_len, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

static void node_vm_export(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (export_write(q->vh, q->param, q->body, q->body_len, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

static void node_vm_export_progress(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (export_progress(q->vh, q->param, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

static void node_vm_export_sign(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (export_sign(q->vh, q->param, q->body, q->body_len, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

static void node_import_inspect(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;

        if (export_inspect(q->vh, q->body, q->body_len, &o, &p) < 0)
                node_problem(resp, &p);
        else
                node_json(resp, 200, o);
}

static void node_import(struct node_req *q, struct node_resp *resp)
{
        struct vm_problem p;
        json_t *o = NULL;
        int r = export_import(q->vh, q->body, q->body_len, &o, &p);

        if (r < 0)
                node_problem(resp, &p);
        else
                node_json(resp, r == VMS_CREATED ? 201 : 200, o);
}

static const struct node_route node_routes[] = {
    {"GET", "/v1/inventory", NULL, node_inventory, "every Totebox VM of this node"},
    {"POST", "/v1/vms", NULL, node_vm_create, "create a VM (idempotent by request_id)"},
    {"GET", "/v1/vms/", "", node_vm_get, "one VM"},
    {"POST", "/v1/vms/", "/start", node_vm_start, "start (refused: pinned elsewhere, archived)"},
    {"POST", "/v1/vms/", "/suspend", node_vm_suspend, "suspend to a managed save (frees RAM)"},
    {"POST", "/v1/vms/", "/resume", node_vm_resume, "resume from suspend"},
    {"POST", "/v1/vms/", "/archive", node_vm_archive, "shut down and keep; never starts again"},
    {"POST", "/v1/vms/", "/verify", node_vm_verify, "ask the agent for a full verification"},
    {"POST", "/v1/vms/", "/witness", node_vm_witness, "fleetd's cosigned vault checkpoint"},
    {"POST", "/v1/vms/", "/export", node_vm_export,
     "write the stopped Totebox as one file under exports/ (resumable)"},
    {"GET", "/v1/vms/", "/export", node_vm_export_progress,
     "the export being written now: vault disk bytes read of their total"},
    {"POST", "/v1/vms/", "/export-signature", node_vm_export_sign,
     "the fleet's signature of an export (checked under the controller key)"},
    {"POST", "/v1/imports/inspect", NULL, node_import_inspect,
     "check an export put on this node by hand (signature, checksum, layout)"},
    {"POST", "/v1/imports", NULL, node_import,
     "create a VM from an export on this node (checked again; never over a disk)"},
    {"GET", "/v1/images", NULL, node_images_list, "base images and their manifests"},
    {"POST", "/v1/images", NULL, node_images_import, "import a base image (checksum verified)"},
    {"DELETE", "/v1/images/", "", node_images_remove, "remove an image no VM uses"},
    {"GET", "/v1/images/", "/upload", node_images_upload_get,
     "how many bytes of an upload (name + sha256) this node holds"},
    {"PUT", "/v1/images/", "/upload", node_images_upload_put,
     "stream an image's bytes from an offset; checked against sha256 when complete"},
    {"POST", "/v1/roster", NULL, node_roster, "a signed roster from the genesis key"},
    {"GET", "/v1/audit-checkpoint", NULL, node_audit_get, "fleetd's audit checkpoint held here"},
    {"POST", "/v1/audit-checkpoint", NULL, node_audit_post,
     "witness fleetd's audit checkpoint (consistency proof checked)"},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Matches url against a route; copies the {id} segment into q. */
static bool node_match(const struct node_route *rt, const char *url, struct node_req *q)
{
        size_t plen = strlen(rt->prefix), n;
        const char *seg, *end;

        if (!rt->suffix)
                return strcmp(url, rt->prefix) == 0;
        if (strncmp(url, rt->prefix, plen) != 0)
                return false;
        seg = url + plen;
        end = strchr(seg, '/');
        n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || n >= sizeof(q->param_buf) || strcmp(seg + n, rt->suffix) != 0)
                return false;
        memcpy(q->param_buf, seg, n);
        q->param_buf[n] = '\0';
        q->param = q->param_buf;
        return true;
}

static void node_dispatch(struct node_req *q, const char *url, struct node_resp *resp)
{
        struct vm_problem p;
        bool known = false;

        for (const struct node_route *rt = node_routes; rt->method; rt++) {
                if (!node_match(rt, url, q))
                        continue;
                known = true;
                if (strcmp(rt->method, q->method) != 0)
                        continue;
                /* a genesis-signed roster is authentic whoever relays it (the genesis after
                 * the controller moved to the cloud node); everything else is the controller's */
                if (!q->controller && rt->handler != node_roster) {
                        vms_problem(&p, -EACCES, "not-the-controller",
                                    "only the fleet controller may call '%s %s'", q->method, url);
                        node_problem(resp, &p);
                        return;
                }
                rt->handler(q, resp);
                return;
        }
        if (known)
                vms_problem(&p, -EOPNOTSUPP, "method-not-allowed",
                            "method '%s' is not allowed on '%s'", q->method, url);
        else
                vms_problem(&p, -ENOENT, "not-found", "no resource at '%s'", url);
        node_problem(resp, &p);
}

struct node_conn {
        struct http_body body;
        /* a Diode deposit: the body goes to an unlinked spool file, hashed on the way */
        bool deposit;
        int spool_fd;
        uint64_t spooled;
        bool too_large;
        crypto_generichash_state hs;
        bool upload; /* a streamed PUT /v1/images/{name}/upload */
        char name[128];
        struct image_partial part;
        struct vm_problem failed; /* err 0 while the upload goes well */
};

static enum MHD_Result node_send(struct MHD_Connection *conn, struct node_resp *resp);

/* ---- the Diode's routes: POST/GET /v1/vms/{id}/records, GET /v1/vms/{id}/records/{seq} ---- */

/* The VM id and (for one record) the seq of a records URL; false when url is not one. */
static bool node_records_url(const char *url, char *ret_id, size_t idsize, uint64_t *ret_seq)
{
        const char *p = url + strlen("/v1/vms/"), *slash;
        char *end;

        if (strncmp(url, "/v1/vms/", 8) != 0 || !(slash = strchr(p, '/')) ||
            (size_t)(slash - p) >= idsize || slash == p || strncmp(slash, "/records", 8) != 0)
                return false;
        memcpy(ret_id, p, (size_t)(slash - p));
        ret_id[slash - p] = '\0';
        *ret_seq = 0;
        if (slash[8] == '\0')
                return true;
        if (slash[8] != '/' || slash[9] < '1' || slash[9] > '9')
                return false;
        errno = 0;
        *ret_seq = strtoull(slash + 9, &end, 10);
        return *end == '\0' && errno == 0 && *ret_seq <= INT64_MAX;
}

/* A descriptor, or -1 (errno set) like open. */
static int node_spool_open(struct vmhost *vh)
{
        char *dir = small_file_path(vh->cfg.state_dir, "diode"); /* on the heap */
        int fd;

        if (!dir)
                return -1;
        mkdir(dir, 0700);
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        free(dir);
        return fd;
}

static bool node_query_uint(struct MHD_Connection *conn, const char *key, uint64_t max,
                            uint64_t *ret)
{
        const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
        char *end;

        if (!v)
                return true;
        errno = 0;
        *ret = strtoull(v, &end, 10);
        return v[0] >= '0' && v[0] <= '9' && *end == '\0' && errno == 0 && *ret <= max;
}

/* The deposit's fields from the query; the hash is the spooled bytes' own. */
static int node_deposit_req(struct MHD_Connection *conn, struct node_conn *c, const char *id,
                            struct diode_deposit_req *req, struct vm_problem *p)
{
        const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
        const char *did = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "deposit_id");
        const char *hash = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "blake2b_256");
        uint8_t claimed[32];
        char hex[65];

        memset(req, 0, sizeof(*req));
        snprintf(req->vm_id, sizeof(req->vm_id), "%s", id);
        crypto_generichash_final(&c->hs, req->hash, sizeof(req->hash));
        req->size = c->spooled;
        if (!name || !name[0] || strlen(name) > DIODE_NAME_LIMIT)
                return vms_problem(p, -EINVAL, "bad-request",
                                   "query parameter 'name' must be 1..%d bytes", DIODE_NAME_LIMIT);
        snprintf(req->name, sizeof(req->name), "%s", name);
        if (!node_query_uint(conn, "supersedes", INT64_MAX, &req->supersedes))
                return vms_problem(p, -EINVAL, "bad-request",
                                   "'supersedes' must be a record number");
        if (hash &&
            (strlen(hash) != 64 || sodium_hex2bin(claimed, 32, hash, 64, NULL, NULL, NULL) != 0 ||
             sodium_memcmp(claimed, req->hash, 32) != 0))
                return vms_problem(p, -EBADMSG, "hash-mismatch",
                                   "the body's BLAKE2b-256 is not the 'blake2b_256' given");
        if (did && !diode_id_valid(did))
                return vms_problem(p, -EINVAL, "bad-request",
                                   "'deposit_id' must be 1..64 of [A-Za-z0-9_-]");
        if (did)
                snprintf(req->deposit_id, sizeof(req->deposit_id), "%s", did);
        else {
                /* no id: the same name, content and correction are the same deposit */
                uint8_t h[16];
                crypto_generichash_state st;

                crypto_generichash_init(&st, NULL, 0, sizeof(h));
                crypto_generichash_update(&st, req->hash, 32);
                crypto_generichash_update(&st, (const uint8_t *)name, strlen(name) + 1);
                crypto_generichash_update(&st, (const uint8_t *)&req->supersedes, 8);
                crypto_generichash_final(&st, h, sizeof(h));
                sodium_bin2hex(hex, 33, h, sizeof(h));
                snprintf(req->deposit_id, sizeof(req->deposit_id), "h-%.32s", hex);
        }
        return 0;
}

static enum MHD_Result node_send_record(struct MHD_Connection *conn, json_t *rec, int fd)
{
        char *text = json_dumps(rec, JSON_COMPACT);
        uint64_t size = (uint64_t)json_integer_value(json_object_get(rec, "size"));
        size_t n = text ? strlen(text) : 0;
        char *b64 =
            text ? malloc(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL)) : NULL;
        struct MHD_Response *r = NULL;
        enum MHD_Result ret = MHD_NO;

        if (b64) {
                sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL),
                                  (const uint8_t *)text, n, sodium_base64_VARIANT_ORIGINAL);
                r = MHD_create_response_from_fd_at_offset64(size, fd, 0);
        }
        if (r) {
                fd = -1; /* the response owns it */
                MHD_add_response_header(r, "Content-Type", "application/octet-stream");
                MHD_add_response_header(r, "Cache-Control", "no-store");
                MHD_add_response_header(r, "Totebox-Record", b64);
                ret = MHD_queue_response(conn, 200, r);
                MHD_destroy_response(r);
        }
        if (fd >= 0)
                close(fd);
        free(b64);
        free(text);
        return ret;
}

/* A Diode route's JSON answer (r: 0, or VMS_CREATED for a deposit) or problem. */
static enum MHD_Result node_answer(struct MHD_Connection *conn, int r, json_t *o,
                                   const struct vm_problem *p)
{
        struct node_resp resp = {0};
        enum MHD_Result ret;

        if (r < 0)
                node_problem(&resp, p);
        else
                node_json(&resp, r == VMS_CREATED ? 201 : 200, o);
        ret = node_send(conn, &resp);
        json_decref(resp.body);
        return ret;
}

/* GET /v1/vms/{id}/records and /records/{seq}: answered from the agent, never from a cache. */
static enum MHD_Result node_records_get(struct vmhost *vh, struct MHD_Connection *conn,
                                        const char *id, uint64_t seq)
{
        struct vm_problem p;
        uint64_t after = 0, limit = 50;
        json_t *o = NULL;
        enum MHD_Result ret;
        int fd, r;

        if (seq == 0) {
                if (!node_query_uint(conn, "after", INT64_MAX, &after) ||
                    !node_query_uint(conn, "limit", UINT32_MAX, &limit))
                        r = vms_problem(&p, -EINVAL, "bad-request",
                                        "'after' and 'limit' must be whole numbers");
                else
                        r = diode_list(vh, id, after, limit, &o, &p);
        } else {
                fd = node_spool_open(vh);
                r = fd < 0 ? vms_problem(&p, -EAGAIN, "no-spool", "cannot open a spool file: %s",
                                         strerror(errno))
                           : diode_read(vh, id, seq, fd, &o, &p);
                if (r == 0) {
                        ret = node_send_record(conn, o, fd);
                        json_decref(o);
                        return ret;
                }
                if (fd >= 0)
                        close(fd);
        }
        return node_answer(conn, r, o, &p);
}

/* POST /v1/vms/{id}/records: the body is spooled as it arrives, then deposited. */
static enum MHD_Result node_deposit(struct vmhost *vh, struct MHD_Connection *conn,
                                    struct node_conn *c, const char *id, const char *upload,
                                    size_t *upload_size)
{
        struct diode_deposit_req req;
        struct vm_problem p;
        json_t *o = NULL;
        int r;

        if (*upload_size) {
                if (c->spooled + *upload_size > vh->cfg.max_record_bytes)
                        c->too_large = true;
                if (!c->too_large && c->spool_fd >= 0) {
                        if (pwrite(c->spool_fd, upload, *upload_size, (off_t)c->spooled) !=
                            (ssize_t)*upload_size)
                                c->too_large = true;
                        crypto_generichash_update(&c->hs, (const uint8_t *)upload, *upload_size);
                        c->spooled += *upload_size;
                }
                *upload_size = 0;
                return MHD_YES;
        }
        if (c->spool_fd < 0)
                r = vms_problem(&p, -EAGAIN, "no-spool", "cannot open a spool file");
        else if (c->too_large)
                r = vms_problem(&p, -EFBIG, "too-large",
                                "the record exceeds max_record_bytes (%llu bytes)",
                                (unsigned long long)vh->cfg.max_record_bytes);
        else if ((r = node_deposit_req(conn, c, id, &req, &p)) == 0)
                r = diode_deposit(vh, &req, c->spool_fd, &o, &p);
        return node_answer(conn, r, o, &p);
}

static bool node_caller_is_controller(struct vmhost *vh, const struct sockaddr *sa);

static enum MHD_Result node_send(struct MHD_Connection *conn, struct node_resp *resp)
{
        char *text = resp->body ? json_dumps(resp->body, JSON_COMPACT) : strdup("{}");
        struct MHD_Response *r;
        enum MHD_Result ret;

        if (!text)
                return MHD_NO;
        r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", resp->content_type);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        ret = MHD_queue_response(conn, resp->status, r);
        MHD_destroy_response(r);
        return ret;
}

static uint64_t node_query_size(struct MHD_Connection *conn, const char *name, bool *ok)
{
        const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
        char *end = NULL;
        unsigned long long n;

        if (!v || !*v || *v == '-') {
                *ok = *ok && v == NULL && strcmp(name, "offset") == 0;
                return 0;
        }
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno || *end)
                *ok = false;
        return n;
}

/* The start of a streamed upload: the caller, the query and the declared length are checked,
 * and the partial file opened, before any byte is read. Answers at once when refused. */
static bool node_upload_start(struct vmhost *vh, struct MHD_Connection *conn, struct node_conn *c,
                              const char *url, const struct sockaddr *sa, struct node_resp *resp)
{
        const char *hex = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sha256");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        bool ok = true;
        uint64_t size = node_query_size(conn, "size", &ok),
                 off = node_query_size(conn, "offset", &ok);
        uint64_t len = cl ? strtoull(cl, NULL, 10) : UINT64_MAX;
        json_t *done = NULL;
        struct vm_problem p;

        c->upload = true;
        c->part.fd = -1;
        if (!node_caller_is_controller(vh, sa))
                vms_problem(&p, -EACCES, "not-the-controller",
                            "only the fleet controller may upload images");
        else if (!ok || !cl || off > size || len > size - off)
                vms_problem(&p, -EINVAL, "bad-request",
                            "an upload needs query 'sha256', 'size' and 'offset' (integers) and a "
                            "Content-Length of at most size - offset");
        else if (images_upload_begin(vh, c->name, hex, size, off, &c->part, &done, &p) == 0) {
                if (!done)
                        return true;
                node_json(resp, 200, done); /* already held with that checksum */
                return false;
        }
        node_problem(resp, &p);
        return false;
}

/* One chunk, or (size 0) the end of the body. true: more to come. */
static bool node_upload_feed(struct vmhost *vh, struct node_conn *c, const char *data, size_t *size,
                             struct node_resp *resp)
{
        json_t *m = NULL;
        int r;

        if (*size) {
                if (!c->failed.err && (r = image_partial_write(&c->part, data, *size)) < 0)
                        vms_problem(&c->failed, r, "upload-failed",
                                    "image '%s': cannot take these bytes: %s", c->name,
                                    strerror(-r));
                *size = 0;
                return true;
        }
        if (c->failed.err)
                node_problem(resp, &c->failed);
        else if (c->part.offset < c->part.size)
                node_json(resp, 202,
                          json_pack("{s:s, s:s, s:I, s:I, s:b}", "name", c->name, "sha256",
                                    c->part.want, "offset", (json_int_t)c->part.offset, "size",
                                    (json_int_t)c->part.size, "complete", 0));
        else if (images_upload_complete(vh, c->name, &c->part, &m, &c->failed) < 0)
                node_problem(resp, &c->failed);
        else
                node_json(resp, 201, m);
        image_partial_close(&c->part);
        return false;
}

static bool node_is_upload(const char *method, const char *url, char *name, size_t size)
{
        const char *seg = url + strlen("/v1/images/"), *end;

        if (strcmp(method, "PUT") != 0 || strncmp(url, "/v1/images/", 11) != 0)
                return false;
        end = strchr(seg, '/');
        if (!end || strcmp(end, "/upload") != 0 || end == seg || (size_t)(end - seg) >= size)
                return false;
        snprintf(name, size, "%.*s", (int)(end - seg), seg);
        return true;
}

static enum MHD_Result node_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
        struct vmhost *vh = cls;
        struct node_conn *c = *con_cls;
        struct node_req q = {.vh = vh, .method = method, .body = ""};
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct node_resp resp = {0};
        struct vm_problem p;
        enum MHD_Result ret;

        char rid[VM_ID_MAX + 1];
        uint64_t seq = 0;
        bool records = node_records_url(url, rid, sizeof(rid), &seq);

        if (!c) {
                c = calloc(1, sizeof(*c));
                *con_cls = c;
                if (!c)
                        return MHD_NO;
                c->spool_fd = -1;
                c->part.fd = -1;
                c->deposit = records && seq == 0 && strcmp(method, "POST") == 0;
                if (c->deposit) {
                        c->spool_fd = node_spool_open(vh);
                        crypto_generichash_init(&c->hs, NULL, 0, 32);
                }
                if (!node_is_upload(method, url, c->name, sizeof(c->name)) ||
                    node_upload_start(vh, conn, c, url, ci ? ci->client_addr : NULL, &resp))
                        return MHD_YES;
                /* refused before its body is read; libmicrohttpd then closes the connection */
                ret = node_send(conn, &resp);
                json_decref(resp.body);
                return ret;
        }
        if (c->upload) {
                if (node_upload_feed(vh, c, upload_data, upload_data_size, &resp))
                        return MHD_YES;
                ret = node_send(conn, &resp);
                json_decref(resp.body);
                return ret;
        }
        if (records && !(ci && node_caller_is_controller(vh, ci->client_addr))) {
                if (*upload_data_size) {
                        *upload_data_size = 0;
                        return MHD_YES;
                }
                vms_problem(&p, -EACCES, "not-the-controller",
                            "only the fleet controller may call '%s %s'", method, url);
                node_problem(&resp, &p);
                ret = node_send(conn, &resp);
                json_decref(resp.body);
                return ret;
        }
        if (c->deposit)
                return node_deposit(vh, conn, c, rid, upload_data, upload_data_size);
        if (records && strcmp(method, "GET") == 0 && !*upload_data_size)
                return node_records_get(vh, conn, rid, seq);
        if (!http_body_feed(&c->body, upload_data, upload_data_size, vh->cfg.max_body_bytes))
                return MHD_YES;
        if (c->body.too_large) {
                vms_problem(&p, -EFBIG, "body-too-large", "request body exceeds %llu bytes",
                            (unsigned long long)vh->cfg.max_body_bytes);
                node_problem(&resp, &p);
        } else {
                q.controller = ci && node_caller_is_controller(vh, ci->client_addr);
                q.body = http_body_text(&c->body);
                q.body_len = c->body.len;
                q.sha256 = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sha256");
                node_dispatch(&q, url, &resp);
        }
        ret = node_send(conn, &resp);
        json_decref(resp.body);
        return ret;
}

static void node_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
        struct node_conn *c = *con_cls;

        if (c) {
                http_body_done(&c->body);
                if (c->spool_fd >= 0)
                        close(c->spool_fd);
                image_partial_close(&c->part); /* a cut upload keeps its bytes for a resume */
                free(c);
                *con_cls = NULL;
        }
}

bool node_api_address_allowed(const char *allow_list, const char *addr)
{
        char list[256], *save = NULL;

        snprintf(list, sizeof(list), "%s", allow_list);
        for (char *a = strtok_r(list, ", ", &save); a; a = strtok_r(NULL, ", ", &save))
                if (strcmp(a, addr) == 0)
                        return true;
        return false;
}

static bool node_caller_is_controller(struct vmhost *vh, const struct sockaddr *sa)
{
        char addr[INET_ADDRSTRLEN] = "";

        if (!sa || sa->sa_family != AF_INET)
                return false;
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        return vh->cfg.node_api_allow[0] ? node_api_address_allowed(vh->cfg.node_api_allow, addr)
                                         : roster_update_allowed(vh, addr);
}

/* The controller, and any roster member (which may only relay a signed roster). */
static enum MHD_Result node_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
        struct vmhost *vh = cls;
        char addr[INET_ADDRSTRLEN] = "";
        bool ok;

        if (sa->sa_family != AF_INET)
                return MHD_NO;
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        ok = node_caller_is_controller(vh, sa) || roster_member_address(vh, addr);
        if (!ok)
                log_warn("node API connection from '%s' refused: not the controller", addr);
        return ok ? MHD_YES : MHD_NO;
}

int node_api_start(struct vmhost *vh)
{
        char list[256], *save = NULL;
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)vh->cfg.node_api_port)};
        char *a;

        snprintf(list, sizeof(list), "%s", vh->cfg.node_api_listen);
        a = strtok_r(list, ", ", &save);
        /* One address: the mesh address (a second would need a second daemon). */
        if (!a || inet_pton(AF_INET, a, &sa.sin_addr) != 1)
                return -EINVAL;
        /* poll, not epoll: libmicrohttpd 0.9.75's edge-triggered epoll loop left a connection
         * whose peer closed in the middle of a slow upload in CLOSE-WAIT until the 30 s timeout
         * (the partial image stayed locked, and a resume got 409); poll sees the end at once */
        vh->http = MHD_start_daemon(
            /* a thread per connection: a deposit or read waits on its VM's channel for as long
             * as the record takes, and must not hold up the inventory or another VM */
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0,
            node_accept, vh, node_access, vh, MHD_OPTION_SOCK_ADDR, &sa,
            MHD_OPTION_NOTIFY_COMPLETED, node_completed, vh, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
        if (!vh->http)
                return -EADDRNOTAVAIL;
        log_info("node API listening on '%s' port %llu", a,
                 (unsigned long long)vh->cfg.node_api_port);
        return 0;
}

void node_api_stop(struct vmhost *vh)
{
        if (vh->http)
                MHD_stop_daemon(vh->http);
        vh->http = NULL;
}
