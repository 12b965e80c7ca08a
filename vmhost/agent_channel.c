/* The agent channels: one unix socket per VM, bound by QEMU under state_dir/channels (mode
 * 0700, the helper's user's): the helper connects it and passes the descriptor up (VMH_FILE,
 * the vmd way), when the domain starts and every two seconds while it runs and is not
 * connected (the helper derives the path from the VM id, as it does in the domain XML; vmhost,
 * unprivileged, could not open it and names no path). I/O runs on the
 * channels' own poll thread (chan_main). Lines longer than
 * AGENT_LINE_MAX are discarded to their newline; malformed lines are counted and dropped;
 * reports go through agent_verify.c. The pinned key and the last accepted tree head are written
 * back to the domain metadata by the refresher thread (agent_chan_take_meta). */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

#define CHAN_RETRY_MS 2000

struct agent_chan;
static void chan_handle_line(struct vmhost *vh, struct agent_chan *c, const char *line, size_t len);

struct agent_chan {
        struct agent_chan *next;
        char id[VM_ID_MAX + 1];
        int fd;
        bool running;
        struct diode_decoder dec; /* lines, and the data frames of record reads */
        uint64_t gen;             /* connections so far: a Diode transfer is tied to one */
        pthread_mutex_t wlock;    /* one writer at a time: a frame is never cut by a line */
        char *pending;            /* lines that found wlock taken, sent when it is released */
        size_t pending_len;
        struct diode_wait *waits; /* Diode requests waiting for their answers */
        struct integrity in;
        bool meta_dirty;
        bool refresh_wanted; /* the witness state changed: the inventory shows it */
        uint64_t lines, last_report_ms;
        json_t *last_report;
        /* the last report answering a verify-request: a scheduled report may follow it before
         * fleetd next reads the inventory, so it is kept apart */
        uint64_t last_requested_ms;
        json_t *last_requested;
};

static struct agent_chan *chan_find(struct vmhost *vh, const char *id)
{
        for (struct agent_chan *c = vh->chans; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

static struct agent_chan *chan_get(struct vmhost *vh, const char *id)
{
        struct agent_chan *c = chan_find(vh, id);

        if (c || !ident_valid(IDENT_VM, id))
                return c;
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        if (diode_decoder_init(&c->dec, AGENT_LINE_MAX) < 0) {
                free(c);
                return NULL;
        }
        pthread_mutex_init(&c->wlock, NULL);
        snprintf(c->id, sizeof(c->id), "%s", id);
        c->fd = -1;
        integrity_init(&c->in);
        c->in.signer = vh->have_witness ? &vh->witness : NULL;
        c->next = vh->chans;
        vh->chans = c;
        return c;
}

/* Keeps a line for after the Diode transfer that holds the channel (with state_lock held). */
static void chan_keep_pending(struct agent_chan *c, const char *text, size_t n)
{
        char *p = realloc(c->pending, c->pending_len + n);

        if (!p || c->pending_len + n > AGENT_LINE_MAX * 4) {
                log_warn("VM '%s': a request to the agent was not sent: the channel is busy",
                         c->id);
                if (p)
                        c->pending = p;
                return;
        }
        memcpy(p + c->pending_len, text, n);
        c->pending = p;
        c->pending_len += n;
}

/* With state_lock held; never blocks: a line that finds a transfer writing waits for it. */
static void chan_send(struct agent_chan *c, json_t *msg)
{
        char *text = json_dumps(msg, JSON_COMPACT);
        size_t n = text ? strlen(text) : 0;

        if (text && c->fd >= 0) {
                text[n] = '\n'; /* replaces the NUL; length is n + 1 */
                if (pthread_mutex_trylock(&c->wlock) != 0)
                        chan_keep_pending(c, text, n + 1);
                else {
                        if (send(c->fd, text, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) !=
                            (ssize_t)(n + 1))
                                log_warn("VM '%s': a request to the agent was not sent: %s", c->id,
                                         strerror(errno));
                        pthread_mutex_unlock(&c->wlock);
                }
        }
        free(text);
        json_decref(msg);
}

static void chan_ask_proof(struct agent_chan *c, enum verify_action a)
{
        if (a == VERIFY_NEED_CONSISTENCY)
                chan_send(c, json_pack("{s:i, s:s, s:s, s:I, s:I}", "v", 1, "type",
                                       "consistency-request", "request_id", c->in.pending_id,
                                       "from_size", (json_int_t)c->in.sth.size, "to_size",
                                       (json_int_t)c->in.pending_sth.size));
        else if (a == VERIFY_NEED_FLEET_PROOF)
                chan_send(c, json_pack("{s:i, s:s, s:s, s:I, s:I}", "v", 1, "type",
                                       "consistency-request", "request_id", c->in.fleet_rid,
                                       "from_size", (json_int_t)c->in.fleet_size, "to_size",
                                       (json_int_t)c->in.sth.size));
}

static void chan_on_report(struct vmhost *vh, struct agent_chan *c, const struct agent_msg *m,
                           const char *line, size_t len)
{
        size_t before = json_array_size(c->in.mismatches);
        enum verify_action a = integrity_on_report(&c->in, m, clock_realtime_ms());

        json_decref(c->last_report);
        c->last_report = json_loadb(line, len, 0, NULL);
        c->last_report_ms = clock_realtime_ms();
        if (c->last_report && m->request_id[0]) {
                json_decref(c->last_requested);
                c->last_requested = json_incref(c->last_report);
                c->last_requested_ms = c->last_report_ms;
        }
        if (c->in.key_pinned_now)
                log_info("VM '%s': vault key pinned at its first report (trust on first use)",
                         c->id);
        if (c->in.key_pinned_now || c->in.sth_accepted_now)
                c->meta_dirty = true;
        if (json_array_size(c->in.mismatches) > before)
                log_warn("VM '%s': integrity mismatch '%s'", c->id,
                         json_string_value(
                             json_object_get(json_array_get(c->in.mismatches, before), "kind")));
        chan_ask_proof(c, a);
}

/* Mismatches are kept across vmhost restarts: state_dir/integrity/ID.json; the witness state
 * (the cosigned checkpoint and the refused ones) in ID.witness.json. */
static char *chan_integrity_path(struct vmhost *vh, const char *id)
{
        char *p = NULL;

        return asprintf(&p, "%s/integrity/%s.json", vh->cfg.state_dir, id) < 0 ? NULL : p;
}

static char *chan_witness_path(struct vmhost *vh, const char *id)
{
        char *p = NULL;

        return asprintf(&p, "%s/integrity/%s.witness.json", vh->cfg.state_dir, id) < 0 ? NULL : p;
}

/* o into path through path.tmp and a rename. */
static int chan_dump(json_t *o, const char *path)
{
        char *tmp = NULL;
        int r;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        r = json_dump_file(o, tmp, JSON_COMPACT) == 0 && rename(tmp, path) == 0 ? 0 : -EIO;
        free(tmp);
        return r;
}

static void chan_save_witness(struct vmhost *vh, struct agent_chan *c)
{
        char *path = chan_witness_path(vh, c->id);
        json_t *o = integrity_witness_save(&c->in);

        if (path && o && chan_dump(o, path) < 0)
                log_warn("VM '%s': cannot keep its witness state in '%s'", c->id, path);
        json_decref(o);
        free(path);
}

static void chan_load_witness(struct vmhost *vh, struct agent_chan *c)
{
        char *path = chan_witness_path(vh, c->id);
        json_t *o = path ? json_load_file(path, JSON_REJECT_DUPLICATES, NULL) : NULL;

        if (json_is_object(o))
                integrity_witness_load(&c->in, o);
        json_decref(o);
        free(path);
}

static void chan_save_mismatches(struct vmhost *vh, struct agent_chan *c)
{
        char *path = chan_integrity_path(vh, c->id);

        if (path && chan_dump(c->in.mismatches, path) < 0)
                log_warn("VM '%s': cannot keep its mismatches in '%s'", c->id, path);
        free(path);
}

static void chan_load_mismatches(struct vmhost *vh, struct agent_chan *c)
{
        char *path = chan_integrity_path(vh, c->id);
        json_t *a = path ? json_load_file(path, JSON_REJECT_DUPLICATES, NULL) : NULL;

        if (json_is_array(a)) {
                json_decref(c->in.mismatches);
                c->in.mismatches = json_incref(a);
        }
        json_decref(a);
        free(path);
}

static void chan_on_line(struct vmhost *vh, struct agent_chan *c, const char *line, size_t len)
{
        size_t before = json_array_size(c->in.mismatches);

        c->in.witness_changed = false;
        chan_handle_line(vh, c, line, len);
        if (json_array_size(c->in.mismatches) != before)
                chan_save_mismatches(vh, c);
        if (c->in.witness_changed) {
                chan_save_witness(vh, c);
                c->refresh_wanted = true;
        }
}

static struct diode_wait *chan_wait_find(struct agent_chan *c, const char *request_id)
{
        for (struct diode_wait *w = c->waits; w; w = w->next)
                if (strcmp(w->request_id, request_id) == 0)
                        return w;
        return NULL;
}

/* An answer to a Diode request goes to its waiter (1); a Diode answer nobody waits for any more
 * (it timed out) is dropped (1); anything else is not the Diode's (0). */
static int chan_diode_line(struct agent_chan *c, const char *line, size_t len)
{
        static const char *const types[] = {"deposit-ready", "deposit-receipt", "record",
                                            "record-end",    "record-list",     NULL};
        json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
        const char *type = json_string_value(json_object_get(o, "type"));
        const char *rid = json_string_value(json_object_get(o, "request_id"));
        struct diode_wait *w = rid ? chan_wait_find(c, rid) : NULL;
        bool diode_type = false;

        for (int i = 0; type && types[i]; i++)
                diode_type = diode_type || !strcmp(type, types[i]);
        /* the Diode's errors carry a code; the reports' do not */
        diode_type = diode_type || (type && !strcmp(type, "error") && json_object_get(o, "code"));
        if (!w || !json_is_object(o)) {
                json_decref(o);
                return diode_type;
        }
        if (!strcmp(type ? type : "", "record")) {
                json_decref(w->record);
                w->record = o;
                return 1;
        }
        json_decref(w->answer);
        w->answer = o;
        w->done = true;
        pthread_cond_broadcast(&w->cond);
        return 1;
}

static void chan_handle_line(struct vmhost *vh, struct agent_chan *c, const char *line, size_t len)
{
        struct agent_msg m;
        char err[256];

        c->lines++;
        if (chan_diode_line(c, line, len))
                return;
        if (agent_line_parse(line, len, &m, err, sizeof(err)) < 0) {
                c->in.malformed++;
                log_warn("VM '%s': malformed agent line dropped: %s", c->id, err);
                return;
        }
        if (m.type == AGENT_MSG_REPORT)
                chan_on_report(vh, c, &m, line, len);
        else if (m.type == AGENT_MSG_CONSISTENCY) {
                c->in.sth_accepted_now = false;
                chan_ask_proof(c, integrity_on_consistency(&c->in, &m, clock_realtime_ms()));
                c->meta_dirty = c->meta_dirty || c->in.sth_accepted_now;
        } else
                log_warn("VM '%s': agent error: %s", c->id, m.detail);
        agent_msg_clear(&m);
}

struct chan_feed {
        struct vmhost *vh;
        struct agent_chan *c;
};

static void chan_feed_line(void *ctx, const char *line, size_t len)
{
        struct chan_feed *f = ctx;

        if (!line)
                f->c->in.malformed++; /* over-long: dropped up to its newline */
        else
                chan_on_line(f->vh, f->c, line, len);
}

/* A piece of a record being read: into its waiter's spool file, within the announced size. */
static void chan_feed_data(void *ctx, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                           bool last)
{
        struct chan_feed *f = ctx;
        struct diode_wait *w = chan_wait_find(f->c, id);

        (void)last;
        if (!w || w->spool_fd < 0 || w->failed)
                return;
        if (offset > w->spool_max || n > w->spool_max - offset ||
            pwrite(w->spool_fd, p, n, (off_t)offset) != (ssize_t)n) {
                w->failed = true;
                return;
        }
        if (offset + n > w->spooled)
                w->spooled = offset + n;
}

static void chan_feed_bad(void *ctx, const char *why)
{
        struct chan_feed *f = ctx;

        f->c->in.malformed++;
        log_warn("VM '%s': %s from the agent; dropped", f->c->id, why);
}

static const struct diode_frame_ops chan_frame_ops = {
    .line = chan_feed_line, .data = chan_feed_data, .bad = chan_feed_bad};

static void chan_consume(struct vmhost *vh, struct agent_chan *c, const char *data, size_t n)
{
        struct chan_feed f = {vh, c};

        diode_decoder_feed(&c->dec, (const uint8_t *)data, n, &chan_frame_ops, &f);
}

static void chan_close(struct agent_chan *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        diode_decoder_reset(&c->dec);
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
        for (struct diode_wait *w = c->waits; w; w = w->next) {
                w->dropped = true;
                pthread_cond_broadcast(&w->cond);
        }
}

/* Reads what arrived on fd (with state_lock held: the channel may close meanwhile). */
static bool chan_io(struct vmhost *vh, int fd)
{
        static char data[8192]; /* guarded by state_lock, which every caller holds */
        struct agent_chan *c;
        ssize_t n;
        bool dirty;

        for (c = vh->chans; c && c->fd != fd; c = c->next)
                ;
        if (!c)
                return false;
        n = read(fd, data, sizeof(data));
        if (n > 0)
                chan_consume(vh, c, data, (size_t)n);
        else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                log_info("VM '%s': agent channel closed", c->id);
                chan_close(c);
        }
        dirty = c->meta_dirty || c->refresh_wanted;
        c->refresh_wanted = false;
        return dirty;
}

static void chan_wake(struct vmhost *vh)
{
        if (vh->chan_up && write(vh->chan_wake[1], "", 1) < 0 && errno != EAGAIN)
                log_debug("agent channels: cannot wake the poll loop: %s", strerror(errno));
}

/* Installs fd as id's connection when the VM still runs and has none (state_lock held). */
static void chan_install(struct vmhost *vh, const char *id, int fd)
{
        struct agent_chan *c = chan_find(vh, id);

        if (!c || !c->running || c->fd >= 0) {
                close(fd);
                return;
        }
        c->fd = fd;
        c->gen++;
        log_info("VM '%s': agent channel connected", c->id);
}

/* Asks the helper for the channels of running VMs that are not connected: the ids are taken
 * under state_lock, the helper is called without it (it is never held across a helper call),
 * and only when no other call holds the helper (a long managed save must not stop the loop:
 * the next round tries again). */
static void chan_retry(struct vmhost *vh)
{
        char(*ids)[VM_ID_MAX + 1] = NULL;
        size_t n = 0, cap = 0;

        pthread_mutex_lock(&vh->state_lock);
        for (struct agent_chan *c = vh->chans; c; c = c->next)
                cap += c->running && c->fd < 0;
        ids = cap ? calloc(cap, sizeof(*ids)) : NULL;
        for (struct agent_chan *c = vh->chans; ids && c && n < cap; c = c->next)
                if (c->running && c->fd < 0)
                        snprintf(ids[n++], sizeof(ids[0]), "%s", c->id);
        pthread_mutex_unlock(&vh->state_lock);
        for (size_t i = 0; i < n; i++) {
                int fd = -1;

                if (vmh_file(vh, VMH_FILE_CHANNEL, ids[i], true, &fd) < 0)
                        continue;
                pthread_mutex_lock(&vh->state_lock);
                chan_install(vh, ids[i], fd);
                pthread_mutex_unlock(&vh->state_lock);
        }
        free(ids);
}

/* The channels' poll loop: what each connected channel reads, and every CHAN_RETRY_MS (or when
 * a domain started) the connects of running VMs whose channel is not connected yet. */
static void *chan_main(void *arg)
{
        struct vmhost *vh = arg;
        uint64_t next = clock_monotonic_ms() + CHAN_RETRY_MS;
        struct pollfd *pfd = NULL;
        size_t cap = 0;

        while (!atomic_load(&vh->stopping)) {
                uint64_t now = clock_monotonic_ms();
                size_t n = 1;
                bool dirty = false;
                char drain[64];
                bool retry;

                pthread_mutex_lock(&vh->state_lock);
                retry = now >= next || vh->chan_retry_now;
                vh->chan_retry_now = false;
                pthread_mutex_unlock(&vh->state_lock);
                if (retry) {
                        chan_retry(vh);
                        now = clock_monotonic_ms();
                        next = now + CHAN_RETRY_MS;
                }
                pthread_mutex_lock(&vh->state_lock);
                for (struct agent_chan *c = vh->chans; c; c = c->next)
                        n += c->fd >= 0;
                if (n > cap) {
                        struct pollfd *p = realloc(pfd, n * sizeof(*pfd));

                        if (p) {
                                pfd = p;
                                cap = n;
                        }
                }
                n = 0;
                if (cap > 0)
                        pfd[n++] = (struct pollfd){.fd = vh->chan_wake[0], .events = POLLIN};
                for (struct agent_chan *c = vh->chans; c && n < cap; c = c->next)
                        if (c->fd >= 0)
                                pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLIN};
                pthread_mutex_unlock(&vh->state_lock);
                if (n == 0 || poll(pfd, n, (int)(next - now)) <= 0)
                        continue;
                if (pfd[0].revents)
                        while (read(vh->chan_wake[0], drain, sizeof(drain)) > 0)
                                ;
                pthread_mutex_lock(&vh->state_lock);
                for (size_t i = 1; i < n; i++)
                        if (pfd[i].revents)
                                dirty = chan_io(vh, pfd[i].fd) || dirty;
                pthread_mutex_unlock(&vh->state_lock);
                if (dirty)
                        virt_request_refresh(vh);
        }
        free(pfd);
        return NULL;
}

void agent_chan_domain_started(struct vmhost *vh, const char *id)
{
        struct agent_chan *c;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_get(vh, id);
        if (c) {
                c->running = true;
                vh->chan_retry_now = true; /* the loop asks the helper, now */
                chan_wake(vh);
        }
        pthread_mutex_unlock(&vh->state_lock);
}

void agent_chan_domain_stopped(struct vmhost *vh, const char *id)
{
        struct agent_chan *c;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c) {
                c->running = false;
                chan_close(c);
        }
        pthread_mutex_unlock(&vh->state_lock);
}

void agent_chan_sync(struct vmhost *vh, const char *id, const struct vm_meta *m, bool running)
{
        struct agent_chan *c;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (!c && (c = chan_get(vh, id))) {
                c->in.has_key = m->has_vault_key;
                memcpy(c->in.key, m->vault_key, sizeof(c->in.key));
                c->in.has_sth = m->has_sth;
                c->in.sth.size = m->sth_size;
                memcpy(c->in.sth.root, m->sth_root, sizeof(c->in.sth.root));
                c->in.sth.time_ms = m->sth_time_ms;
                chan_load_mismatches(vh, c);
                chan_load_witness(vh, c);
        }
        if (c) {
                c->running = running;
                if (!running && c->fd >= 0)
                        chan_close(c);
        }
        pthread_mutex_unlock(&vh->state_lock);
}

bool agent_chan_take_meta(struct vmhost *vh, const char *id, struct vm_meta *m)
{
        struct agent_chan *c;
        bool dirty = false;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c && c->meta_dirty) {
                dirty = true;
                c->meta_dirty = false;
                m->has_vault_key = c->in.has_key;
                memcpy(m->vault_key, c->in.key, sizeof(m->vault_key));
                m->has_sth = c->in.has_sth;
                m->sth_size = c->in.sth.size;
                memcpy(m->sth_root, c->in.sth.root, sizeof(m->sth_root));
                m->sth_time_ms = c->in.sth.time_ms;
        }
        pthread_mutex_unlock(&vh->state_lock);
        return dirty;
}

json_t *agent_chan_integrity(struct vmhost *vh, const char *id)
{
        struct agent_chan *c;
        json_t *o = NULL;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c)
                o = integrity_to_json(&c->in);
        pthread_mutex_unlock(&vh->state_lock);
        return o;
}

json_t *agent_chan_status(struct vmhost *vh, const char *id)
{
        struct agent_chan *c;
        json_t *o = NULL;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c)
                o = json_pack("{s:b, s:I, s:I, s:I, s:O?}", "connected", c->fd >= 0, "lines",
                              (json_int_t)c->lines, "malformed", (json_int_t)c->in.malformed,
                              "reports", (json_int_t)c->in.reports, "last_report", c->last_report);
        if (o) {
                json_object_set_new(o, "last_report_ms",
                                    c->last_report_ms ? json_integer((json_int_t)c->last_report_ms)
                                                      : json_null());
                json_object_set(o, "last_requested_report",
                                c->last_requested ? c->last_requested : json_null());
                json_object_set_new(o, "last_requested_report_ms",
                                    c->last_requested_ms
                                        ? json_integer((json_int_t)c->last_requested_ms)
                                        : json_null());
        }
        pthread_mutex_unlock(&vh->state_lock);
        return o;
}

int agent_chan_request_verify(struct vmhost *vh, const char *id, char *ret_request_id, size_t size)
{
        struct agent_chan *c;
        uint8_t raw[8];
        char rid[17];
        int r = -ENOTCONN;

        randombytes_buf(raw, sizeof(raw));
        for (int i = 0; i < 8; i++)
                snprintf(rid + 2 * i, 3, "%02x", raw[i]);
        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c && c->fd >= 0) {
                chan_send(c, json_pack("{s:i, s:s, s:s}", "v", 1, "type", "verify-request",
                                       "request_id", rid));
                snprintf(ret_request_id, size, "%s", rid);
                r = 0;
        }
        pthread_mutex_unlock(&vh->state_lock);
        return r;
}

int agent_chan_fleet_note(struct vmhost *vh, const char *id, const char *body, size_t len,
                          json_t **ret)
{
        struct agent_chan *c;
        enum verify_action a;
        int r = -ENOENT;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c) {
                a = integrity_on_fleet_note(&c->in, body, len, &r);
                if (r == 0) {
                        chan_ask_proof(c, a);
                        *ret = integrity_to_json(&c->in);
                }
        }
        pthread_mutex_unlock(&vh->state_lock);
        if (r == 0)
                virt_request_refresh(vh);
        return r;
}

int agent_chan_start(struct vmhost *vh)
{
        int r;

        if (pipe2(vh->chan_wake, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        vh->chan_up = true;
        r = pthread_create(&vh->chan_thread, NULL, chan_main, vh);
        if (r != 0) {
                vh->chan_up = false;
                close(vh->chan_wake[0]);
                close(vh->chan_wake[1]);
        }
        return -r;
}

void agent_chan_stop(struct vmhost *vh)
{
        struct agent_chan *c, *next;

        if (vh->chan_up) {
                atomic_store(&vh->stopping, true);
                chan_wake(vh);
                pthread_join(vh->chan_thread, NULL);
                vh->chan_up = false;
                close(vh->chan_wake[0]);
                close(vh->chan_wake[1]);
                vh->chan_wake[0] = vh->chan_wake[1] = -1;
        }
        pthread_mutex_lock(&vh->state_lock);
        for (c = vh->chans; c; c = next) {
                next = c->next;
                chan_close(c);
                integrity_clear(&c->in);
                json_decref(c->last_report);
                json_decref(c->last_requested);
                diode_decoder_done(&c->dec);
                pthread_mutex_destroy(&c->wlock);
                free(c);
        }
        vh->chans = NULL;
        pthread_mutex_unlock(&vh->state_lock);
}

/* ---- the Diode's use of a channel (vmhost/diode.c) ---- */

int agent_chan_wait_add(struct vmhost *vh, const char *id, struct diode_wait *w)
{
        struct agent_chan *c;
        int r = -ENOTCONN;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c && c->fd >= 0 && !chan_wait_find(c, w->request_id)) {
                w->gen = c->gen;
                w->next = c->waits;
                c->waits = w;
                r = 0;
        }
        pthread_mutex_unlock(&vh->state_lock);
        return r;
}

void agent_chan_wait_remove(struct vmhost *vh, const char *id, struct diode_wait *w)
{
        struct agent_chan *c;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        for (struct diode_wait **pp = c ? &c->waits : NULL; pp && *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        pthread_mutex_unlock(&vh->state_lock);
}

int agent_chan_wait(struct vmhost *vh, struct diode_wait *w, uint64_t deadline_mono_ms)
{
        int r = 0;

        pthread_mutex_lock(&vh->state_lock);
        while (!w->done && !w->dropped) {
                uint64_t now = clock_monotonic_ms();
                struct timespec ts;

                if (now >= deadline_mono_ms) {
                        r = -ETIMEDOUT;
                        break;
                }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += (time_t)((deadline_mono_ms - now) / 1000);
                ts.tv_nsec += (long)((deadline_mono_ms - now) % 1000) * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&w->cond, &vh->state_lock, &ts);
        }
        if (r == 0 && !w->done)
                r = -ECONNRESET;
        pthread_mutex_unlock(&vh->state_lock);
        return r;
}

int agent_chan_write_begin(struct vmhost *vh, const char *id, uint64_t gen, int *ret_fd)
{
        struct agent_chan *c;
        int fd = -1;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        if (c && c->fd >= 0 && c->gen == gen)
                fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
        pthread_mutex_unlock(&vh->state_lock);
        if (fd < 0)
                return -ECONNRESET;
        pthread_mutex_lock(&c->wlock); /* chans are freed only at shutdown */
        *ret_fd = fd;
        return 0;
}

/* Takes the lines that waited for the writer; with wlock held. */
static char *chan_take_pending(struct vmhost *vh, struct agent_chan *c, size_t *ret_len)
{
        char *p;

        pthread_mutex_lock(&vh->state_lock);
        p = c->pending;
        *ret_len = c->pending_len;
        c->pending = NULL;
        c->pending_len = 0;
        pthread_mutex_unlock(&vh->state_lock);
        return p;
}

void agent_chan_write_end(struct vmhost *vh, const char *id, int fd)
{
        struct agent_chan *c;
        size_t n = 0;
        char *p;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_find(vh, id);
        pthread_mutex_unlock(&vh->state_lock);
        if (!c)
                return;
        p = chan_take_pending(vh, c, &n);
        if (p && send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n)
                log_warn("VM '%s': requests held during a transfer were not all sent", id);
        free(p);
        close(fd);
        pthread_mutex_unlock(&c->wlock);
}
