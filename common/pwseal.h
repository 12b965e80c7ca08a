/* Passphrase sealing: what fleetctl's sealed backups (fleetd/backup.h) and totebox-pair's
 * genesis key backup (provision/pairing.h) share. A key from the passphrase with Argon2id
 * (crypto_pwhash; salt and limits stored in the file), then the plain text in chunks of
 * XChaCha20-Poly1305 secretstream, the last tagged FINAL, so that a file cut short, extended or
 * altered anywhere does not open.
 *
 * Sealed: MAGIC (8 bytes, the caller's), salt (16), ops and mem limits (8 each, big-endian), the
 * secretstream header (24), then chunks (4-byte big-endian length, ciphertext). The first chunk's
 * additional data is the head (everything before the first chunk) followed by the caller's ad:
 * the limits, the salt and whatever the caller keeps in clear beside the sealed bytes are bound
 * to the passphrase. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define PWSEAL_MAGIC_LEN 8
#define PWSEAL_HEAD_LEN  (PWSEAL_MAGIC_LEN + 16 + 16 + 24)
#define PWSEAL_PASS_MAX  1024 /* a passphrase file's first line, at most */
#define PWSEAL_PASS_MIN  8

/* Argon2id limits; pwseal_moderate: libsodium's moderate ones (3 passes, 256 MiB). */
struct pwseal_limits {
        uint64_t ops, mem;
};
extern const struct pwseal_limits pwseal_moderate;

/* Seals plain (len bytes) under magic and ad (may be NULL with ad_len 0) into a malloc'd *ret.
 * 0, -ENOMEM, or -EINVAL for limits outside libsodium's minimum..sensitive ones. */
int pwseal_seal(const char magic[PWSEAL_MAGIC_LEN], const uint8_t *ad, size_t ad_len,
                const uint8_t *plain, size_t len, const char *passphrase,
                const struct pwseal_limits *limits, uint8_t **ret, size_t *ret_len);
/* Opens what pwseal_seal made with the same magic and ad: -EACCES for a wrong passphrase or an
 * altered file, -EBADMSG for one cut short, extended, of another magic or with limits outside
 * minimum..sensitive (checked before any derivation: a crafted file cannot ask for any amount
 * of memory). *ret is malloc'd, wiped by the caller when secret. */
int pwseal_open(const char magic[PWSEAL_MAGIC_LEN], const uint8_t *ad, size_t ad_len,
                const uint8_t *sealed, size_t len, const char *passphrase, uint8_t **ret,
                size_t *ret_len);
/* The limits a sealed file declares (not yet checked against any bound); -EBADMSG when it is
 * shorter than the head. Fuzz targets use it to open only what is cheap to open. */
int pwseal_limits_get(const uint8_t *sealed, size_t len, struct pwseal_limits *ret);
/* The passphrase: the first line of path, in sodium_malloc'd memory (*ret, sodium_free it).
 * -errno when unreadable, -EINVAL when shorter than PWSEAL_PASS_MIN characters. */
int pwseal_passphrase_load(const char *path, char **ret);
