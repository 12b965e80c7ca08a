/* Transparency-log checkpoints in the C2SP formats, so that stock tooling (Go's sumdb/note,
 * transparency-dev) reads them:
 *   - tlog-checkpoint: the note text is "<origin>\n<size>\n<base64 root>\n" (extension lines may
 *     follow and are kept out of the struct);
 *   - signed-note: text, a blank line, then lines "— <key name> <base64(key id || signature)>\n"
 *     where key id = SHA-256(name || 0x0A || 0x01 || public key)[:4] for Ed25519 and the
 *     signature covers the text including its final newline;
 *   - verifier keys "<name>+<hex key id>+<base64(0x01 || public key)>" and signer keys
 *     "PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>".
 * Pure functions over bounded buffers; nothing here logs or touches files. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/merkle.h"

#define TLOG_NOTE_MAX       8192 /* a note we sign or accept, signatures included */
#define TLOG_NAME_MAX       128  /* key names and origins */
#define TLOG_SIGNATURES_MAX 100  /* as Go's note.Open */
#define TLOG_PUBLIC_KEY_LEN 32
#define TLOG_SECRET_KEY_LEN 64 /* libsodium's seed || public key */
#define TLOG_KEY_ID_LEN     4
#define TLOG_VKEY_MAX       (TLOG_NAME_MAX + 1 + 8 + 1 + 48)
#define TLOG_SKEY_MAX       (12 + TLOG_VKEY_MAX)

struct tlog_checkpoint {
        char origin[TLOG_NAME_MAX + 1];
        uint64_t size;
        merkle_hash root;
};

struct tlog_key {
        char name[TLOG_NAME_MAX + 1];
        uint8_t id[TLOG_KEY_ID_LEN];
        uint8_t pk[TLOG_PUBLIC_KEY_LEN];
};

/* True when name is a valid key name / origin: 1..TLOG_NAME_MAX printable ASCII, no space,
 * no '+'. */
int tlog_name_valid(const char *name);
void tlog_key_id(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                 uint8_t ret[TLOG_KEY_ID_LEN]);
/* Fills ret from name and pk (computing the id); -EINVAL for a bad name. */
int tlog_key_init(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN], struct tlog_key *ret);

/* Verifier key text: encode into buf (size >= TLOG_VKEY_MAX + 1); parse checks the id. */
int tlog_vkey_format(const struct tlog_key *k, char *buf, size_t size);
int tlog_vkey_parse(const char *text, struct tlog_key *ret);
/* Signer key text holding the 32-byte seed; parse fills the key and the 64-byte secret key. */
int tlog_skey_format(const char *name, const uint8_t sk[TLOG_SECRET_KEY_LEN], char *buf,
                     size_t size);
int tlog_skey_parse(const char *text, struct tlog_key *ret_key,
                    uint8_t ret_sk[TLOG_SECRET_KEY_LEN]);

/* Writes the checkpoint's note text (no signature) into buf; returns its length or -ENOSPC /
 * -EINVAL. */
int tlog_checkpoint_text(const struct tlog_checkpoint *c, char *buf, size_t size);
/* Parses a note text (the part the signatures cover) as a checkpoint; -EBADMSG when it is not
 * one. Extension lines after the root are allowed and ignored. */
int tlog_checkpoint_parse_text(const char *text, size_t len, struct tlog_checkpoint *ret);

/* Signs any note text (non-empty, ending in '\n'; text may alias buf): writes text, a blank
 * line and one signature line into buf and returns the note's length. */
int tlog_note_sign(const char *text, size_t len, const struct tlog_key *key,
                   const uint8_t sk[TLOG_SECRET_KEY_LEN], char *buf, size_t size);
/* Splits a signed note and checks the syntax of every signature line; *ret_text_len is the
 * length the signatures cover. With key NULL only the syntax is checked; else 0 only when key's
 * first line verifies (-ENOKEY: none; -EKEYREJECTED: it does not verify). */
int tlog_note_verify(const char *note, size_t len, const struct tlog_key *key,
                     size_t *ret_text_len);

/* Signs the checkpoint as a signed note: text, blank line, one signature line by (key, sk).
 * Returns the note's length (NUL-terminated in buf) or a negative errno. */
int tlog_checkpoint_sign(const struct tlog_checkpoint *c, const struct tlog_key *key,
                         const uint8_t sk[TLOG_SECRET_KEY_LEN], char *buf, size_t size);

/* Opens a signed note: checks its syntax (UTF-8 text without control characters but '\n',
 * at most TLOG_SIGNATURES_MAX well-formed signature lines) and that key signed it, then parses
 * the text as a checkpoint. 0, or -EBADMSG (malformed), -ENOKEY (no signature line from key),
 * -EKEYREJECTED (key's signature does not verify). Lines from other keys are ignored. */
int tlog_checkpoint_open(const char *note, size_t len, const struct tlog_key *key,
                         struct tlog_checkpoint *ret);
/* The same without a key: only the syntax and the checkpoint (for a fuzz target, and to name
 * what an untrusted note claims). */
int tlog_checkpoint_open_unverified(const char *note, size_t len, struct tlog_checkpoint *ret);

/* C2SP tlog-cosignature cosignature/v1 (Ed25519): a witness's note signature line
 * "— <name> base64(key id || u64be(time) || signature)" where key id =
 * SHA-256(name || 0x0A || 0x04 || public key)[:4] and the signature covers
 * "cosignature/v1\ntime <secs>\n" || the note text. A cosigner key is a struct tlog_key whose
 * id is the cosignature key id (tlog_cosig_key_init). */
#define TLOG_COSIG_BLOB_LEN (TLOG_KEY_ID_LEN + 8 + 64)

void tlog_cosig_key_id(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                       uint8_t ret[TLOG_KEY_ID_LEN]);
int tlog_cosig_key_init(const char *name, const uint8_t pk[TLOG_PUBLIC_KEY_LEN],
                        struct tlog_key *ret);
/* Verifier key text with signature type 0x04: "<name>+<hex id>+<base64(0x04 || pk)>". */
int tlog_cosig_vkey_format(const struct tlog_key *k, char *buf, size_t size);
int tlog_cosig_vkey_parse(const char *text, struct tlog_key *ret);
/* Appends key's cosignature line over the signed note's text to the note in buf (len bytes,
 * NUL-terminated on return); returns the new length or a negative errno (-EBADMSG: buf holds no
 * well-formed note; -ENOSPC). time_s must be at most 2^63 - 1. */
int tlog_note_cosign(char *buf, size_t len, size_t size, const struct tlog_key *key,
                     const uint8_t sk[TLOG_SECRET_KEY_LEN], uint64_t time_s);
/* 0 when the first line of key (name and cosignature key id) verifies; *ret_time_s is its
 * timestamp. -EBADMSG (malformed note), -ENOKEY (no line from key), -EKEYREJECTED. */
int tlog_note_cosig_verify(const char *note, size_t len, const struct tlog_key *key,
                           uint64_t *ret_time_s);
