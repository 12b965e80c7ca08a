/* fleetctl's HTTP client (libcurl): JSON in and out, the bearer token, and problem+json errors
 * printed as one line. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_body.h"
#include "fleetctl/fleetctl.h"

#define CTL_ANSWER_MAX (64u * 1024 * 1024)

CURLcode ctl_curl_target(const struct ctl *c, CURL *e, const char *path, struct curl_slist **h)
{
        char auth[256], *url = NULL;
        CURLcode rc;

        if (asprintf(&url, "%s%s", c->url, path) < 0)
                return CURLE_OUT_OF_MEMORY;
        rc = curl_easy_setopt(e, CURLOPT_URL, url); /* libcurl keeps a copy */
        free(url);
        if (c->token) {
                snprintf(auth, sizeof(auth), "Authorization: Bearer %.200s", c->token);
                *h = curl_slist_append(*h, auth);
        }
        return rc;
}

/* fleetd did not answer: one line on stderr, or under -f json / yaml a problem object. */
static void ctl_unreachable(const struct ctl *c, CURLcode rc)
{
        char *detail = NULL;
        const char *shown;

        if (asprintf(&detail, "cannot reach fleetd at '%s': %s", c->url, curl_easy_strerror(rc)) <
            0)
                detail = NULL; /* asprintf leaves it undefined on failure */
        shown = detail ? detail : "cannot reach fleetd (out of memory)";
        if (c->json) {
                json_t *p = json_pack("{s:s, s:s, s:s}", "type", "urn:totebox:fleetctl:unreachable",
                                      "title", "fleetd unreachable", "detail", shown);

                ctl_print(c, p);
                json_decref(p);
        } else {
                fprintf(stderr, "fleetctl: %s\n", shown);
        }
        free(detail);
}

long ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **ret)
{
        struct http_answer b = {.limit = CTL_ANSWER_MAX};
        struct curl_slist *h = NULL;
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        CURL *e = curl_easy_init();
        long status = -1;
        CURLcode rc;

        h = curl_slist_append(h, "Accept: application/json");
        if (text)
                h = curl_slist_append(h, "Content-Type: application/json");
        rc = ctl_curl_target(c, e, path, &h);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_answer_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
        if (text)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, text);
        else if (strcmp(method, "POST") == 0)
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        rc = rc ?: curl_easy_perform(e);
        if (rc != CURLE_OK) {
                ctl_unreachable(c, rc);
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
