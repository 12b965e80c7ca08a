/* The seal intent: before a record leaves the inbox, the agent stores (fsync'd, atomically) what
 * it is about to do in .totebox-agent/intent: line 1 is the ledger line it will append (with
 * "protect" still to be decided), line 2 the inbox name in hex. A seal cut short at any point is
 * completed or abandoned from this record on the next start (recover.c); docs/agent.md says how.
 * This file only formats, stores, loads and removes the record. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

#define INTENT_FILE     "intent"
#define INTENT_BAD_FILE "intent.bad"
#define INTENT_MAX      (LEDGER_LINE_MAX + 2 * 256 + 4)

int intent_store(int state_fd, const struct seal_intent *in)
{
        char buf[INTENT_MAX], hex[2 * 255 + 1];
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
        return vault_write_state(state_fd, INTENT_FILE, buf, (size_t)n, 0600);
}

/* Line 1 a ledger entry, line 2 the inbox name in hex (no NUL, no '/'), nothing after. ret is
 * untouched on failure. */
int intent_parse(const char *buf, size_t len, struct seal_intent *ret)
{
        const char *nl = memchr(buf, '\n', len), *hex, *end;
        struct seal_intent in;
        size_t got = 0;

        memset(&in, 0, sizeof(in));
        if (!nl || len > INTENT_MAX)
                return -EINVAL;
        if (ledger_entry_parse(buf, (size_t)(nl - buf), &in.e, NULL, 0) < 0)
                return -EINVAL;
        hex = nl + 1;
        end = memchr(hex, '\n', len - (size_t)(hex - buf));
        if (!end || end == hex || (size_t)(end - hex) > 2 * 255 || end + 1 != buf + len)
                return -EINVAL;
        if (sodium_hex2bin((uint8_t *)in.inbox, sizeof(in.inbox) - 1, hex, (size_t)(end - hex),
                           NULL, &got, NULL) != 0 ||
            got == 0 || strlen(in.inbox) != got || strchr(in.inbox, '/'))
                return -EINVAL;
        *ret = in;
        return 0;
}

int intent_load(int state_fd, struct seal_intent *ret)
{
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
        if (r == 0)
                *ret = in;
        return r;
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
