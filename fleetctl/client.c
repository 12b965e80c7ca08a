/* fleetctl's HTTP client (libcurl): JSON in and out, the bearer token, and problem+json errors
 * printed as one line. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_body.h"
#include "fleetctl/fleetctl.h"

#define CTL_ANSWER_MAX (64u * 1024 * 1024)

long ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **ret)
{
        struct http_answer b = {.limit = CTL_ANSWER_MAX};
        struct curl_slist *h = NULL;
        char url[2048], auth[256];
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        CURL *e = curl_easy_init();
        long status = -1;
        CURLcode rc;

        snprintf(url, sizeof(url), "%s%s", c->url, path);
        h = curl_slist_append(h, "Accept: application/json");
        if (text)
                h = curl_slist_append(h, "Content-Type: application/json");
        if (c->token) {
                snprintf(auth, sizeof(auth), "Authorization: Bearer %.200s", c->token);
                h = curl_slist_append(h, auth);
        }
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_answer_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        if (text)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, text);
        else if (strcmp(method, "POST") == 0)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        rc = curl_easy_perform(e);
        if (rc != CURLE_OK) {
                char detail[2300];

                snprintf(detail, sizeof(detail), "cannot reach fleetd at '%s': %s", c->url,
                         curl_easy_strerror(rc));
                if (c->json) {
                        json_t *p =
                            json_pack("{s:s, s:s, s:s}", "type", "urn:totebox:fleetctl:unreachable",
                                      "title", "fleetd unreachable", "detail", detail);

                        ctl_print(c, p);
                        json_decref(p);
                } else {
                        fprintf(stderr, "fleetctl: %s\n", detail);
                }
        } else {
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                *ret = b.body.data ? json_loads(b.body.data, 0, NULL) : NULL;
        }
        http_body_done(&b.body);
        free(text);
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        return status;
}

int ctl_problem(const struct ctl *c, long status, json_t *answer)
{
        const char *title = json_string_value(json_object_get(answer, "title"));
        const char *detail = json_string_value(json_object_get(answer, "detail"));

        if (c->json) {
                /* fleetd's problem as it sent it; an answer that is none (a proxy's page) as one */
                json_t *p = json_is_object(answer) && title
                                ? json_incref(answer)
                                : json_pack("{s:s, s:s, s:I}", "type", "about:blank", "title",
                                            "HTTP error", "status", (json_int_t)status);

                ctl_print(c, p);
                json_decref(p);
                return 1;
        }
        fprintf(stderr, "fleetctl: %s (%ld): %s\n", title ? title : "error", status,
                detail ? detail : "no detail");
        return 1;
}
