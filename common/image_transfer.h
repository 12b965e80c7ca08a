/* Base-image transfers shared by fleetd (the operator's upload, staged) and vmhost (fleetd's
 * push): a partial file on disk keyed by image name and expected SHA-256, appended at the offset
 * it already holds (so an interrupted transfer resumes), never past the declared size, and
 * checked against the expected digest, hashed from disk, before anything is made visible. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAGE_TRANSFER_HEX_LEN 64

struct image_partial {
        int fd; /* -1 when closed */
        char path[4352];
        char want[IMAGE_TRANSFER_HEX_LEN + 1];
        uint64_t size;   /* the declared total */
        uint64_t offset; /* bytes on disk */
};

/* Bytes held on disk for name+hex under dir (0 when none). */
uint64_t image_partial_held(const char *dir, const char *name, const char *hex);
/* Opens (creating) and locks the partial file. -EBUSY: another transfer holds it; -ERANGE:
 * offset is not what the file holds (*ret_held says what it does); -EFBIG: offset > size. */
int image_partial_open(struct image_partial *p, const char *dir, const char *name, const char *hex,
                       uint64_t size, uint64_t offset, uint64_t *ret_held);
/* Appends; -EFBIG when the bytes would pass the declared size. */
int image_partial_write(struct image_partial *p, const void *buf, size_t n);
/* With every byte held: fsync, then hash the file. 0 when it matches (the file stays, at
 * p->path, for the caller to link into place); -EBADMSG when not (the file is removed; ret_got
 * holds what arrived); -EAGAIN when bytes are still missing. */
int image_partial_finish(struct image_partial *p, char ret_got[IMAGE_TRANSFER_HEX_LEN + 1]);
/* Unlocks and closes; the file stays for a later resume. Accepts a closed partial. */
void image_partial_close(struct image_partial *p);
/* Removes the partial file (after it was linked into place or refused). */
void image_partial_discard(struct image_partial *p);
/* Reads up to want bytes of fd at *at, never past end, and moves *at on (a libcurl read
 * callback's body): the bytes read, 0 at end, or a negative errno. */
long image_file_read_range(int fd, uint64_t *at, uint64_t end, void *buf, size_t want);
/* SHA-256 of an open file's whole content, as hex. */
int image_file_sha256(int fd, char ret[IMAGE_TRANSFER_HEX_LEN + 1]);
