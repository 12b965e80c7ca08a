/* The seal intent: before a record leaves the inbox, the agent stores (fsync'd, atomically) what
 * it is about to do in .totebox-agent/intent: line 1 is the ledger line it will append (with
 * "protect" still to be decided), line 2 the inbox name in hex, line 3 the vault key's Ed25519
 * signature over "totebox-intent-v1\n" and lines 1-2 (base64): recovery signs a tree head over
 * the intent's line, so an intent nobody with the key wrote is never believed. A seal cut short at
 * any point is completed or abandoned from this record on the next start (recover.c); docs/agent.md
 * says how. This file only formats, stores, loads and removes the record. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

#define INTENT_FILE     "intent"
#define INTENT_BAD_FILE "intent.bad"
#define INTENT_SIG_B64  sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)
#define INTENT_MAX      (LEDGER_LINE_MAX + 2 * 256 + 4 + INTENT_SIG_B64)
#define INTENT_DOMAIN   "totebox-intent-v1\n"

static void intent_message(const char *body, size_t len, uint8_t *msg)
{
        memcpy(msg, INTENT_DOMAIN, strlen(INTENT_DOMAIN));
        memcpy(msg + strlen(INTENT_DOMAIN), body, len);
}

int intent_store(int state_fd, const struct seal_intent *in, const uint8_t sk[STH_SECRET_KEY_LEN])
{
        char buf[INTENT_MAX], hex[2 * 255 + 1], b64[INTENT_SIG_B64];
        uint8_t msg[INTENT_MAX + sizeof(INTENT_DOMAIN)], sig[crypto_sign_BYTES];
        struct ledger_entry e = in->e;
        size_t name_len = strlen(in->inbox);
        int n;

        if (name_len == 0 || name_len > 255)
                return -ENAMETOOLONG;
        e.protect = LEDGER_PROTECT_IMMUTABLE;
        n = ledger_entry_format(&e, buf, LEDGER_LINE_MAX);
        if (n < 0)
                return n;
        sodium_bin2hex(hex, sizeof(hex), (const uint8_t *)in->inbox, name_len);
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\n%s\n", hex);
        intent_message(buf, (size_t)n, msg);
        crypto_sign_detached(sig, NULL, msg, strlen(INTENT_DOMAIN) + (size_t)n, sk);
        sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s\n", b64);
        return vault_write_state(state_fd, INTENT_FILE, buf, (size_t)n, 0600);
}

/* Line 1 a ledger entry, line 2 the inbox name in hex (no NUL, no '/'), line 3 the signature,
 * nothing after. ret is untouched on failure. */
int intent_parse(const char *buf, size_t len, struct seal_intent *ret)
{
        const char *nl = memchr(buf, '\n', len), *hex, *end, *sig;
        struct seal_intent in;
        size_t got = 0;

        memset(&in, 0, sizeof(in));
        if (!nl || len > INTENT_MAX)
                return -EINVAL;
        if (ledger_entry_parse(buf, (size_t)(nl - buf), &in.e, NULL, 0) < 0)
                return -EINVAL;
        hex = nl + 1;
        end = memchr(hex, '\n', len - (size_t)(hex - buf));
        if (!end || end == hex || (size_t)(end - hex) > 2 * 255)
                return -EINVAL;
        sig = end + 1;
        if ((size_t)(buf + len - sig) != INTENT_SIG_B64 || buf[len - 1] != '\n' ||
            sodium_base642bin(in.signature, sizeof(in.signature), sig, INTENT_SIG_B64 - 1, NULL,
                              &got, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            got != sizeof(in.signature))
                return -EINVAL;
        in.signed_len = (size_t)(sig - buf);
        got = 0;
        if (sodium_hex2bin((uint8_t *)in.inbox, sizeof(in.inbox) - 1, hex, (size_t)(end - hex),
                           NULL, &got, NULL) != 0 ||
            got == 0 || strlen(in.inbox) != got || strchr(in.inbox, '/'))
                return -EINVAL;
        *ret = in;
        return 0;
}

int intent_load(int state_fd, const uint8_t *pk, struct seal_intent *ret)
{
        uint8_t msg[INTENT_MAX + sizeof(INTENT_DOMAIN)];
        char buf[INTENT_MAX + 1];
        struct seal_intent in;
        ssize_t n;
        int fd, r;

        if (state_fd < 0)
                return -ENOENT;
        fd = vault_open_regular(state_fd, INTENT_FILE, O_RDONLY);
        if (fd < 0)
                return fd;
        n = read(fd, buf, sizeof(buf));
        r = n < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
                return r;
        if ((size_t)n > INTENT_MAX)
                return -EINVAL;
        r = intent_parse(buf, (size_t)n, &in);
        if (r < 0)
                return r;
        intent_message(buf, in.signed_len, msg);
        if (!pk || crypto_sign_verify_detached(in.signature, msg,
                                               strlen(INTENT_DOMAIN) + in.signed_len, pk) != 0)
                return -EKEYREJECTED;
        *ret = in;
        return 0;
}

int intent_remove(int state_fd)
{
        if (unlinkat(state_fd, INTENT_FILE, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int intent_set_aside(int state_fd)
{
        if (renameat(state_fd, INTENT_FILE, state_fd, INTENT_BAD_FILE) < 0 && errno != ENOENT)
                return -errno;
        return fsync(state_fd) < 0 ? -errno : 0;
}
