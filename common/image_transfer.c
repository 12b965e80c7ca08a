/* Partial image files for resumable, checksummed transfers (see image_transfer.h). The file is
 * DIR/.partial-NAME-HEX: the name is an IDENT_IMAGE id (common/ident.h) and the digest is hex,
 * so neither can carry a path separator. */
#include "common/image_transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ident.h"
#include "common/sha256.h"

static int image_partial_path(const char *dir, const char *name, const char *hex, char *buf,
                              size_t size)
{
        if (!ident_valid(IDENT_IMAGE, name) || !ident_hex_valid(hex, IMAGE_TRANSFER_HEX_LEN))
                return -EINVAL;
        if ((size_t)snprintf(buf, size, "%s/.partial-%s-%s", dir, name, hex) >= size)
                return -ENAMETOOLONG;
        return 0;
}

uint64_t image_partial_held(const char *dir, const char *name, const char *hex)
{
        struct image_partial *p = malloc(sizeof(*p)); /* its path buffer: not on the stack */
        struct stat st;
        uint64_t held = 0;

        if (p && image_partial_path(dir, name, hex, p->path, sizeof(p->path)) == 0 &&
            lstat(p->path, &st) == 0 && S_ISREG(st.st_mode))
                held = (uint64_t)st.st_size;
        free(p);
        return held;
}

int image_partial_open(struct image_partial *p, const char *dir, const char *name, const char *hex,
                       uint64_t size, uint64_t offset, uint64_t *ret_held)
{
        struct stat st;
        int r = image_partial_path(dir, name, hex, p->path, sizeof(p->path));

        p->fd = -1;
        if (r < 0)
                return r;
        if (offset > size)
                return -EFBIG;
        /* created only by an upload from 0: a probe at another offset leaves nothing behind */
        p->fd = open(p->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (offset == 0 ? O_CREAT : 0), 0600);
        if (p->fd < 0 && errno == ENOENT) {
                *ret_held = 0;
                return -ERANGE;
        }
        if (p->fd < 0)
                return -errno;
        if (flock(p->fd, LOCK_EX | LOCK_NB) < 0)
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        else if (fstat(p->fd, &st) < 0)
                r = -errno;
        else if (!S_ISREG(st.st_mode))
                r = -EINVAL;
        else if ((uint64_t)st.st_size != offset) {
                *ret_held = (uint64_t)st.st_size;
                r = -ERANGE;
        } else if (lseek(p->fd, (off_t)offset, SEEK_SET) < 0)
                r = -errno;
        if (r < 0) {
                close(p->fd);
                p->fd = -1;
                return r;
        }
        snprintf(p->want, sizeof(p->want), "%s", hex);
        p->size = size;
        p->offset = offset;
        return 0;
}

int image_partial_write(struct image_partial *p, const void *buf, size_t n)
{
        const char *b = buf;

        if (n > p->size - p->offset)
                return -EFBIG;
        while (n > 0) {
                ssize_t w = write(p->fd, b, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                b += w;
                n -= (size_t)w;
                p->offset += (uint64_t)w;
        }
        return 0;
}

long image_file_read_range(int fd, uint64_t *at, uint64_t end, void *buf, size_t want)
{
        ssize_t n;

        if (want > end - *at)
                want = (size_t)(end - *at);
        if (want == 0)
                return 0;
        n = pread(fd, buf, want, (off_t)*at);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        *at += (uint64_t)n;
        return (long)n;
}

/* The read buffer is the call's own (not a __thread array: glibc zeroes a thread's static TLS
 * at every pthread_create, so 128 KiB there cost each of fleetd's REST and dispatch threads
 * 128 KiB resident, ~10 MiB under load). */
#define IMAGE_SHA256_CHUNK (1u << 17)
int image_file_sha256(int fd, char ret[IMAGE_TRANSFER_HEX_LEN + 1])
{
        static const char digits[] = "0123456789abcdef";
        unsigned char *buf = malloc(IMAGE_SHA256_CHUNK);
        uint8_t d[SHA256_LEN];
        struct sha256 st;
        off_t at = 0;
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        sha256_init(&st);
        while ((n = pread(fd, buf, IMAGE_SHA256_CHUNK, at)) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;

                        free(buf);
                        return r;
                }
                sha256_update(&st, buf, (size_t)n);
                at += n;
        }
        free(buf);
        sha256_final(&st, d);
        for (unsigned i = 0; i < SHA256_LEN; i++) {
                ret[2 * i] = digits[d[i] >> 4];
                ret[2 * i + 1] = digits[d[i] & 15];
        }
        ret[IMAGE_TRANSFER_HEX_LEN] = '\0';
        return 0;
}

int image_partial_finish(struct image_partial *p, char ret_got[IMAGE_TRANSFER_HEX_LEN + 1])
{
        int r;

        if (p->offset != p->size)
                return -EAGAIN;
        if (fsync(p->fd) < 0)
                return -errno;
        r = image_file_sha256(p->fd, ret_got);
        if (r < 0)
                return r;
        if (strcmp(ret_got, p->want) != 0) {
                image_partial_discard(p);
                return -EBADMSG;
        }
        return 0;
}

void image_partial_close(struct image_partial *p)
{
        if (p->fd >= 0)
                close(p->fd); /* releases the lock */
        p->fd = -1;
}

void image_partial_discard(struct image_partial *p)
{
        unlink(p->path);
        image_partial_close(p);
}
