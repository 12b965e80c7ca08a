/* The web panel's static files (config panel_dir; empty: off), at "/" and "/panel/...". GET only,
 * no directory listing (a directory serves its index.html or nothing), no dot segments, no
 * hidden files, no symlink leaving the directory, a size cap, and a content type by extension. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fleetd/api.h"

#define PANEL_FILE_MAX (16u * 1024 * 1024)

static const struct {
        const char *ext;
        const char *type;
} panel_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
    {".map", "application/json"},
    {".wasm", "application/wasm"},
};

static const char *panel_content_type(const char *path)
{
        const char *dot = strrchr(path, '.');

        for (size_t i = 0; dot && i < sizeof(panel_types) / sizeof(panel_types[0]); i++)
                if (strcmp(dot, panel_types[i].ext) == 0)
                        return panel_types[i].type;
        return "application/octet-stream";
}

/* A relative path of safe segments: [A-Za-z0-9._-], none empty, none starting with '.'. */
static bool panel_rel_valid(const char *rel)
{
        bool seg_start = true;

        if (strlen(rel) > 512)
                return false;
        for (const char *p = rel; *p; p++) {
                if (*p == '/') {
                        if (seg_start)
                                return false;
                        seg_start = true;
                        continue;
                }
                if (seg_start && *p == '.')
                        return false;
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
                        return false;
                seg_start = false;
        }
        return true;
}

/* The file under dir that rel names, resolved with realpath(3) (malloc'd: three PATH_MAX
 * buffers do not belong in a frame) and refused outside dir; *ret_real is malloc'd. */
static int panel_resolve(const char *dir, const char *rel, char **ret_real)
{
        char *realdir = realpath(dir, NULL), *path = NULL, *real = NULL;
        struct stat st;
        size_t n = realdir ? strlen(realdir) : 0;
        int r = -ENOENT;

        if (!realdir || asprintf(&path, "%.3000s/%.600s", dir, rel[0] ? rel : "index.html") < 0) {
                path = NULL; /* asprintf leaves it undefined on failure */
                goto cleanup;
        }
        real = realpath(path, NULL);
        if (!real || strncmp(real, realdir, n) != 0 || real[n] != '/')
                goto cleanup;
        if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
                free(path);
                path = NULL;
                if (asprintf(&path, "%s/index.html", real) < 0) {
                        path = NULL;
                        goto cleanup;
                }
                free(real);
                real = realpath(path, NULL);
                if (!real || strncmp(real, realdir, n) != 0)
                        goto cleanup;
        }
        *ret_real = real;
        real = NULL;
        r = 0;
cleanup:
        free(realdir);
        free(path);
        free(real);
        return r;
}

static int panel_read(const char *dir, const char *rel, struct api_response *resp, char **ret_path)
{
        char *real = NULL;
        struct stat st;
        ssize_t n;
        int fd = -1, r = panel_resolve(dir, rel, &real);

        if (r < 0)
                return r;
        r = -ENOENT;
        fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > PANEL_FILE_MAX)
                goto cleanup;
        resp->raw = malloc((size_t)st.st_size + 1);
        if (!resp->raw)
                goto cleanup;
        n = read(fd, resp->raw, (size_t)st.st_size);
        if (n != st.st_size) {
                free(resp->raw);
                resp->raw = NULL;
                goto cleanup;
        }
        resp->raw_len = (size_t)n;
        *ret_path = real;
        real = NULL;
        r = 0;
cleanup:
        if (fd >= 0)
                close(fd);
        free(real);
        return r;
}

void api_panel_get(struct api_request *req, struct api_response *resp)
{
        const char *dir = req->f->cfg.panel_dir;
        const char *rel = "";
        char *served = NULL;

        if (!dir[0]) {
                api_problem(resp, 404, "not-found", "no web panel is configured (panel_dir)");
                return;
        }
        if (strncmp(req->path, "/panel/", 7) == 0)
                rel = req->path + 7;
        if (!panel_rel_valid(rel)) {
                api_problem(resp, 404, "not-found", "no file at '%.128s'", req->path);
                return;
        }
        if (panel_read(dir, rel, resp, &served) < 0) {
                api_problem(resp, 404, "not-found", "no file at '%.128s'", req->path);
                return;
        }
        resp->status = 200;
        resp->content_type = panel_content_type(served);
        free(served);
}
