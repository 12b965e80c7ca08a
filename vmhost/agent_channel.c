/* The agent channels: one unix socket per VM, bound by QEMU under state_dir/channels (mode
 * 0700, so only vmhost's user can open it), connected by vmhost when the domain starts and
 * retried every two seconds while it runs. I/O runs on libvirt's event loop. Lines longer than
 * AGENT_LINE_MAX are discarded to their newline; malformed lines are counted and dropped;
 * reports go through agent_verify.c. The pinned key and the last accepted tree head are written
 * back to the domain metadata by the refresher thread (agent_chan_take_meta). */
#include <errno.h>
#include <libvirt/libvirt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vmhost/vmhost.h"

#define CHAN_RETRY_MS 2000

struct agent_chan;
static void chan_handle_line(struct vmhost *vh, struct agent_chan *c, const char *line, size_t len);

struct agent_chan {
        struct agent_chan *next;
        char id[VM_ID_MAX + 1];
        int fd;
        int watch;
        bool running;
        char *buf; /* AGENT_LINE_MAX + 1 */
        size_t len;
        bool discarding;
        struct integrity in;
        bool meta_dirty;
        uint64_t lines, last_report_ms;
        json_t *last_report;
        /* the last report answering a verify-request: a scheduled report may follow it before
         * fleetd next reads the inventory, so it is kept apart */
        uint64_t last_requested_ms;
        json_t *last_requested;
};

char *agent_chan_socket_path(const struct vmhost *vh, const char *id)
{
        char *p = NULL;

        if (asprintf(&p, "%s/channels/%s.sock", vh->cfg.state_dir, id) < 0)
                return NULL;
        return p;
}

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
        c->buf = malloc(AGENT_LINE_MAX + 1);
        if (!c->buf) {
                free(c);
                return NULL;
        }
        snprintf(c->id, sizeof(c->id), "%s", id);
        c->fd = -1;
        c->watch = -1;
        integrity_init(&c->in);
        c->next = vh->chans;
        vh->chans = c;
        return c;
}

static void chan_send(struct agent_chan *c, json_t *msg)
{
        char *text = json_dumps(msg, JSON_COMPACT);
        size_t n = text ? strlen(text) : 0;

        if (text && c->fd >= 0) {
                text[n] = '\n'; /* replaces the NUL; length is n + 1 */
                if (send(c->fd, text, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)(n + 1))
                        log_warn("VM '%s': a request to the agent was not sent: %s", c->id,
                                 strerror(errno));
        }
        free(text);
        json_decref(msg);
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
        if (a == VERIFY_NEED_CONSISTENCY)
                chan_send(c, json_pack("{s:i, s:s, s:s, s:I, s:I}", "v", 1, "type",
                                       "consistency-request", "request_id", c->in.pending_id,
                                       "from_size", (json_int_t)c->in.sth.size, "to_size",
                                       (json_int_t)c->in.pending_sth.size));
}

/* Mismatches are kept across vmhost restarts: state_dir/integrity/ID.json. */
static char *chan_integrity_path(struct vmhost *vh, const char *id)
{
        char *p = NULL;

        return asprintf(&p, "%s/integrity/%s.json", vh->cfg.state_dir, id) < 0 ? NULL : p;
}

static void chan_save_mismatches(struct vmhost *vh, struct agent_chan *c)
{
        char *path = chan_integrity_path(vh, c->id), tmp[4400];

        if (path) {
                snprintf(tmp, sizeof(tmp), "%s.tmp", path);
                if (json_dump_file(c->in.mismatches, tmp, JSON_COMPACT) != 0 ||
                    rename(tmp, path) != 0)
                        log_warn("VM '%s': cannot keep its mismatches in '%s'", c->id, path);
        }
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

        chan_handle_line(vh, c, line, len);
        if (json_array_size(c->in.mismatches) != before)
                chan_save_mismatches(vh, c);
}

static void chan_handle_line(struct vmhost *vh, struct agent_chan *c, const char *line, size_t len)
{
        struct agent_msg m;
        char err[256];

        c->lines++;
        if (agent_line_parse(line, len, &m, err, sizeof(err)) < 0) {
                c->in.malformed++;
                log_warn("VM '%s': malformed agent line dropped: %s", c->id, err);
                return;
        }
        if (m.type == AGENT_MSG_REPORT)
                chan_on_report(vh, c, &m, line, len);
        else if (m.type == AGENT_MSG_CONSISTENCY) {
                integrity_on_consistency(&c->in, &m, clock_realtime_ms());
                c->meta_dirty = c->meta_dirty || c->in.sth_accepted_now;
        } else
                log_warn("VM '%s': agent error: %s", c->id, m.detail);
        agent_msg_clear(&m);
}

/* Splits buf into lines; an over-long line is dropped up to its newline. */
static void chan_consume(struct vmhost *vh, struct agent_chan *c, const char *data, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (data[i] == '\n') {
                        if (c->discarding)
                                c->in.malformed++;
                        else if (c->len > 0)
                                chan_on_line(vh, c, c->buf, c->len);
                        c->len = 0;
                        c->discarding = false;
                } else if (c->len < AGENT_LINE_MAX) {
                        c->buf[c->len++] = data[i];
                } else {
                        c->discarding = true;
                }
        }
}

static void chan_close(struct agent_chan *c)
{
        if (c->watch >= 0)
                virEventRemoveHandle(c->watch);
        c->watch = -1;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        c->len = 0;
        c->discarding = false;
}

static void chan_io(int watch, int fd, int events, void *opaque)
{
        struct vmhost *vh = opaque;
        struct agent_chan *c;
        char data[8192];
        ssize_t n = read(fd, data, sizeof(data));
        bool dirty = false;

        pthread_mutex_lock(&vh->state_lock);
        for (c = vh->chans; c && c->watch != watch; c = c->next)
                ;
        if (c && n > 0)
                chan_consume(vh, c, data, (size_t)n);
        else if (c && (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))) {
                log_info("VM '%s': agent channel closed", c->id);
                chan_close(c);
        }
        dirty = c && c->meta_dirty;
        pthread_mutex_unlock(&vh->state_lock);
        if (dirty)
                virt_request_refresh(vh);
}

static void chan_connect(struct vmhost *vh, struct agent_chan *c)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char *path = agent_chan_socket_path(vh, c->id);
        int fd = -1;

        if (c->fd >= 0 || !path || strlen(path) >= sizeof(sa.sun_path))
                goto cleanup;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                goto cleanup;
        c->watch = virEventAddHandle(fd, VIR_EVENT_HANDLE_READABLE, chan_io, vh, NULL);
        if (c->watch < 0)
                goto cleanup;
        c->fd = fd;
        fd = -1;
        log_info("VM '%s': agent channel connected", c->id);
cleanup:
        if (fd >= 0)
                close(fd);
        free(path);
}

static void chan_timer(int timer, void *opaque)
{
        struct vmhost *vh = opaque;

        pthread_mutex_lock(&vh->state_lock);
        for (struct agent_chan *c = vh->chans; c; c = c->next)
                if (c->running && c->fd < 0)
                        chan_connect(vh, c);
        pthread_mutex_unlock(&vh->state_lock);
}

void agent_chan_domain_started(struct vmhost *vh, const char *id)
{
        struct agent_chan *c;

        pthread_mutex_lock(&vh->state_lock);
        c = chan_get(vh, id);
        if (c) {
                c->running = true;
                chan_connect(vh, c);
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

int agent_chan_start(struct vmhost *vh)
{
        vh->chan_timer = virEventAddTimeout(CHAN_RETRY_MS, chan_timer, vh, NULL);
        return vh->chan_timer < 0 ? -EIO : 0;
}

void agent_chan_stop(struct vmhost *vh)
{
        struct agent_chan *c, *next;

        if (vh->chan_timer >= 0)
                virEventRemoveTimeout(vh->chan_timer);
        vh->chan_timer = -1;
        pthread_mutex_lock(&vh->state_lock);
        for (c = vh->chans; c; c = next) {
                next = c->next;
                chan_close(c);
                integrity_clear(&c->in);
                json_decref(c->last_report);
                json_decref(c->last_requested);
                free(c->buf);
                free(c);
        }
        vh->chans = NULL;
        pthread_mutex_unlock(&vh->state_lock);
}
