/* The Diode, the host's half (docs/vmhost.md "The Diode"): deposits, listings and reads for one
 * Totebox, over that VM's own agent channel and no other. The node API spools a deposit's bytes
 * to an unlinked file first (bounded by max_record_bytes), so a dropped channel costs a resume,
 * not the upload: the agent says how much it holds (deposit-ready) and the rest goes out as data
 * frames of at most DIODE_CHUNK_MAX bytes, written with poll() so the channel's own flow control
 * (QEMU stops reading while the guest is slow) paces the writer without blocking anything else.
 * Every record answer is checked before it is passed on: the tree head is signed by the VM's
 * pinned vault key and the inclusion proof leads from the entry's ledger line to its root. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/diode_record.h"
#include "common/log.h"
#include "common/merkle.h"
#include "vmhost/vmhost.h"

#define DIODE_TRIES        5
#define DIODE_RECONNECT_MS 30000
#define DIODE_CONNECT_MS   10000
#define DIODE_WRITE_MS     30000
#define DIODE_ANSWER_MS    30000

static void diode_new_id(const char *prefix, char *buf, size_t size)
{
        uint8_t raw[8];
        char hex[17];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
        snprintf(buf, size, "%s-%s", prefix, hex);
}

static void diode_wait_init(struct diode_wait *w, const char *prefix)
{
        pthread_condattr_t a;

        memset(w, 0, sizeof(*w));
        w->spool_fd = -1;
        diode_new_id(prefix, w->request_id, sizeof(w->request_id));
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&w->cond, &a);
        pthread_condattr_destroy(&a);
}

static void diode_wait_done(struct diode_wait *w)
{
        json_decref(w->answer);
        json_decref(w->record);
        pthread_cond_destroy(&w->cond);
}

/* Writes all of iov to the channel, waiting for room with poll(): the channel's flow control. */
static int diode_write_all(int fd, struct iovec *iov, int n)
{
        while (n > 0) {
                ssize_t w = writev(fd, iov, n);

                if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                        struct pollfd p = {.fd = fd, .events = POLLOUT};

                        if (poll(&p, 1, DIODE_WRITE_MS) == 0)
                                return -ETIMEDOUT;
                        if (p.revents & (POLLERR | POLLHUP))
                                return -ECONNRESET;
                        continue;
                }
                if (w < 0)
                        return -errno;
                while (n > 0 && (size_t)w >= iov->iov_len) {
                        w -= (ssize_t)iov->iov_len;
                        iov++;
                        n--;
                }
                if (n > 0) {
                        iov->iov_base = (char *)iov->iov_base + w;
                        iov->iov_len -= (size_t)w;
                }
        }
        return 0;
}

static int diode_send_line(struct vmhost *vh, const char *id, uint64_t gen, json_t *msg)
{
        char *text = json_dumps(msg, JSON_COMPACT);
        struct iovec iov[2];
        int fd = -1, r;

        json_decref(msg);
        if (!text)
                return -ENOMEM;
        r = agent_chan_write_begin(vh, id, gen, &fd);
        if (r == 0) {
                iov[0] = (struct iovec){text, strlen(text)};
                iov[1] = (struct iovec){"\n", 1};
                r = diode_write_all(fd, iov, 2);
                agent_chan_write_end(vh, id, fd);
        }
        free(text);
        return r;
}

static void diode_wait_reconnect(struct vmhost *vh, const char *id, uint64_t ms);

/* One request, one answer: 0 with w->answer set, or -ENOTCONN, -ECONNRESET, -ETIMEDOUT. A
 * channel not connected yet (vmhost just started, the agent restarting) gets a few seconds. */
static int diode_ask(struct vmhost *vh, const char *id, struct diode_wait *w, json_t *msg,
                     uint64_t timeout_ms)
{
        int r;

        json_object_set_new(msg, "request_id", json_string(w->request_id));
        r = agent_chan_wait_add(vh, id, w);
        if (r == -ENOTCONN) {
                diode_wait_reconnect(vh, id, DIODE_CONNECT_MS);
                r = agent_chan_wait_add(vh, id, w);
        }
        if (r < 0) {
                json_decref(msg);
                return r;
        }
        r = diode_send_line(vh, id, w->gen, msg);
        if (r == 0)
                r = agent_chan_wait(vh, w, clock_monotonic_ms() + timeout_ms);
        agent_chan_wait_remove(vh, id, w);
        return r;
}

/* ---- the VM the request names ---- */

/* The VM must be this node's, active and running, with a connected channel and a pinned key. */
static int diode_vm(struct vmhost *vh, const char *id, char *ret_pk, size_t pksize,
                    struct vm_problem *p)
{
        json_t *vm = inventory_get(vh, id);
        const char *lc, *state, *pk;
        int r = 0;

        if (!vm)
                return vms_problem(p, -ENOENT, "not-found", "no Totebox VM '%s' on this node", id);
        lc = json_string_value(json_object_get(vm, "lifecycle"));
        state = json_string_value(json_object_get(vm, "state"));
        pk = json_string_value(json_object_get(vm, "vault_public_key"));
        if (!lc || strcmp(lc, "active") != 0 || !state || strcmp(state, "running") != 0)
                r = vms_problem(p, -EBUSY, "not-running",
                                "VM '%s' is %s and %s; records go in and out of a running, "
                                "active Totebox only",
                                id, lc ? lc : "?", state ? state : "?");
        else if (!pk)
                r = vms_problem(p, -ENOTCONN, "agent-not-connected",
                                "VM '%s' has no pinned vault key yet (no report from its agent)",
                                id);
        else
                snprintf(ret_pk, pksize, "%s", pk);
        json_decref(vm);
        return r;
}

/* The agent's refusal, its code as the problem type (-EREMOTEIO: node_api.c's agent rows give
 * its status). */
static int diode_agent_problem(const json_t *err, const char *id, struct vm_problem *p)
{
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *detail = json_string_value(json_object_get(err, "detail"));

        return vms_problem(p, -EREMOTEIO, code ? code : "agent-failed", "VM '%s': %s", id,
                           detail ? detail : "the agent refused");
}

static int diode_channel_problem(int r, const char *id, struct vm_problem *p)
{
        if (r == -ENOTCONN)
                return vms_problem(p, -ENOTCONN, "agent-not-connected",
                                   "VM '%s' has no connected agent channel", id);
        return vms_problem(p, -ETIMEDOUT, "agent-timeout", "VM '%s': the agent did not answer (%s)",
                           id, strerror(-r));
}

/* Waits for the channel to come back after a drop (the agent reconnects within seconds). */
static void diode_wait_reconnect(struct vmhost *vh, const char *id, uint64_t ms)
{
        uint64_t until = clock_monotonic_ms() + ms;

        while (clock_monotonic_ms() < until) {
                json_t *st = agent_chan_status(vh, id);
                bool up = json_is_true(json_object_get(st, "connected"));

                json_decref(st);
                if (up)
                        return;
                usleep(100000);
        }
}

/* ---- deposits ---- */

static int diode_send_frames(struct vmhost *vh, const struct diode_deposit_req *req, int data_fd,
                             uint64_t gen, uint64_t from)
{
        uint8_t *buf = malloc(DIODE_CHUNK_MAX);
        char hdr[DIODE_HEADER_MAX];
        int fd = -1, r = buf ? agent_chan_write_begin(vh, req->vm_id, gen, &fd) : -ENOMEM;

        for (uint64_t off = from; r == 0 && off < req->size;) {
                size_t n =
                    req->size - off < DIODE_CHUNK_MAX ? (size_t)(req->size - off) : DIODE_CHUNK_MAX;
                ssize_t got = pread(data_fd, buf, n, (off_t)off);
                int h = diode_frame_header(hdr, sizeof(hdr), req->deposit_id, off, n);
                struct iovec iov[2] = {{hdr, (size_t)h}, {buf, n}};

                if (got != (ssize_t)n || h < 0) {
                        r = -EIO;
                        break;
                }
                r = diode_write_all(fd, iov, 2);
                off += n;
        }
        if (fd >= 0)
                agent_chan_write_end(vh, req->vm_id, fd);
        free(buf);
        return r;
}

static json_t *diode_begin_msg(const struct diode_deposit_req *req)
{
        char hex[65];

        sodium_bin2hex(hex, sizeof(hex), req->hash, sizeof(req->hash));
        return json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:o}", "v", 1, "type", "deposit-begin",
                         "deposit_id", req->deposit_id, "name", req->name, "size",
                         (json_int_t)req->size, "blake2b_256", hex, "supersedes",
                         req->supersedes ? json_integer((json_int_t)req->supersedes) : json_null());
}

/* One try: 1 and *ret_answer (a receipt or the agent's error), or <0 to try again. */
static int diode_deposit_try(struct vmhost *vh, const struct diode_deposit_req *req, int data_fd,
                             json_t **ret_answer)
{
        /* hashing and sealing a large record takes the agent a while */
        uint64_t seal_ms = DIODE_ANSWER_MS + req->size / (4u << 20) * 1000;
        struct diode_wait w;
        const char *type;
        uint64_t from, t0, t1;
        int r;

        diode_wait_init(&w, "dep");
        r = diode_ask(vh, req->vm_id, &w, diode_begin_msg(req), DIODE_ANSWER_MS);
        type = r == 0 ? json_string_value(json_object_get(w.answer, "type")) : NULL;
        if (r == 0 && type && strcmp(type, "deposit-ready") != 0) {
                *ret_answer = json_incref(w.answer);
                r = 1;
                goto cleanup;
        }
        if (r < 0)
                goto cleanup;
        from = (uint64_t)json_integer_value(json_object_get(w.answer, "offset"));
        log_info("VM '%s': deposit '%s': the agent holds %" PRIu64 " of %" PRIu64
                 " bytes; sending the rest",
                 req->vm_id, req->deposit_id, from, req->size);
        t0 = clock_monotonic_ms();
        r = from > req->size ? -EBADMSG : diode_send_frames(vh, req, data_fd, w.gen, from);
        if (r < 0)
                goto cleanup;
        t1 = clock_monotonic_ms();
        diode_wait_done(&w);
        diode_wait_init(&w, "dep");
        r = diode_ask(vh, req->vm_id, &w,
                      json_pack("{s:i, s:s, s:s}", "v", 1, "type", "deposit-end", "deposit_id",
                                req->deposit_id),
                      seal_ms);
        type = r == 0 ? json_string_value(json_object_get(w.answer, "type")) : NULL;
        if (r == 0 && !strcmp(type ? type : "", "error") &&
            !strcmp(json_string_value(json_object_get(w.answer, "code")) ?: "", "out-of-step"))
                r = -EAGAIN; /* a frame was lost with the connection: begin again */
        else if (r == 0) {
                *ret_answer = json_incref(w.answer);
                r = 1;
                log_info("VM '%s': deposit '%s': %" PRIu64 " bytes sent from offset %" PRIu64
                         " in %" PRIu64 " ms; the agent's answer %" PRIu64 " ms later",
                         req->vm_id, req->deposit_id, req->size - from, from, t1 - t0,
                         clock_monotonic_ms() - t1);
        }
cleanup:
        diode_wait_done(&w);
        return r;
}

int diode_deposit(struct vmhost *vh, const struct diode_deposit_req *req, int data_fd,
                  json_t **ret_receipt, struct vm_problem *p)
{
        char pk[64], why[160];
        json_t *answer = NULL;
        int r = diode_vm(vh, req->vm_id, pk, sizeof(pk), p);

        if (r < 0)
                return r;
        for (int i = 0; i < DIODE_TRIES; i++) {
                r = diode_deposit_try(vh, req, data_fd, &answer);
                if (r > 0 || r == -ENOTCONN)
                        break;
                log_info("VM '%s': deposit '%s' interrupted (%s); resuming", req->vm_id,
                         req->deposit_id, strerror(-r));
                diode_wait_reconnect(vh, req->vm_id, DIODE_RECONNECT_MS);
        }
        if (r <= 0)
                return diode_channel_problem(r, req->vm_id, p);
        if (strcmp(json_string_value(json_object_get(answer, "type")) ?: "", "deposit-receipt")) {
                r = diode_agent_problem(answer, req->vm_id, p);
                json_decref(answer);
                return r;
        }
        if (diode_record_check(answer, pk, why, sizeof(why)) < 0) {
                log_warn("VM '%s': deposit '%s': the agent's receipt fails its checks: %s",
                         req->vm_id, req->deposit_id, why);
                json_decref(answer);
                return vms_problem(p, -EPROTO, "bad-receipt", "VM '%s': the agent's receipt %s",
                                   req->vm_id, why);
        }
        json_object_del(answer, "v");
        json_object_del(answer, "type");
        json_object_del(answer, "request_id");
        json_object_set_new(answer, "vm", json_string(req->vm_id));
        log_info("VM '%s': deposit '%s' sealed as record %" PRIu64 " ('%s')", req->vm_id,
                 req->deposit_id, (uint64_t)json_integer_value(json_object_get(answer, "seq")),
                 json_string_value(json_object_get(answer, "path")));
        *ret_receipt = answer;
        return VMS_CREATED;
}

/* ---- listing and reading ---- */

int diode_list(struct vmhost *vh, const char *id, uint64_t after, uint64_t limit, json_t **ret,
               struct vm_problem *p)
{
        char pk[64];
        struct diode_wait w;
        int r = diode_vm(vh, id, pk, sizeof(pk), p);

        if (r < 0)
                return r;
        if (limit < 1 || limit > DIODE_LIST_LIMIT)
                return vms_problem(p, -EINVAL, "bad-request", "limit must be 1..%d",
                                   DIODE_LIST_LIMIT);
        diode_wait_init(&w, "lst");
        r = diode_ask(vh, id, &w,
                      json_pack("{s:i, s:s, s:I, s:I}", "v", 1, "type", "record-list", "after",
                                (json_int_t)after, "limit", (json_int_t)limit),
                      DIODE_ANSWER_MS);
        if (r < 0)
                r = diode_channel_problem(r, id, p);
        else if (strcmp(json_string_value(json_object_get(w.answer, "type")) ?: "", "record-list"))
                r = diode_agent_problem(w.answer, id, p);
        else {
                *ret = json_incref(w.answer);
                json_object_del(*ret, "v");
                json_object_del(*ret, "type");
                json_object_del(*ret, "request_id");
                json_object_set_new(*ret, "vm", json_string(id));
                r = 0;
        }
        diode_wait_done(&w);
        return r;
}

int diode_read(struct vmhost *vh, const char *id, uint64_t seq, int spool_fd, json_t **ret_record,
               struct vm_problem *p)
{
        char pk[64], why[160];
        struct diode_wait w;
        uint64_t size;
        int r = diode_vm(vh, id, pk, sizeof(pk), p);

        if (r < 0)
                return r;
        diode_wait_init(&w, "rd");
        w.spool_fd = spool_fd;
        w.spool_max = vh->cfg.max_record_bytes;
        r = diode_ask(
            vh, id, &w,
            json_pack("{s:i, s:s, s:I}", "v", 1, "type", "record-read", "seq", (json_int_t)seq),
            DIODE_ANSWER_MS + vh->cfg.max_record_bytes / (4u << 20) * 1000);
        if (r < 0) {
                r = diode_channel_problem(r, id, p);
                goto cleanup;
        }
        if (strcmp(json_string_value(json_object_get(w.answer, "type")) ?: "", "record-end")) {
                r = diode_agent_problem(w.answer, id, p);
                goto cleanup;
        }
        size = (uint64_t)json_integer_value(json_object_get(w.answer, "size"));
        if (!w.record || w.failed || w.spooled != size ||
            diode_record_check(w.record, pk, why, sizeof(why)) < 0) {
                if (!w.record || w.failed || w.spooled != size)
                        snprintf(why, sizeof(why),
                                 "came back incomplete (%" PRIu64 " of %" PRIu64 " bytes)",
                                 w.spooled, size);
                r = vms_problem(p, -EPROTO, "bad-record", "VM '%s': record %" PRIu64 " %s", id, seq,
                                why);
                goto cleanup;
        }
        /* the bytes are passed on as they came: the reader checks them against the hash (a
         * tampered asset is the fleet's evidence, not something to hide here) */
        *ret_record = json_incref(w.record);
        json_object_del(*ret_record, "v");
        json_object_del(*ret_record, "type");
        json_object_del(*ret_record, "request_id");
        json_object_set_new(*ret_record, "vm", json_string(id));
        r = 0;
cleanup:
        diode_wait_done(&w);
        return r;
}
