/* The node's creation counter (docs/contracts.md, heartbeat field "creations"): a number kept in
 * state_dir/creations that never goes back. It is increased, and written to disk, after every
 * creation request (whether it defined a domain, found one, or failed after defining it), after
 * every start and resume (a suspended VM takes its memory back), and at every vmhost start,
 * before the first inventory refresh. A refresh records the value it read
 * before it listed the domains; heartbeats and inventories carry that value with the figures
 * and the listing it produced. So figures carrying N were sampled after every creation whose
 * acknowledgement carried N or less, and fleetd can hold a creation's memory until then.
 * The start-up increase covers a creation interrupted between its domain's definition and its
 * own increase: everything defined before a restart is below every value after it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhost/vmhost.h"

#define CREATIONS_FILE "creations"

/* state_dir/creations SUFFIX, malloc'd (NULL without memory): no path buffer in the frames. */
static char *creations_path(const struct vmhost *vh, const char *suffix)
{
        char *p = NULL;

        if (asprintf(&p, "%s/%s%s", vh->cfg.state_dir, CREATIONS_FILE, suffix) < 0)
                return NULL;
        return p;
}

/* Reads the stored value; a missing file is 0, anything but digits and a newline is refused. */
static int creations_read(const struct vmhost *vh, uint64_t *ret)
{
        char *path = creations_path(vh, ""), buf[32];
        uint64_t v = 0;
        ssize_t n;
        int fd, r;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -errno : 0;
        free(path);
        if (fd < 0) {
                if (r != -ENOENT)
                        return r;
                *ret = 0;
                return 0;
        }
        n = read(fd, buf, sizeof(buf) - 1);
        r = n < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
                return r;
        if (n <= 0 || n > 20)
                return -EBADMSG;
        buf[n] = '\0';
        if (buf[0] < '0' || buf[0] > '9')
                return -EBADMSG;
        for (ssize_t i = 0; i < n; i++) {
                if (buf[i] == '\n' && i == n - 1)
                        break;
                if (buf[i] < '0' || buf[i] > '9' || v > (INT64_MAX - 9) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t)(buf[i] - '0');
        }
        *ret = v;
        return 0;
}

/* Writes v durably: a new file, fsync, rename over the old one, fsync of the directory. */
static int creations_write_via(const struct vmhost *vh, const char *path, const char *tmp,
                               uint64_t v)
{
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)v);
        int fd, dfd, r = 0;

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (write(fd, buf, (size_t)len) != len || fsync(fd) < 0)
                r = errno ? -errno : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        dfd = open(vh->cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        r = fsync(dfd) < 0 ? -errno : 0;
        close(dfd);
        return r;
}

static int creations_write(const struct vmhost *vh, uint64_t v)
{
        char *path = creations_path(vh, ""), *tmp = creations_path(vh, ".new");
        int r = path && tmp ? creations_write_via(vh, path, tmp, v) : -ENOMEM;

        free(path);
        free(tmp);
        return r;
}

static int creations_store(struct vmhost *vh, uint64_t v)
{
        int r = v > INT64_MAX ? -EOVERFLOW : creations_write(vh, v);

        if (r == 0)
                atomic_store(&vh->creations, v);
        return r;
}

int creations_start(struct vmhost *vh)
{
        uint64_t v = 0;
        int r = creations_read(vh, &v);

        r = r ?: creations_store(vh, v + 1);
        vh->creations_loaded = r == 0;
        return r;
}

int creations_bump(struct vmhost *vh, uint64_t *ret)
{
        int r = vh->creations_loaded ? 0 : creations_start(vh);

        r = r ?: creations_store(vh, atomic_load(&vh->creations) + 1);
        if (r == 0)
                *ret = atomic_load(&vh->creations);
        return r;
}

uint64_t creations_current(struct vmhost *vh)
{
        return atomic_load(&vh->creations);
}
