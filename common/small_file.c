/* Whole-file reads and atomic writes of small state files (see the header). */
#include "common/small_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int small_file_read(const char *path, size_t max, bool private, char **ret, size_t *ret_len)
{
        struct stat st;
        char *buf = NULL;
        ssize_t n = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), r = 0;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                r = -errno;
        else if (!S_ISREG(st.st_mode))
                r = -EINVAL;
        else if (private && (st.st_mode & 077))
                r = -EPERM;
        else if ((size_t)st.st_size > max)
                r = -EFBIG;
        else if (!(buf = malloc((size_t)st.st_size + 1)))
                r = -ENOMEM;
        if (r == 0) {
                n = read(fd, buf, (size_t)st.st_size);
                if (n < 0 || (size_t)n != (size_t)st.st_size)
                        r = n < 0 ? -errno : -EIO;
        }
        close(fd);
        if (r < 0) {
                free(buf);
                return r;
        }
        buf[n] = '\0';
        *ret = buf;
        *ret_len = (size_t)n;
        return 0;
}

/* Writes buf to tmp (path's temporary name), fsync'd, mode exactly; 0 or -errno (the temporary
 * file removed). */
static int small_file_write_tmp(const char *tmp, const char *buf, size_t len, mode_t mode)
{
        int fd, r = 0;

        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0)
                r = -EIO;
        close(fd);
        if (r < 0)
                unlink(tmp);
        return r;
}

/* path's file from buf, put in place by rename (replacing) or, with exclusive, by link (never
 * over an existing file: -EEXIST). */
static int small_file_put(const char *path, const char *buf, size_t len, mode_t mode,
                          bool exclusive)
{
        char *tmp = NULL;
        int r;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        r = small_file_write_tmp(tmp, buf, len, mode);
        if (r == 0 && (exclusive ? link(tmp, path) : rename(tmp, path)) < 0)
                r = -errno;
        if (r < 0 || exclusive) /* a rename leaves no temporary file; a link does */
                unlink(tmp);
        free(tmp);
        return r;
}

int small_file_write(const char *path, const char *buf, size_t len, mode_t mode)
{
        return small_file_put(path, buf, len, mode, false);
}

int small_file_create(const char *path, const char *buf, size_t len, mode_t mode)
{
        return small_file_put(path, buf, len, mode, true);
}

char *small_file_path(const char *dir, const char *name)
{
        char *p = NULL;

        return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}
