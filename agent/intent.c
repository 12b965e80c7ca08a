/* The seal intent: before the records of a seal leave the inbox, the agent stores (fsync'd,
 * atomically) what it is about to do in .totebox-agent/intent: for each record, one line with the
 * ledger line it will append (with "protect" still to be decided) and one with its inbox name in
 * hex; then the vault key's Ed25519 signature over "totebox-intent-v1\n" and everything before it
 * (base64): recovery signs a tree head over the intent's lines, so an intent nobody with the key
 * wrote is never believed. A seal of one record stores the same bytes as before seals carried
 * several. A seal cut short at any point is completed or abandoned from this record on the next
 * start (recover.c); docs/agent.md says how. This file only formats, stores, loads and removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

#define INTENT_FILE     "intent"
#define INTENT_BAD_FILE "intent.bad"
#define INTENT_SIG_B64  sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)
#define INTENT_ITEM_MAX (LEDGER_LINE_MAX + 2 * 255 + 2)
#define INTENT_MAX      (SEAL_BATCH_MAX * INTENT_ITEM_MAX + INTENT_SIG_B64)
#define INTENT_DOMAIN   "totebox-intent-v1\n"

static int intent_sign_b64(const char *body, size_t len, const uint8_t *sk, char *ret_b64)
{
        size_t dl = strlen(INTENT_DOMAIN);
        uint8_t *msg = malloc(dl + len), sig[crypto_sign_BYTES];

        if (!msg)
                return -ENOMEM;
        memcpy(msg, INTENT_DOMAIN, dl);
        memcpy(msg + dl, body, len);
        crypto_sign_detached(sig, NULL, msg, dl + len, sk);
        free(msg);
        sodium_bin2base64(ret_b64, INTENT_SIG_B64, sig, sizeof(sig),
                          sodium_base64_VARIANT_ORIGINAL);
        return 0;
}

static int intent_format_item(const struct seal_intent *in, char *buf, size_t size)
{
        char hex[2 * 255 + 1];
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
        return n + snprintf(buf + n, size - (size_t)n, "\n%s\n", hex);
}

int intent_store(int state_fd, const struct seal_intent *items, size_t n,
                 const uint8_t sk[STH_SECRET_KEY_LEN])
{
        char *buf = NULL;
        size_t len = 0;
        int r = 0;

        if (n == 0 || n > SEAL_BATCH_MAX)
                return -EINVAL;
        buf = malloc(n * INTENT_ITEM_MAX + INTENT_SIG_B64 + 1);
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = intent_format_item(&items[i], buf + len, INTENT_ITEM_MAX + 1);
                if (r >= 0)
                        len += (size_t)r;
        }
        if (r >= 0)
                r = intent_sign_b64(buf, len, sk, buf + len);
        if (r >= 0) {
                len += INTENT_SIG_B64 - 1;
                buf[len++] = '\n';
                r = vault_write_state(state_fd, INTENT_FILE, buf, len, 0600);
        }
        free(buf);
        return r;
}

/* One record: a ledger entry line, then the inbox name in hex (no NUL, no '/'). Returns the
 * bytes used or -EINVAL. */
static ssize_t intent_parse_item(const char *buf, size_t len, struct seal_intent *ret)
{
        const char *nl = memchr(buf, '\n', len), *hex, *end;
        size_t got = 0;

        memset(ret, 0, sizeof(*ret));
        if (!nl || ledger_entry_parse(buf, (size_t)(nl - buf), &ret->e, NULL, 0) < 0)
                return -EINVAL;
        hex = nl + 1;
        end = memchr(hex, '\n', len - (size_t)(hex - buf));
        if (!end || end == hex || (size_t)(end - hex) > 2 * 255)
                return -EINVAL;
        if (sodium_hex2bin((uint8_t *)ret->inbox, sizeof(ret->inbox) - 1, hex, (size_t)(end - hex),
                           NULL, &got, NULL) != 0 ||
            got == 0 || strlen(ret->inbox) != got || strchr(ret->inbox, '/'))
                return -EINVAL;
        return end + 1 - buf;
}

static int intent_parse_sig(const char *sig, size_t len, uint8_t ret[64])
{
        size_t got = 0;

        if (len != INTENT_SIG_B64 || sig[len - 1] != '\n' ||
            sodium_base642bin(ret, 64, sig, INTENT_SIG_B64 - 1, NULL, &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            got != 64)
                return -EINVAL;
        return 0;
}

/* Records until what is left is exactly a signature line (a ledger line starts with '{', which
 * base64 never holds); sequence numbers consecutive. */
int intent_parse(const char *buf, size_t len, struct seal_intent_set *ret)
{
        struct seal_intent_set s = {0};
        size_t at = 0;

        if (len > INTENT_MAX)
                return -EINVAL;
        s.items = calloc(SEAL_BATCH_MAX, sizeof(*s.items));
        if (!s.items)
                return -ENOMEM;
        while (len - at != INTENT_SIG_B64 || buf[at] == '{') {
                ssize_t used;

                if (s.n == SEAL_BATCH_MAX || len - at < INTENT_SIG_B64)
                        goto fail;
                used = intent_parse_item(buf + at, len - at, &s.items[s.n]);
                if (used < 0 || (s.n && s.items[s.n].e.seq != s.items[0].e.seq + s.n))
                        goto fail;
                at += (size_t)used;
                s.n++;
        }
        if (s.n == 0 || intent_parse_sig(buf + at, len - at, s.signature) < 0)
                goto fail;
        s.signed_len = at;
        *ret = s;
        return 0;
fail:
        free(s.items);
        return -EINVAL;
}

static int intent_check_sig(const struct seal_intent_set *s, const char *buf, const uint8_t *pk)
{
        size_t dl = strlen(INTENT_DOMAIN);
        uint8_t *msg = malloc(dl + s->signed_len);
        int r;

        if (!msg)
                return -ENOMEM;
        memcpy(msg, INTENT_DOMAIN, dl);
        memcpy(msg + dl, buf, s->signed_len);
        r = crypto_sign_verify_detached(s->signature, msg, dl + s->signed_len, pk) == 0
                ? 0
                : -EKEYREJECTED;
        free(msg);
        return r;
}

int intent_load(int state_fd, const uint8_t *pk, struct seal_intent_set *ret)
{
        struct seal_intent_set s;
        char *buf = NULL;
        ssize_t n;
        int fd, r;

        if (state_fd < 0)
                return -ENOENT;
        fd = vault_open_regular(state_fd, INTENT_FILE, O_RDONLY);
        if (fd < 0)
                return fd;
        buf = malloc(INTENT_MAX + 1);
        n = buf ? read(fd, buf, INTENT_MAX + 1) : -1;
        r = !buf ? -ENOMEM : n < 0 ? -errno : (size_t)n > INTENT_MAX ? -EINVAL : 0;
        close(fd);
        if (r == 0)
                r = intent_parse(buf, (size_t)n, &s);
        if (r == 0) {
                r = pk ? intent_check_sig(&s, buf, pk) : -EKEYREJECTED;
                if (r < 0)
                        intent_set_done(&s);
        }
        free(buf);
        if (r == 0)
                *ret = s;
        return r;
}

void intent_set_done(struct seal_intent_set *s)
{
        if (!s)
                return;
        free(s->items);
        s->items = NULL;
        s->n = 0;
}

bool intent_set_has_asset(const struct seal_intent_set *s, const char *name)
{
        for (size_t i = 0; s && i < s->n; i++)
                if (strcmp(s->items[i].e.path + 7, name) == 0)
                        return true;
        return false;
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
