/* HKDF (RFC 5869) over HMAC-SHA-512, and over HMAC-SHA-256 so that the RFC's own test vectors
 * (all SHA-256) exercise the same code. libsodium 1.0.18 has the HMACs but no HKDF; the pairing
 * ceremony derives its SAS and AEAD keys from CPace's ISK with HKDF-SHA-512. */
#pragma once
#include <stddef.h>
#include <stdint.h>

enum hkdf_hash { HKDF_SHA256, HKDF_SHA512 };

#define HKDF_MAX_HASH_LEN 64

/* Length of the hash output (32 or 64). */
size_t hkdf_hash_len(enum hkdf_hash h);
/* PRK = HMAC(salt, ikm), hkdf_hash_len(h) bytes; an empty salt means HashLen zero bytes. */
void hkdf_extract(enum hkdf_hash h, uint8_t *prk, const uint8_t *salt, size_t salt_len,
                  const uint8_t *ikm, size_t ikm_len);
/* OKM of okm_len bytes; -EINVAL when okm_len exceeds 255 * HashLen. */
int hkdf_expand(enum hkdf_hash h, uint8_t *okm, size_t okm_len, const uint8_t *prk,
                const uint8_t *info, size_t info_len);
/* Extract then expand with SHA-512; the PRK is wiped. */
int hkdf_sha512(uint8_t *okm, size_t okm_len, const uint8_t *salt, size_t salt_len,
                const uint8_t *ikm, size_t ikm_len, const uint8_t *info, size_t info_len);
