/* Base images through the fleet: the operator's upload is staged under state_dir/images (a
 * partial file keyed by name and SHA-256, resumed at the offset it holds, checked against the
 * digest before anything is pushed), then pushed to each chosen node's vmhost over the node API
 * (GET and PUT /v1/images/{name}/upload), one worker thread a node, each resuming at the offset
 * the node says it holds and retrying a cut transfer. Progress is a push record per image
 * (bytes sent of total, per node) that GET /v1/images/{name}/push reads. A name a node already
 * holds with other content is refused before a byte moves. Base images are not vault data:
 * the staged copy is removed once every node of the push has the image. */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "common/small_file.h"
#include "fleetd/api.h"
#include "fleetd/store.h"

#define PUSH_RECORDS_MAX  64
#define PUSH_ATTEMPTS     6
#define PUSH_BACKOFF_MS   500
#define NODE_ANSWER_SMALL (64u * 1024)

enum push_state { PN_QUEUED, PN_SENDING, PN_DONE, PN_FAILED };
static const char *const push_state_names[] = {"queued", "sending", "done", "failed"};

struct push_node {
        char id[NODE_ID_MAX + 1];
        char address[INET_ADDRSTRLEN];
        enum push_state state;
        uint64_t offset;       /* what the node held when the last attempt began */
        uint64_t resumed_from; /* the first attempt's offset: > 0 when a cut push resumed */
        uint64_t sent;         /* bytes sent by this push (all attempts) */
        unsigned attempts;
        char error[REASON_MAX];
};

struct image_push {
        char name[IDENT_IMAGE_MAX + 1];
        char sha256[IMAGE_TRANSFER_HEX_LEN + 1];
        uint64_t size;
        char staged[4400];
        char actor[64];
        uint64_t started_ms, finished_ms; /* wall clock; finished 0 while running */
        unsigned running;                 /* worker threads still at it */
        size_t n_nodes;
        struct push_node *nodes;
};

struct fleet_images {
        pthread_mutex_t lock; /* guards the records; taken before f->lock, never after */
        pthread_cond_t idle;
        struct image_push *pushes[PUSH_RECORDS_MAX];
        size_t n;
        unsigned threads;
        bool stopping;
};

struct push_job {
        struct fleetd *f;
        struct image_push *push;
        size_t node;
};

/* The connection state of one streamed upload (PUT /v1/images/{name}/upload). */
struct image_stage {
        struct fleetd *f;
        struct image_partial part;
        bool staged; /* the complete, checked file was already there: no body */
        char name[IDENT_IMAGE_MAX + 1];
        char sha256[IMAGE_TRANSFER_HEX_LEN + 1];
        uint64_t size;
        char actor[64];
        size_t n_targets;
        char (*targets)[NODE_ID_MAX + 1];
        int fail_err; /* why the bytes could not be staged (0: they could) */
        char fail_detail[256];
};

static void images_dir(const struct fleetd *f, char *buf, size_t size)
{
        snprintf(buf, size, "%s/images", f->cfg.state_dir);
}

static void images_staged_path(const struct fleetd *f, const char *name, const char *hex, char *buf,
                               size_t size)
{
        snprintf(buf, size, "%s/images/.staged-%s-%s", f->cfg.state_dir, name, hex);
}

/* The staging directory and a staged file's path: 8.6 KiB, malloc'd rather than in a frame. */
#define IMAGES_STAGED_MAX 4400
struct images_paths {
        char dir[4200], staged[IMAGES_STAGED_MAX];
};

int images_start(struct fleetd *f)
{
        char *dir;
        int r = 0;

        f->images = calloc(1, sizeof(*f->images));
        if (!f->images)
                return -ENOMEM;
        pthread_mutex_init(&f->images->lock, NULL);
        pthread_cond_init(&f->images->idle, NULL);
        dir = small_file_path(f->cfg.state_dir, "images");
        if (!dir)
                return -ENOMEM;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                log_error("cannot create the image staging directory '%s': %s", dir, strerror(-r));
        }
        free(dir);
        return r;
}

static void images_push_free(struct image_push *p)
{
        if (p)
                free(p->nodes);
        free(p);
}

void images_stop(struct fleetd *f)
{
        struct fleet_images *im = f->images;

        if (!im)
                return;
        pthread_mutex_lock(&im->lock);
        im->stopping = true; /* the workers' progress callbacks abort their transfers */
        while (im->threads > 0)
                pthread_cond_wait(&im->idle, &im->lock);
        pthread_mutex_unlock(&im->lock);
        for (size_t i = 0; i < im->n; i++)
                images_push_free(im->pushes[i]);
        pthread_cond_destroy(&im->idle);
        pthread_mutex_destroy(&im->lock);
        free(im);
        f->images = NULL;
}

/* Under im->lock. */
static struct image_push *images_find_push(struct fleet_images *im, const char *name)
{
        for (size_t i = 0; i < im->n; i++)
                if (strcmp(im->pushes[i]->name, name) == 0)
                        return im->pushes[i];
        return NULL;
}

static json_t *images_push_json(const struct image_push *p)
{
        json_t *nodes = json_array();
        char started[40], finished[40] = "";
        uint64_t done = 0;

        for (size_t i = 0; i < p->n_nodes; i++) {
                const struct push_node *n = &p->nodes[i];

                done += n->state == PN_DONE;
                json_array_append_new(
                    nodes,
                    json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:s?}", "node", n->id, "state",
                              push_state_names[n->state], "bytes_sent", (json_int_t)n->sent,
                              "offset", (json_int_t)n->offset, "resumed_from",
                              (json_int_t)n->resumed_from, "total", (json_int_t)p->size, "attempts",
                              (int)n->attempts, "error", n->error[0] ? n->error : NULL));
        }
        clock_format_rfc3339(p->started_ms, started, sizeof(started));
        if (p->finished_ms)
                clock_format_rfc3339(p->finished_ms, finished, sizeof(finished));
        return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s?, s:s, s:I, s:o}", "name", p->name,
                         "sha256", p->sha256, "size", (json_int_t)p->size, "actor", p->actor,
                         "started_at", started, "finished_at", finished[0] ? finished : NULL,
                         "state",
                         p->running           ? "running"
                         : done == p->n_nodes ? "done"
                                              : "failed",
                         "nodes_done", (json_int_t)done, "nodes", nodes);
}

/* Under f->lock: what node n says it holds under name (0, with its digest), -ENOENT, or
 * -ENODATA when it never reported its images (a vmhost without image reports). */
static int images_node_holds(const struct fleet_node *n, const char *name, const char **ret_sha256)
{
        if (!n->images)
                return -ENODATA;
        for (size_t i = 0; i < json_array_size(n->images); i++) {
                json_t *e = json_array_get(n->images, i);

                if (strcmp(json_string_value(json_object_get(e, "name")) ?: "", name) == 0) {
                        *ret_sha256 = json_string_value(json_object_get(e, "sha256")) ?: "";
                        return 0;
                }
        }
        return -ENOENT;
}

int fleet_node_image(const struct fleet_node *n, const char *name)
{
        const char *sha = NULL;
        int r = images_node_holds(n, name, &sha);

        return r == 0 ? 1 : r == -ENODATA ? -1 : 0;
}

bool fleet_image_anywhere(struct fleetd *f, const char *name)
{
        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++) {
                const struct fleet_node *n = &f->table.nodes[i];
                int has = fleet_node_image(n, name);

                /* a node never heard from says nothing; one that never lists images might */
                if (has > 0 || (has < 0 && n->seen))
                        return true;
        }
        return false;
}

/* Under f->lock: the image arrived on a node (before its next inventory says so). */
static void images_node_add(struct fleet_node *n, const char *name, const char *sha, uint64_t size)
{
        const char *have = NULL;

        if (images_node_holds(n, name, &have) == 0)
                return;
        if (!n->images)
                n->images = json_array();
        json_array_append_new(n->images, json_pack("{s:s, s:s, s:I}", "name", name, "sha256", sha,
                                                   "size", (json_int_t)size));
}

json_t *images_fleet_list(struct fleetd *f)
{
        json_t *by = json_object(), *out = json_array(), *pushes = json_array(), *v;
        const char *key;

        pthread_mutex_lock(&f->images->lock);
        for (size_t i = 0; i < f->images->n; i++)
                json_array_append_new(pushes, images_push_json(f->images->pushes[i]));
        pthread_mutex_unlock(&f->images->lock);
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; f->table.roster && i < f->table.roster->n_nodes; i++) {
                const struct fleet_node *n = &f->table.nodes[i];

                for (size_t k = 0; k < json_array_size(n->images); k++) {
                        json_t *e = json_array_get(n->images, k);
                        const char *name = json_string_value(json_object_get(e, "name"));
                        const char *sha = json_string_value(json_object_get(e, "sha256"));
                        char id[IDENT_IMAGE_MAX + IMAGE_TRANSFER_HEX_LEN + 2];
                        json_t *entry;

                        snprintf(id, sizeof(id), "%s %s", name, sha);
                        entry = json_object_get(by, id);
                        if (!entry) {
                                entry = json_pack("{s:s, s:s, s:O, s:[]}", "name", name, "sha256",
                                                  sha, "size", json_object_get(e, "size"), "nodes");
                                json_object_set_new(by, id, entry);
                        }
                        json_array_append_new(json_object_get(entry, "nodes"),
                                              json_string(n->rn->id));
                }
        }
        pthread_mutex_unlock(&f->lock);
        json_object_foreach(by, key, v) json_array_append(out, v); /* sorted: name, then digest */
        json_decref(by);
        return json_pack("{s:o, s:o}", "images", out, "pushes", pushes);
}

json_t *images_push_get(struct fleetd *f, const char *name)
{
        struct image_push *p;
        json_t *o = NULL;

        pthread_mutex_lock(&f->images->lock);
        p = images_find_push(f->images, name);
        if (p)
                o = images_push_json(p);
        pthread_mutex_unlock(&f->images->lock);
        return o;
}

/* ---- the push workers ---- */

static int images_progress(void *arg, uint64_t sent)
{
        struct push_job *j = arg;
        struct fleet_images *im = j->f->images;
        struct push_node *n = &j->push->nodes[j->node];
        bool stop;

        pthread_mutex_lock(&im->lock);
        n->sent += sent;
        stop = im->stopping;
        pthread_mutex_unlock(&im->lock);
        return stop ? -ECANCELED : 0;
}

static void images_node_fail(struct push_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void images_node_fail(struct push_job *j, const char *fmt, ...)
{
        struct push_node *n = &j->push->nodes[j->node];
        va_list ap;

        pthread_mutex_lock(&j->f->images->lock);
        va_start(ap, fmt);
        vsnprintf(n->error, sizeof(n->error), fmt, ap);
        va_end(ap);
        pthread_mutex_unlock(&j->f->images->lock);
}

static const char *images_answer_detail(const char *body, char *buf, size_t size)
{
        json_t *o = body ? json_loads(body, 0, NULL) : NULL;

        snprintf(buf, size, "%s",
                 json_string_value(json_object_get(o, "detail")) ?: (body ? body : "no answer"));
        json_decref(o);
        return buf;
}

/* Asks the node what it holds: 1 complete, 0 with *ret_offset, -EEXIST refused for good,
 * -EAGAIN worth another attempt. */
static int images_node_offset(struct push_job *j, uint64_t *ret_offset)
{
        struct fleetd *f = j->f;
        struct image_push *p = j->push;
        struct push_node *n = &p->nodes[j->node];
        char path[256], detail[256];
        char *body = NULL;
        long status = 0;
        json_t *o;
        int r;

        snprintf(path, sizeof(path), "/v1/images/%s/upload?sha256=%s", p->name, p->sha256);
        r = f->transport.call(f->transport.ctx, n->address, (uint16_t)f->cfg.node_api_port, "GET",
                              path, NULL, f->cfg.node_api_timeout_ms, &status, &body);
        if (r < 0) {
                images_node_fail(j, "the node API did not answer: %s", strerror(-r));
                return -EAGAIN;
        }
        if (status != 200) {
                images_node_fail(j, "%s", images_answer_detail(body, detail, sizeof(detail)));
                free(body);
                return status == 409 || status == 400 || status == 403 ? -EEXIST : -EAGAIN;
        }
        o = json_loads(body, 0, NULL);
        free(body);
        r = json_is_true(json_object_get(o, "complete")) ? 1 : 0;
        *ret_offset = (uint64_t)json_integer_value(json_object_get(o, "offset"));
        json_decref(o);
        if (*ret_offset > p->size) {
                images_node_fail(j, "%s", "the node says it holds more bytes than the image has");
                return -EEXIST;
        }
        return r;
}

/* One attempt: the offset, then the bytes from there. 0 done, -EEXIST failed for good, -EAGAIN
 * to be tried again. */
static int images_push_attempt(struct push_job *j, int fd)
{
        struct fleetd *f = j->f;
        struct image_push *p = j->push;
        struct push_node *n = &p->nodes[j->node];
        char path[384], detail[256];
        uint64_t off = 0;
        char *body = NULL;
        long status = 0;
        bool busy;
        int r = images_node_offset(j, &off);

        pthread_mutex_lock(&f->images->lock);
        if (r >= 0) {
                if (n->attempts == 1)
                        n->resumed_from = off;
                n->offset = off;
                n->state = r == 1 ? PN_DONE : PN_SENDING;
        }
        pthread_mutex_unlock(&f->images->lock);
        if (r != 0)
                return r == 1 ? 0 : r;
        snprintf(path, sizeof(path), "/v1/images/%s/upload?sha256=%s&size=%llu&offset=%llu",
                 p->name, p->sha256, (unsigned long long)p->size, (unsigned long long)off);
        r = node_client_upload(f->transport.ctx, n->address, (uint16_t)f->cfg.node_api_port, path,
                               fd, off, p->size - off, images_progress, j, &status, &body);
        if (r < 0) {
                free(body);
                images_node_fail(j, "the transfer was cut: %s", strerror(-r));
                return r == -ECANCELED ? -EEXIST : -EAGAIN;
        }
        if (status == 201 || status == 200) {
                free(body);
                return 0;
        }
        images_node_fail(j, "%s", images_answer_detail(body, detail, sizeof(detail)));
        /* the node has not noticed yet that the last, cut, connection is gone: try again */
        busy = status == 409 && body && strstr(body, "/upload-in-progress\"");
        free(body);
        if (busy)
                return -EAGAIN;
        /* 422: the node's bytes do not hash to the digest, and it kept none: say so, once */
        return status == 422 || status == 409 || status == 413 || status == 400 ? -EEXIST : -EAGAIN;
}

static void images_push_node(struct push_job *j)
{
        struct fleetd *f = j->f;
        struct image_push *p = j->push;
        struct push_node *n = &p->nodes[j->node];
        int fd = open(p->staged, O_RDONLY | O_CLOEXEC), r = -EAGAIN;

        if (fd < 0) {
                images_node_fail(j, "the staged image is gone: %s", strerror(errno));
                r = -EEXIST;
        }
        for (unsigned a = 0; fd >= 0 && r == -EAGAIN && a < PUSH_ATTEMPTS; a++) {
                bool stop;

                pthread_mutex_lock(&f->images->lock);
                n->attempts++;
                stop = f->images->stopping;
                pthread_mutex_unlock(&f->images->lock);
                if (stop)
                        break;
                if (a > 0) {
                        struct timespec ts = {.tv_sec = (PUSH_BACKOFF_MS * a) / 1000,
                                              .tv_nsec = (PUSH_BACKOFF_MS * a) % 1000 * 1000000L};

                        nanosleep(&ts, NULL);
                }
                r = images_push_attempt(j, fd);
        }
        if (fd >= 0)
                close(fd);
        pthread_mutex_lock(&f->images->lock);
        n->state = r == 0 ? PN_DONE : PN_FAILED;
        if (r == 0)
                n->error[0] = '\0';
        pthread_mutex_unlock(&f->images->lock);
        if (r == 0) {
                struct fleet_node *fn;

                pthread_mutex_lock(&f->lock);
                fn = node_table_find(&f->table, n->id);
                if (fn)
                        images_node_add(fn, p->name, p->sha256, p->size);
                pthread_mutex_unlock(&f->lock);
                log_info("image '%s' (sha256 %s) is on node '%s' (%llu bytes sent, resumed "
                         "from %llu)",
                         p->name, p->sha256, n->id, (unsigned long long)n->sent,
                         (unsigned long long)n->resumed_from);
        } else {
                log_warn("image '%s' push to node '%s' failed: %s", p->name, n->id, n->error);
        }
}

static void images_push_finished(struct fleetd *f, struct image_push *p)
{
        size_t done = 0;

        for (size_t i = 0; i < p->n_nodes; i++)
                done += p->nodes[i].state == PN_DONE;
        p->finished_ms = clock_realtime_ms();
        if (done == p->n_nodes)
                unlink(p->staged); /* every node has it: the staged copy is not needed */
        audit_append(f->store, false, "image.pushed", p->name, p->actor,
                     json_pack("{s:s, s:I, s:I, s:I}", "sha256", p->sha256, "size",
                               (json_int_t)p->size, "nodes", (json_int_t)p->n_nodes, "done",
                               (json_int_t)done));
}

static void *images_push_thread(void *arg)
{
        struct push_job *j = arg;
        struct fleet_images *im = j->f->images;
        bool last;

        images_push_node(j);
        pthread_mutex_lock(&im->lock);
        last = --j->push->running == 0;
        if (last)
                images_push_finished(j->f, j->push);
        im->threads--;
        pthread_cond_broadcast(&im->idle);
        pthread_mutex_unlock(&im->lock);
        free(j);
        return NULL;
}

/* Under im->lock: a slot for a new record of name (the old one of that name, else the oldest
 * finished); NULL when every slot is busy. */
static struct image_push **images_slot(struct fleet_images *im, const char *name)
{
        size_t oldest = PUSH_RECORDS_MAX;

        for (size_t i = 0; i < im->n; i++) {
                if (strcmp(im->pushes[i]->name, name) == 0)
                        return im->pushes[i]->running ? NULL : &im->pushes[i];
                if (!im->pushes[i]->running &&
                    (oldest == PUSH_RECORDS_MAX ||
                     im->pushes[i]->started_ms < im->pushes[oldest]->started_ms))
                        oldest = i;
        }
        if (im->n < PUSH_RECORDS_MAX)
                return &im->pushes[im->n++];
        return oldest < PUSH_RECORDS_MAX ? &im->pushes[oldest] : NULL;
}

static struct image_push *images_push_new(struct fleetd *f, const struct image_stage *s)
{
        struct image_push *p = calloc(1, sizeof(*p));

        if (!p || !(p->nodes = calloc(s->n_targets, sizeof(*p->nodes)))) {
                free(p);
                return NULL;
        }
        snprintf(p->name, sizeof(p->name), "%s", s->name);
        snprintf(p->sha256, sizeof(p->sha256), "%s", s->sha256);
        snprintf(p->actor, sizeof(p->actor), "%s", s->actor);
        images_staged_path(f, s->name, s->sha256, p->staged, sizeof(p->staged));
        p->size = s->size;
        p->started_ms = clock_realtime_ms();
        p->n_nodes = s->n_targets;
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < s->n_targets; i++) {
                struct fleet_node *n = node_table_find(&f->table, s->targets[i]);

                snprintf(p->nodes[i].id, sizeof(p->nodes[i].id), "%s", s->targets[i]);
                snprintf(p->nodes[i].address, sizeof(p->nodes[i].address), "%s",
                         n ? n->rn->mesh_address : "0.0.0.0");
        }
        pthread_mutex_unlock(&f->lock);
        return p;
}

/* Starts the workers; answers the push record (202) and true, or a problem and false. */
static bool images_push_start(struct fleetd *f, const struct image_stage *s,
                              struct api_response *resp)
{
        struct fleet_images *im = f->images;
        struct image_push *p = images_push_new(f, s), **slot;
        pthread_attr_t attr;

        if (!p) {
                api_fail(resp, -ENOMEM, "out-of-memory", "cannot record the push");
                return false;
        }
        pthread_mutex_lock(&im->lock);
        slot = images_slot(im, s->name);
        if (!slot || im->stopping) {
                pthread_mutex_unlock(&im->lock);
                images_push_free(p);
                api_fail(resp, -EBUSY, "push-in-progress",
                         "image '%s' is being pushed already (or %d pushes run)", s->name,
                         PUSH_RECORDS_MAX);
                return false;
        }
        if (*slot && *slot != p)
                images_push_free(*slot);
        *slot = p;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        for (size_t i = 0; i < p->n_nodes; i++) {
                struct push_job *j = malloc(sizeof(*j));
                pthread_t t;

                if (j) {
                        *j = (struct push_job){.f = f, .push = p, .node = i};
                        p->running++;
                        im->threads++;
                }
                if (!j || pthread_create(&t, &attr, images_push_thread, j) != 0) {
                        if (j) {
                                p->running--;
                                im->threads--;
                        }
                        free(j);
                        p->nodes[i].state = PN_FAILED;
                        snprintf(p->nodes[i].error, sizeof(p->nodes[i].error),
                                 "cannot start a worker");
                }
        }
        pthread_attr_destroy(&attr);
        if (p->running == 0)
                images_push_finished(f, p);
        api_accepted(resp, images_push_json(p));
        pthread_mutex_unlock(&im->lock);
        log_info("image '%s' (sha256 %s, %llu bytes) pushed to %zu nodes by '%s'", s->name,
                 s->sha256, (unsigned long long)s->size, p->n_nodes, s->actor);
        return true;
}

/* ---- the upload (staging) ---- */

static void images_stage_free(struct image_stage *s)
{
        if (!s)
                return;
        image_partial_close(&s->part);
        free(s->targets);
        free(s);
}

/* Alive, or unhealthy: its heartbeats arrive and only its libvirt calls are late, which the
 * image store does not need (a node busy hashing an image under load often is). */
static bool images_reachable(const struct fleet_node *n, const struct fleetd_config *cfg,
                             uint64_t now)
{
        enum node_state st = node_state_at(n, cfg, now);

        return st == NODE_ALIVE || st == NODE_UNHEALTHY;
}

/* Under f->lock: the push targets, from the nodes query (or every reachable node); a problem
 * when one is unknown or not alive, or when a node holds name with other content. */
static bool images_targets(struct fleetd *f, struct image_stage *s, const char *list,
                           struct api_response *resp)
{
        size_t n = f->table.roster->n_nodes;
        uint64_t now = clock_monotonic_ms();
        char buf[1024], *save = NULL;

        s->targets = calloc(n ? n : 1, sizeof(*s->targets));
        if (!s->targets) {
                api_fail(resp, -ENOMEM, "out-of-memory", "cannot list the nodes");
                return false;
        }
        snprintf(buf, sizeof(buf), "%s", list ? list : "");
        for (char *id = strtok_r(buf, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
                struct fleet_node *node = node_table_find(&f->table, id);
                bool dup = false;

                if (!node) {
                        api_fail(resp, -EINVAL, "unknown-node", "no node '%.64s' in the roster",
                                 id);
                        return false;
                }
                if (!images_reachable(node, &f->cfg, now)) {
                        api_fail(resp, -EHOSTUNREACH, "node-not-alive",
                                 "node '%s' is '%s': an image is pushed to nodes whose "
                                 "heartbeats arrive",
                                 id, node_state_name(node_state_at(node, &f->cfg, now)));
                        return false;
                }
                for (size_t k = 0; k < s->n_targets; k++)
                        dup |= strcmp(s->targets[k], id) == 0;
                if (!dup && s->n_targets < n)
                        snprintf(s->targets[s->n_targets++], NODE_ID_MAX + 1, "%s", id);
        }
        for (size_t i = 0; !list && i < n; i++)
                if (images_reachable(&f->table.nodes[i], &f->cfg, now))
                        snprintf(s->targets[s->n_targets++], NODE_ID_MAX + 1, "%s",
                                 f->table.roster->nodes[i].id);
        if (s->n_targets == 0) {
                api_fail(resp, -EHOSTUNREACH, "no-alive-node",
                         "no alive node to push image '%s' to", s->name);
                return false;
        }
        return true;
}

/* Under f->lock: a node that holds the name with another digest refuses the push. */
static bool images_name_free(struct fleetd *f, const struct image_stage *s,
                             struct api_response *resp)
{
        for (size_t i = 0; i < f->table.roster->n_nodes; i++) {
                const char *have = NULL;

                if (images_node_holds(&f->table.nodes[i], s->name, &have) == 0 &&
                    strcmp(have, s->sha256) != 0) {
                        api_fail(resp, -EEXIST, "image-name-reused",
                                 "node '%s' holds image '%s' with SHA-256 %s; this upload "
                                 "has SHA-256 %s; a name is never reused for other content",
                                 f->table.roster->nodes[i].id, s->name, have, s->sha256);
                        json_object_set_new(resp->body, "existing_sha256", json_string(have));
                        json_object_set_new(resp->body, "sha256", json_string(s->sha256));
                        json_object_set_new(resp->body, "node",
                                            json_string(f->table.roster->nodes[i].id));
                        return false;
                }
        }
        return true;
}

static bool images_hex_valid(const char *s)
{
        return ident_hex_valid(s, IMAGE_TRANSFER_HEX_LEN);
}

static bool images_stage_query(struct api_request *req, struct api_response *resp,
                               struct image_stage *s, uint64_t *ret_offset, const char **ret_nodes)
{
        struct fleetd *f = req->f;
        const char *hex = api_query_get(&req->query, "sha256");
        const char *cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
        uint64_t len = cl ? strtoull(cl, NULL, 10) : 0;

        if (!ident_valid(IDENT_IMAGE, req->params[0])) {
                api_fail(resp, -EINVAL, "invalid-image-name",
                         "image name '%.80s' must match ^[a-z0-9][a-z0-9._-]{0,62}$",
                         req->params[0]);
                return false;
        }
        if (!hex || !ident_hex_valid(hex, IMAGE_TRANSFER_HEX_LEN)) {
                api_fail(resp, -EINVAL, "invalid-query",
                         "query 'sha256' must be the image's SHA-256, 64 lowercase hex digits");
                return false;
        }
        if (!api_query_uint(req, resp, "size", 0, 0, UINT64_MAX / 2, &s->size) ||
            !api_query_uint(req, resp, "offset", 0, 0, UINT64_MAX / 2, ret_offset))
                return false;
        if (s->size == 0 || s->size > f->cfg.image_max_bytes) {
                api_fail(resp, -EFBIG, "image-too-large",
                         "an image is 1..%llu bytes (config key image_max_bytes); query "
                         "'size' says %llu",
                         (unsigned long long)f->cfg.image_max_bytes, (unsigned long long)s->size);
                return false;
        }
        if (!cl || *ret_offset > s->size || len > s->size - *ret_offset) {
                api_fail(resp, cl ? -EFBIG : -EINVAL, cl ? "body-too-large" : "length-required",
                         "the body must have a Content-Length of at most size - offset (%llu)",
                         (unsigned long long)(s->size -
                                              (*ret_offset > s->size ? s->size : *ret_offset)));
                return false;
        }
        snprintf(s->name, sizeof(s->name), "%s", req->params[0]);
        snprintf(s->sha256, sizeof(s->sha256), "%s", hex);
        snprintf(s->actor, sizeof(s->actor), "%s", req->actor);
        *ret_nodes = api_query_get(&req->query, "nodes");
        return true;
}

static void images_offset_problem(struct api_response *resp, const struct image_stage *s,
                                  uint64_t held, uint64_t offset)
{
        api_fail(resp, -ERANGE, "offset-mismatch",
                 "fleetd holds %llu bytes of image '%s' (sha256 %s); the upload starts at %llu",
                 (unsigned long long)held, s->name, s->sha256, (unsigned long long)offset);
        json_object_set_new(resp->body, "upload_offset", json_integer((json_int_t)held));
}

/* Opens the staging file, or finds the complete one. */
static bool images_stage_open_in(struct fleetd *f, struct image_stage *s, uint64_t offset,
                                 struct api_response *resp, struct images_paths *pp)
{
        struct stat st;
        uint64_t held = 0;
        int r;

        images_staged_path(f, s->name, s->sha256, pp->staged, sizeof(pp->staged));
        if (lstat(pp->staged, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == s->size) {
                if (offset != s->size) {
                        images_offset_problem(resp, s, s->size, offset);
                        return false;
                }
                s->staged = true;
                return true;
        }
        images_dir(f, pp->dir, sizeof(pp->dir));
        r = image_partial_open(&s->part, pp->dir, s->name, s->sha256, s->size, offset, &held);
        if (r == -ERANGE)
                images_offset_problem(resp, s, held, offset);
        else if (r == -EBUSY)
                api_fail(resp, -EBUSY, "upload-in-progress",
                         "image '%s' is being uploaded on another connection", s->name);
        else if (r < 0)
                api_fail(resp, -EIO, "staging-failed", "cannot stage image '%s': %s", s->name,
                         strerror(-r));
        return r == 0;
}

static bool images_stage_open(struct fleetd *f, struct image_stage *s, uint64_t offset,
                              struct api_response *resp)
{
        struct images_paths *pp = malloc(sizeof(*pp));
        bool ok = pp && images_stage_open_in(f, s, offset, resp, pp);

        if (!pp)
                api_fail(resp, -ENOMEM, "staging-failed", "cannot stage image '%s': %s", s->name,
                         strerror(ENOMEM));
        free(pp);
        return ok;
}

static int images_stage_feed(void *state, const char *data, size_t n)
{
        struct image_stage *s = state;
        int r;

        if (s->fail_err)
                return 0;
        r = s->staged ? -EFBIG : image_partial_write(&s->part, data, n);
        if (r < 0) {
                s->fail_err = r;
                snprintf(s->fail_detail, sizeof(s->fail_detail),
                         "image '%s': cannot stage these bytes: %s", s->name, strerror(-r));
        }
        return 0;
}

static void images_stage_end(void *state, struct api_request *req, struct api_response *resp)
{
        struct image_stage *s = state;
        char got[IMAGE_TRANSFER_HEX_LEN + 1] = "", *staged = NULL;
        int r;

        if (s->fail_err) {
                api_fail(resp, s->fail_err, "upload-failed", "%s", s->fail_detail);
                return;
        }
        if (!s->staged && s->part.offset < s->size) {
                api_ok(resp, json_pack("{s:s, s:s, s:I, s:I, s:b}", "name", s->name, "sha256",
                                       s->sha256, "size", (json_int_t)s->size, "upload_offset",
                                       (json_int_t)s->part.offset, "complete", 0));
                return;
        }
        if (!s->staged) {
                r = image_partial_finish(&s->part, got);
                if (r == -EBADMSG) {
                        log_warn("image '%s' upload refused: its bytes have SHA-256 %s, "
                                 "expected %s",
                                 s->name, got, s->sha256);
                        api_fail(resp, -EBADMSG, "checksum-mismatch",
                                 "image '%s': the %llu bytes received have SHA-256 %s, "
                                 "expected %s; refused, nothing kept or pushed",
                                 s->name, (unsigned long long)s->size, got, s->sha256);
                        json_object_set_new(resp->body, "sha256", json_string(s->sha256));
                        json_object_set_new(resp->body, "received_sha256", json_string(got));
                        return;
                }
                if (r == 0 && !(staged = malloc(IMAGES_STAGED_MAX)))
                        r = -ENOMEM;
                if (r == 0)
                        images_staged_path(req->f, s->name, s->sha256, staged, IMAGES_STAGED_MAX);
                if (r < 0 || rename(s->part.path, staged) < 0) {
                        api_fail(resp, -EIO, "staging-failed", "cannot stage image '%s': %s",
                                 s->name, strerror(r < 0 ? -r : errno));
                        free(staged);
                        return;
                }
                free(staged);
                image_partial_close(&s->part);
        }
        if (images_push_start(req->f, s, resp)) { /* the operation that follows the push */
                json_t *op = ops_image_push(req->f, s->name, s->actor);

                if (op) {
                        json_decref(resp->body);
                        resp->body = op;
                        snprintf(resp->location, sizeof(resp->location), "/v1/operations/%s",
                                 json_string_value(json_object_get(op, "id")));
                } else {
                        static __thread char location[128];

                        snprintf(location, sizeof(location), "/v1/images/%s/push", s->name);
                        resp->header_name = "Location";
                        resp->header_value = location;
                }
        }
}

static void images_stage_drop(void *state)
{
        images_stage_free(state); /* a cut upload keeps its staged bytes for a resume */
}

void api_images_upload_put(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        struct image_stage *s = calloc(1, sizeof(*s));
        const char *nodes = NULL;
        struct image_push *p;
        uint64_t offset = 0;
        bool ok;

        if (!s) {
                api_fail(resp, -ENOMEM, "out-of-memory", "cannot take the upload");
                return;
        }
        s->f = f;
        s->part.fd = -1;
        if (!images_stage_query(req, resp, s, &offset, &nodes)) {
                images_stage_free(s);
                return;
        }
        pthread_mutex_lock(&f->images->lock);
        p = images_find_push(f->images, s->name);
        ok = !p || !p->running;
        pthread_mutex_unlock(&f->images->lock);
        if (!ok) /* said before the body, not after it */
                api_fail(resp, -EBUSY, "push-in-progress", "image '%s' is being pushed already",
                         s->name);
        pthread_mutex_lock(&f->lock);
        ok = ok && images_targets(f, s, nodes, resp) && images_name_free(f, s, resp);
        pthread_mutex_unlock(&f->lock);
        if (!ok || !images_stage_open(f, s, offset, resp)) {
                images_stage_free(s);
                return;
        }
        req->upload->state = s;
        req->upload->feed = images_stage_feed;
        req->upload->end = images_stage_end;
        req->upload->drop = images_stage_drop;
}

void api_images_upload_get(struct api_request *req, struct api_response *resp)
{
        struct images_paths *pp = NULL;
        const char *hex = NULL;
        struct stat st;
        uint64_t held;
        bool complete;

        if (!ident_valid(IDENT_IMAGE, req->params[0])) {
                api_fail(resp, -EINVAL, "invalid-image-name",
                         "image name '%.80s' must match ^[a-z0-9][a-z0-9._-]{0,62}$",
                         req->params[0]);
                return;
        }
        if (!api_query_string(req, resp, "sha256", images_hex_valid, "64 lowercase hex digits",
                              &hex))
                return;
        if (!hex) {
                api_fail(resp, -EINVAL, "invalid-query", "query 'sha256' is needed");
                return;
        }
        pp = malloc(sizeof(*pp));
        if (!pp) {
                api_fail(resp, -ENOMEM, "out-of-memory", "out of memory");
                return;
        }
        images_dir(req->f, pp->dir, sizeof(pp->dir));
        images_staged_path(req->f, req->params[0], hex, pp->staged, sizeof(pp->staged));
        complete = lstat(pp->staged, &st) == 0 && S_ISREG(st.st_mode);
        held = complete ? (uint64_t)st.st_size : image_partial_held(pp->dir, req->params[0], hex);
        free(pp);
        api_ok(resp, json_pack("{s:s, s:s, s:I, s:b}", "name", req->params[0], "sha256", hex,
                               "upload_offset", (json_int_t)held, "complete", complete));
}

void api_images_list(struct api_request *req, struct api_response *resp)
{
        api_ok(resp, images_fleet_list(req->f));
}

void api_images_push_get(struct api_request *req, struct api_response *resp)
{
        json_t *o = images_push_get(req->f, req->params[0]);

        if (o)
                api_ok(resp, o);
        else
                api_fail(resp, -ENOENT, "not-found",
                         "no push of image '%.80s' since fleetd started", req->params[0]);
}

/* ---- removal ---- */

static json_t *images_remove_one(struct fleetd *f, const char *node_id, const char *address,
                                 const char *name)
{
        char path[256], detail[256];
        char *body = NULL;
        long status = 0;
        int r;
        json_t *o;

        snprintf(path, sizeof(path), "/v1/images/%s", name);
        r = f->transport.call(f->transport.ctx, address, (uint16_t)f->cfg.node_api_port, "DELETE",
                              path, NULL, f->cfg.node_api_timeout_ms, &status, &body);
        o = json_pack("{s:s, s:I, s:b, s:s?}", "node", node_id, "status",
                      (json_int_t)(r < 0 ? 0 : status), "removed", r == 0 && status == 200,
                      "detail",
                      r < 0           ? strerror(-r)
                      : status != 200 ? images_answer_detail(body, detail, sizeof(detail))
                                      : NULL);
        free(body);
        if (r == 0 && status == 200) {
                struct fleet_node *n;

                pthread_mutex_lock(&f->lock);
                n = node_table_find(&f->table, node_id);
                for (size_t i = 0; n && i < json_array_size(n->images); i++)
                        if (strcmp(json_string_value(
                                       json_object_get(json_array_get(n->images, i), "name"))
                                       ?: "",
                                   name) == 0)
                                json_array_remove(n->images, i--);
                pthread_mutex_unlock(&f->lock);
                audit_append(f->store, false, "image.removed", name, "fleetd",
                             json_pack("{s:s}", "node_id", node_id));
        }
        return o;
}

void api_images_remove(struct api_request *req, struct api_response *resp)
{
        struct fleetd *f = req->f;
        const char *name = req->params[0], *only = NULL;
        char(*ids)[NODE_ID_MAX + 1] = NULL, (*addrs)[INET_ADDRSTRLEN] = NULL;
        size_t n = 0, cap = f->table.roster ? f->table.roster->n_nodes : 0;
        json_t *results = json_array();
        bool unknown = false, everywhere = true;

        if (!ident_valid(IDENT_IMAGE, name)) {
                api_fail(resp, -EINVAL, "invalid-image-name",
                         "image name '%.80s' must match ^[a-z0-9][a-z0-9._-]{0,62}$", name);
                json_decref(results);
                return;
        }
        if (!api_query_id(req, resp, "node", IDENT_NODE, &only)) {
                json_decref(results);
                return;
        }
        pthread_mutex_lock(&f->lock);
        cap = f->table.roster->n_nodes;
        ids = calloc(cap ? cap : 1, sizeof(*ids));
        addrs = calloc(cap ? cap : 1, sizeof(*addrs));
        for (size_t i = 0; ids && addrs && i < cap; i++) {
                const char *id = f->table.roster->nodes[i].id;

                if ((only && strcmp(only, id) != 0) ||
                    fleet_node_image(&f->table.nodes[i], name) <= 0)
                        continue;
                snprintf(ids[n], sizeof(ids[n]), "%s", id);
                snprintf(addrs[n++], sizeof(addrs[0]), "%s",
                         f->table.roster->nodes[i].mesh_address);
        }
        if (only && !node_table_find(&f->table, only))
                unknown = true;
        pthread_mutex_unlock(&f->lock);
        if (unknown)
                api_fail(resp, -EINVAL, "unknown-node", "no node '%.64s' in the roster", only);
        else if (n == 0)
                api_fail(resp, -ENOENT, "not-found", "no node%s%s holds image '%s'",
                         only ? " " : "", only ? only : "", name);
        for (size_t i = 0; i < n; i++) {
                json_t *o = images_remove_one(f, ids[i], addrs[i], name);

                if (!json_is_true(json_object_get(o, "removed")))
                        everywhere = false;
                json_array_append_new(results, o);
        }
        if (n > 0) {
                api_ok(resp, json_pack("{s:s, s:b, s:O}", "image", name, "removed", everywhere,
                                       "nodes", results));
                if (!everywhere) {
                        api_fail(resp, -EBUSY, "not-removed-everywhere",
                                 "image '%s' was not removed from every node (in use, or the "
                                 "node did not answer)",
                                 name);
                        json_object_set(resp->body, "nodes", results);
                }
        }
        json_decref(results);
        free(ids);
        free(addrs);
}
