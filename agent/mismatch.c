/* The list of named mismatches a verification finds: kinds are the contract's (docs/contracts.md
 * section 3), paths are vault-relative, details are one human sentence with values quoted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

void mismatch_list_init(struct mismatch_list *l)
{
        memset(l, 0, sizeof(*l));
}

void mismatch_list_done(struct mismatch_list *l)
{
        if (!l)
                return;
        free(l->items);
        mismatch_list_init(l);
}

void mismatch_list_clear(struct mismatch_list *l)
{
        l->n = 0;
        l->total = 0;
}

/* Reports are JSON and file names are bytes: keep printable ASCII only. */
static void mismatch_sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
                        *s = '?';
}

void mismatch_add(struct mismatch_list *l, const char *kind, const char *path, const char *fmt, ...)
{
        struct mismatch *m;
        va_list ap;

        l->total++;
        if (l->n >= AGENT_MISMATCH_MAX)
                return;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct mismatch *items = realloc(l->items, cap * sizeof(*items));

                if (!items)
                        return;
                l->items = items;
                l->cap = cap;
        }
        m = &l->items[l->n++];
        m->kind = kind;
        snprintf(m->path, sizeof(m->path), "%s", path ? path : "");
        va_start(ap, fmt);
        vsnprintf(m->detail, sizeof(m->detail), fmt, ap);
        va_end(ap);
        mismatch_sanitize(m->path);
        mismatch_sanitize(m->detail);
}

size_t mismatch_count_kind(const struct mismatch_list *l, const char *kind)
{
        size_t c = 0;

        for (size_t i = 0; i < l->n; i++)
                c += strcmp(l->items[i].kind, kind) == 0;
        return c;
}

bool mismatch_has_ledger_kind(const struct mismatch_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                if (strncmp(l->items[i].kind, "ledger-", 7) == 0)
                        return true;
        return false;
}
