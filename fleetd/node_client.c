/* The node API client (libcurl): one short-lived easy handle per call to a node's vmhost, with a
 * timeout and a cap on the answer's size (an inventory is at most NODE_ANSWER_MAX bytes). Calls
 * leave from the controller's mesh address: vmhost answers only that address. */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/fleetd.h"

#define NODE_ANSWER_MAX (8u * 1024 * 1024)

struct node_answer {
        char *buf;
        size_t len;
        bool too_large;
};

static size_t node_client_write(char *data, size_t size, size_t nmemb, void *arg)
{
        struct node_answer *a = arg;
        size_t n = size * nmemb;
        char *nb;

        if (a->len + n > NODE_ANSWER_MAX) {
                a->too_large = true;
                return 0;
        }
        nb = realloc(a->buf, a->len + n + 1);
        if (!nb)
                return 0;
        memcpy(nb + a->len, data, n);
        a->buf = nb;
        a->len += n;
        a->buf[a->len] = '\0';
        return n;
}

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

static int node_client_call(void *ctx, const char *address, uint16_t port, const char *method,
                            const char *path, const char *body, uint64_t timeout_ms,
                            long *ret_status, char **ret_body)
{
        struct node_answer a = {0};
        struct curl_slist *h = NULL;
        char url[256];
        CURL *c = curl_easy_init();
        CURLcode rc;
        int r = 0;

        if (!c)
                return -ENOMEM;
        snprintf(url, sizeof(url), "http://%s:%u%s", address, (unsigned)port, path);
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Accept: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (ctx)
                curl_easy_setopt(c, CURLOPT_INTERFACE, (const char *)ctx);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        /* a peer whose tunnel is down should cost the dispatcher seconds, not the whole timeout */
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)(timeout_ms < 3000 ? timeout_ms : 3000));
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, node_client_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        rc = curl_easy_perform(c);
        if (rc != CURLE_OK) {
                r = node_client_errno(rc);
                free(a.buf);
        } else {
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
                *ret_body = a.buf;
        }
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return r;
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
