/* Small state files read and written whole: a read opens only a regular file (no FIFO, device
 * or symlink, never blocking) of bounded size, and can refuse one that group or others can read
 * (secrets); a write goes through a temporary file that is fsync'd before the rename, so a
 * reader sees the old content or the new, never a part. A create never replaces a file: the
 * complete temporary file is linked to the name, which fails when the name exists. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* *ret is malloc'd and NUL-terminated. -EINVAL: not a regular file; -EFBIG: larger than max;
 * -EPERM: private and readable by group or others; else -errno. */
int small_file_read(const char *path, size_t max, bool private, char **ret, size_t *ret_len);
int small_file_write(const char *path, const char *buf, size_t len, mode_t mode);
/* Like small_file_write, but -EEXIST when path exists (and nothing written). */
int small_file_create(const char *path, const char *buf, size_t len, mode_t mode);
/* "dir/name", malloc'd, or NULL without memory: a path built on the heap, so that no function
 * carries a PATH_MAX buffer in its frame (-Wframe-larger-than=2048). */
char *small_file_path(const char *dir, const char *name);
