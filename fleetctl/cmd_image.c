/* fleetctl image push FILE --name NAME [--node N ...] | image list | image remove NAME
 * [--node N]. A push hashes the file (SHA-256), asks fleetd how much of it it already holds,
 * streams the rest (the file is read as it is sent, never held whole), then follows the push to
 * the nodes until every node is done or failed, printing each node's progress. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/ident.h"
#include "common/image_transfer.h"
#include "fleetctl/fleetctl.h"

struct ctl_reader {
        int fd;
        uint64_t at, end;
};

static size_t ctl_image_read(char *buf, size_t size, size_t nmemb, void *arg)
{
        struct ctl_reader *r = arg;
        long n = image_file_read_range(r->fd, &r->at, r->end, buf, size * nmemb);

        return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

static size_t ctl_image_answer(char *p, size_t size, size_t n, void *arg)
{
        char **buf = arg;
        size_t have = *buf ? strlen(*buf) : 0;
        char *nb = have + size * n < 65536 ? realloc(*buf, have + size * n + 1) : NULL;

        if (!nb)
                return 0;
        memcpy(nb + have, p, size * n);
        nb[have + size * n] = '\0';
        *buf = nb;
        return size * n;
}

/* The streamed PUT; the HTTP status, or -1 (message printed). */
static long ctl_image_put(struct ctl *c, const char *path, int fd, uint64_t offset, uint64_t len,
                          json_t **ret)
{
        struct ctl_reader rd = {.fd = fd, .at = offset, .end = offset + len};
        struct curl_slist *h = NULL;
        char *answer = NULL;
        CURL *e = curl_easy_init();
        long status = -1;
        CURLcode rc;

        h = curl_slist_append(h, "Content-Type: application/octet-stream");
        h = curl_slist_append(h, "Accept: application/json");
        h = curl_slist_append(h, "Expect: 100-continue"); /* a refusal comes before the body */
        curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 5000L);
        rc = ctl_curl_target(c, e, path, &h);
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, ctl_image_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &rd);
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_image_answer);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &answer);
        rc = rc ?: curl_easy_perform(e);
        if (rc != CURLE_OK)
                fprintf(stderr, "fleetctl: the upload to '%s' was cut: %s\n", c->url,
                        curl_easy_strerror(rc));
        else {
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                *ret = answer ? json_loads(answer, 0, NULL) : NULL;
        }
        free(answer);
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        return status;
}

static void ctl_image_nodes_query(struct ctl *c, char *buf, size_t size)
{
        size_t len = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < c->n_witness_nodes && len < size; i++)
                len += (size_t)snprintf(buf + len, size - len, "%s%s",
                                        i ? "," : "&nodes=", c->witness_nodes[i]);
}

static const struct ctl_column ctl_push_columns[] = {
    {"node", "NODE", "node", NULL, false},
    {"state", "STATE", "state", NULL, false},
    {"sent", "SENT", "bytes_sent", NULL, false},
    {"total", "TOTAL", "total", NULL, false},
    {"resumed_from", "RESUMED_FROM", "resumed_from", NULL, false},
    {"error", "ERROR", "error", NULL, false},
    {NULL, NULL, NULL, NULL, false},
};

/* The push's outcome as a table (or JSON / YAML); 0 when every node has the image. */
static int ctl_image_result(struct ctl *c, json_t *a)
{
        int r = strcmp(ctl_str(a, "state"), "done") == 0 ? 0 : 1;

        if (c->json) {
                ctl_print(c, a);
        } else {
                if (c->format == CTL_FORMAT_TABLE)
                        printf("image '%s' (sha256 %s): %s\n", ctl_str(a, "name"),
                               ctl_str(a, "sha256"), ctl_str(a, "state"));
                if (ctl_render(c, ctl_push_columns, json_object_get(a, "nodes")) < 0)
                        r = 2;
        }
        json_decref(a);
        return r;
}

/* Follows the push until no node is sending; prints each node's progress as it changes. */
static int ctl_image_follow(struct ctl *c, const char *name)
{
        /* the progress line and the last one printed: 8 KiB, on the heap */
        enum { CTL_LINE_MAX = 4096 };
        char path[256], *last = calloc(2, CTL_LINE_MAX), *line = last ? last + CTL_LINE_MAX : NULL;
        json_t *a = NULL;

        if (!last)
                return 1;
        snprintf(path, sizeof(path), "/v1/images/%s/push", name);
        for (;;) {
                struct timespec ts = {0, 300 * 1000000L};
                size_t len = 0, i;
                json_t *n;
                long st;

                json_decref(a);
                a = NULL;
                st = ctl_call(c, "GET", path, NULL, &a);
                if (st != 200) {
                        int r = st < 0 ? 3 : ctl_problem(c, st, a);

                        json_decref(a);
                        free(last);
                        return r;
                }
                line[0] = '\0';
                json_array_foreach(json_object_get(a, "nodes"), i, n) if (len < CTL_LINE_MAX) len +=
                    (size_t)snprintf(
                        line + len, CTL_LINE_MAX - len, "%s%s %s %lld/%lld", i ? ", " : "",
                        ctl_str(n, "node"), ctl_str(n, "state"),
                        (long long)json_integer_value(json_object_get(n, "bytes_sent")),
                        (long long)json_integer_value(json_object_get(n, "total")));
                if (!c->json && strcmp(line, last) != 0)
                        fprintf(stderr, "push '%s': %s\n", name, line);
                memcpy(last, line, CTL_LINE_MAX);
                if (strcmp(ctl_str(a, "state"), "running") != 0)
                        break;
                nanosleep(&ts, NULL);
        }
        free(last);
        return ctl_image_result(c, a);
}

static int ctl_image_digest(const char *file, int *ret_fd, uint64_t *ret_size,
                            char hex[IMAGE_TRANSFER_HEX_LEN + 1])
{
        struct stat st;
        int fd = open(file, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            image_file_sha256(fd, hex) < 0) {
                fprintf(stderr, "fleetctl: cannot read image file '%s': %s\n", file,
                        fd < 0 ? strerror(errno) : "not a regular file");
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        *ret_fd = fd;
        *ret_size = (uint64_t)st.st_size;
        return 0;
}

/* How many bytes fleetd holds of name+hex already (0 when none, -1 on a refusal). */
static long long ctl_image_offset(struct ctl *c, const char *name, const char *hex)
{
        char path[256];
        json_t *a = NULL;
        long long off = -1;
        long st;

        snprintf(path, sizeof(path), "/v1/images/%s/upload?sha256=%s", name, hex);
        st = ctl_call(c, "GET", path, NULL, &a);
        if (st == 200)
                off = (long long)json_integer_value(json_object_get(a, "upload_offset"));
        else if (st > 0)
                ctl_problem(c, st, a);
        json_decref(a);
        return off;
}

static int ctl_image_push(struct ctl *c)
{
        char hex[IMAGE_TRANSFER_HEX_LEN + 1], *path = NULL, nodes[1024];
        uint64_t size = 0;
        long long off;
        json_t *a = NULL;
        long st = -1;
        int fd = -1;

        if (c->argc != 2 || !c->name) {
                fprintf(stderr, "fleetctl: image push FILE --name NAME [--node N ...]\n");
                return 2;
        }
        if (!ident_valid(IDENT_IMAGE, c->name)) {
                fprintf(stderr,
                        "fleetctl: image name '%s' must match ^[a-z0-9][a-z0-9._-]{0,62}$\n",
                        c->name);
                return 2;
        }
        if (ctl_image_digest(c->argv[1], &fd, &size, hex) < 0)
                return 1;
        if (!c->json)
                fprintf(stderr, "image '%s': %llu bytes, sha256 %s\n", c->name,
                        (unsigned long long)size, hex);
        ctl_image_nodes_query(c, nodes, sizeof(nodes));
        for (int tries = 0; tries < 2; tries++) {
                off = ctl_image_offset(c, c->name, hex);
                if (off < 0 || (uint64_t)off > size)
                        break;
                if (off > 0 && !c->json)
                        fprintf(stderr, "fleetd holds %lld bytes already: resuming there\n", off);
                free(path);
                if (asprintf(&path, "/v1/images/%s/upload?sha256=%s&size=%llu&offset=%lld%s",
                             c->name, hex, (unsigned long long)size, off, nodes) < 0) {
                        path = NULL;
                        st = -1;
                        break;
                }
                json_decref(a);
                a = NULL;
                st = ctl_image_put(c, path, fd, (uint64_t)off, size - (uint64_t)off, &a);
                if (st != 409 || strcmp(ctl_str(a, "title"), "Conflict") != 0 ||
                    !json_object_get(a, "upload_offset"))
                        break; /* an offset that moved meanwhile is asked again, once */
        }
        close(fd);
        free(path);
        if (st == 202) { /* the push's operation: followed through the push's own resource,
                          * which has each node's progress */
                json_t *res = NULL;
                int k = c->no_wait ? ctl_operation_outcome(c, a, &res) : -1;

                json_decref(a);
                json_decref(res);
                return k >= 0 ? k : ctl_image_follow(c, c->name);
        }
        if (st > 0 && st != 200)
                ctl_problem(c, st, a);
        else if (st == 200)
                fprintf(stderr, "fleetctl: fleetd holds %lld of %llu bytes; run the push again\n",
                        (long long)json_integer_value(json_object_get(a, "upload_offset")),
                        (unsigned long long)size);
        json_decref(a);
        return st < 0 ? 3 : 1;
}

static const char *ctl_image_sha(json_t *o, char *buf, size_t size)
{
        snprintf(buf, size, "%.12s", ctl_str(o, "sha256"));
        return buf;
}

static const char *ctl_image_nodes(json_t *o, char *buf, size_t size)
{
        size_t len = 0, k;
        json_t *n;

        buf[0] = '\0';
        json_array_foreach(json_object_get(o, "nodes"), k, n) if (len < size) len +=
            (size_t)snprintf(buf + len, size - len, "%s%s", k ? "," : "", json_string_value(n));
        return buf;
}

static const struct ctl_column ctl_image_columns[] = {
    {"name", "NAME", "name", NULL, false}, {"sha256", "SHA256", NULL, ctl_image_sha, false},
    {"size", "SIZE", "size", NULL, false}, {"nodes", "NODES", NULL, ctl_image_nodes, false},
    {NULL, NULL, NULL, NULL, false},
};

static int ctl_image_remove(struct ctl *c)
{
        char path[512];
        json_t *a = NULL;
        long st;

        if (c->argc != 2 || !ident_valid(IDENT_IMAGE, c->argv[1]) || c->n_witness_nodes > 1) {
                fprintf(stderr, "fleetctl: image remove NAME [--node N]\n");
                return 2;
        }
        snprintf(path, sizeof(path), "/v1/images/%s%s%s", c->argv[1],
                 c->n_witness_nodes ? "?node=" : "", c->n_witness_nodes ? c->witness_nodes[0] : "");
        st = ctl_call(c, "DELETE", path, NULL, &a);
        if (st < 0)
                return 3;
        if (c->json)
                ctl_print(c, a);
        else if (st == 200)
                printf("image '%s' removed from %zu nodes\n", c->argv[1],
                       json_array_size(json_object_get(a, "nodes")));
        else
                ctl_problem(c, st, a);
        json_decref(a);
        return st == 200 ? 0 : 1;
}

int ctl_cmd_image(struct ctl *c)
{
        const char *sub = c->argc ? c->argv[0] : "";

        if (strcmp(sub, "push") == 0)
                return ctl_image_push(c);
        if (strcmp(sub, "list") == 0 && c->argc == 1) {
                static const struct ctl_view v = {"images", ctl_image_columns, NULL, NULL};

                c->argc--, c->argv++;
                return ctl_get(c, "/v1/images", &v);
        }
        if (strcmp(sub, "remove") == 0)
                return ctl_image_remove(c);
        fprintf(stderr, "fleetctl: image push FILE --name NAME [--node N ...] | image list | "
                        "image remove NAME [--node N]\n");
        return 2;
}
