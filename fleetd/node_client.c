/* The node API client (libcurl): one short-lived easy handle per call to a node's vmhost, with a
 * timeout and a cap on the answer's size (an inventory is at most NODE_ANSWER_MAX bytes). Calls
 * leave from the controller's mesh address: vmhost answers only that address. */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/http_body.h"
#include "fleetd/fleetd.h"

#define NODE_ANSWER_MAX (8u * 1024 * 1024)

/* curl's few failures that mean something to a caller; the rest: the node is unreachable. */
static int node_client_errno(CURLcode rc)
{
        static const struct {
                CURLcode rc;
                int err;
        } map[] = {{CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT},
                   {CURLE_COULDNT_CONNECT, -ECONNREFUSED},
                   {CURLE_WRITE_ERROR, -EMSGSIZE}};

        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                if (map[i].rc == rc)
                        return map[i].err;
        return -EHOSTUNREACH;
}

/* What every call sets: the URL, the source address, the headers, the answer's buffer. */
static void node_client_setup(CURL *c, void *ctx, const char *address, uint16_t port,
                              const char *path, struct curl_slist *h, struct http_answer *a)
{
        char url[512];

        snprintf(url, sizeof(url), "http://%s:%u%s", address, (unsigned)port, path);
        curl_easy_setopt(c, CURLOPT_URL, url); /* libcurl copies it */
        if (ctx)
                curl_easy_setopt(c, CURLOPT_INTERFACE, (const char *)ctx);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_answer_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
}

/* Runs the call and hands back the answer; err (when not 0) names why it was aborted. */
static int node_client_perform(CURL *c, struct curl_slist *h, struct http_answer *a, int *err,
                               long *ret_status, char **ret_body)
{
        CURLcode rc = curl_easy_perform(c);
        int r = 0;

        if (rc != CURLE_OK) {
                r = err && *err ? *err : node_client_errno(rc);
                http_body_done(&a->body);
        } else {
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
                *ret_body = a->body.data;
        }
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return r;
}

static int node_client_call(void *ctx, const char *address, uint16_t port, const char *method,
                            const char *path, const char *body, uint64_t timeout_ms,
                            long *ret_status, char **ret_body)
{
        struct http_answer a = {.limit = NODE_ANSWER_MAX};
        struct curl_slist *h = NULL;
        CURL *c = curl_easy_init();

        if (!c)
                return -ENOMEM;
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Accept: application/json");
        node_client_setup(c, ctx, address, port, path, h, &a);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        /* a peer whose tunnel is down should cost the dispatcher seconds, not the whole timeout */
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)(timeout_ms < 3000 ? timeout_ms : 3000));
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        return node_client_perform(c, h, &a, NULL, ret_status, ret_body);
}

void node_client_init(struct fleet_transport *t, const char *source)
{
        static char iface[INET_ADDRSTRLEN + 8]; /* one fleetd per process */

        t->call = node_client_call;
        t->ctx = NULL;
        if (source && source[0]) {
                snprintf(iface, sizeof(iface), "host!%s", source);
                t->ctx = iface;
        }
}

/* The streamed upload: libcurl reads the file through node_upload_read (pread, so nothing but
 * curl's own buffer holds the bytes), and a stalled peer is dropped after 30 s below 1 KiB/s. */
struct node_upload {
        int fd;
        uint64_t at, end;
        uint64_t reported; /* bytes handed to progress */
        int (*progress)(void *arg, uint64_t sent);
        void *arg;
        int err;
};

static size_t node_upload_read(char *buf, size_t size, size_t nmemb, void *arg)
{
        struct node_upload *u = arg;
        long n = image_file_read_range(u->fd, &u->at, u->end, buf, size * nmemb);

        if (n < 0)
                u->err = (int)n;
        return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

static int node_upload_xfer(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
        struct node_upload *u = arg;
        int r;

        (void)dltotal;
        (void)dlnow;
        (void)ultotal;
        if ((uint64_t)ulnow <= u->reported)
                return 0;
        r = u->progress ? u->progress(u->arg, (uint64_t)ulnow - u->reported) : 0;
        u->reported = (uint64_t)ulnow;
        if (r < 0)
                u->err = r;
        return r < 0 ? 1 : 0;
}

int node_client_upload(void *ctx, const char *address, uint16_t port, const char *path, int fd,
                       uint64_t offset, uint64_t len, int (*progress)(void *arg, uint64_t sent),
                       void *arg, long *ret_status, char **ret_body)
{
        struct node_upload u = {
            .fd = fd, .at = offset, .end = offset + len, .progress = progress, .arg = arg};
        struct http_answer a = {.limit = NODE_ANSWER_MAX};
        struct curl_slist *h = NULL;
        CURL *c = curl_easy_init();

        if (!c)
                return -ENOMEM;
        h = curl_slist_append(h, "Content-Type: application/octet-stream");
        /* the node may refuse before the body (a name held with other content): ask first */
        h = curl_slist_append(h, "Expect: 100-continue");
        node_client_setup(c, ctx, address, port, path, h, &a);
        curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 3000L);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, node_upload_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &u);
        curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, node_upload_xfer);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &u);
        return node_client_perform(c, h, &a, &u.err, ret_status, ret_body);
}
