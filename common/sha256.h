/* SHA-256 (FIPS 180-4) with the x86 SHA extensions when the CPU has them.
 *
 * libsodium's SHA-256 is portable C (0.29 GB/s here); the SHA extensions hash about six times
 * faster, which matters where SHA-256 is the bulk of the work: the agent's ledger (two hashes a
 * line and the Merkle tree) and vmhost's image checksums. The interface is libsodium's shape:
 * init, update, final, or one call. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
        uint32_t h[8];
        uint64_t bytes; /* message length so far */
        uint8_t buf[64];
        size_t fill; /* bytes waiting in buf */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t ret[SHA256_LEN]);
void sha256_digest(const void *data, size_t len, uint8_t ret[SHA256_LEN]);

/* "sha-ni" or "generic", chosen at first use; sha256_force() pins one for tests and benchmarks
 * (-ENOTSUP when the CPU lacks it, -ENOENT for an unknown name). */
const char *sha256_impl_name(void);
int sha256_force(const char *name);
