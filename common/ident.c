/* Identifier rules (common/ident.h) as one table: each kind is a length range and three
 * character classes, for the first, the middle and the last character. The checker walks the
 * row; nothing else in the tree spells out which characters an id may hold. */
#include "common/ident.h"

#include <string.h>

enum {
        CL_LOWER = 1 << 0, /* a-z */
        CL_UPPER = 1 << 1, /* A-Z */
        CL_DIGIT = 1 << 2, /* 0-9 */
        CL_HEX = 1 << 3,   /* a-f */
};

struct ident_class {
        unsigned sets;
        const char *extra; /* further characters allowed */
};

struct ident_rule {
        const char *name;
        const char *pattern;
        size_t min, max;
        struct ident_class first, middle, last;
};

#define SLUG                                                                                       \
        {                                                                                          \
                CL_LOWER | CL_DIGIT, ""                                                            \
        }
#define SLUG_DASH                                                                                  \
        {                                                                                          \
                CL_LOWER | CL_DIGIT, "-"                                                           \
        }
#define IMAGE_MID                                                                                  \
        {                                                                                          \
                CL_LOWER | CL_DIGIT, "._-"                                                         \
        }
#define REQUEST_CL                                                                                 \
        {                                                                                          \
                CL_LOWER | CL_UPPER | CL_DIGIT, "_-"                                               \
        }
#define HEX_CL                                                                                     \
        {                                                                                          \
                CL_HEX | CL_DIGIT, ""                                                              \
        }

static const struct ident_rule ident_rules[IDENT_KIND_COUNT] = {
    [IDENT_NODE] = {"node id", "^[a-z0-9][a-z0-9-]{0,62}$", 1, IDENT_NODE_MAX, SLUG, SLUG_DASH,
                    SLUG_DASH},
    [IDENT_VM] = {"VM id", "^[a-z0-9][a-z0-9-]{0,62}$", 1, IDENT_VM_MAX, SLUG, SLUG_DASH,
                  SLUG_DASH},
    [IDENT_ENTITY] = {"entity", "^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$", 1, IDENT_ENTITY_MAX, SLUG,
                      SLUG_DASH, SLUG},
    [IDENT_IMAGE] = {"image name", "^[a-z0-9][a-z0-9._-]{0,62}$", 1, IDENT_IMAGE_MAX, SLUG,
                     IMAGE_MID, IMAGE_MID},
    [IDENT_REQUEST] = {"request id", "^[A-Za-z0-9_-]{1,64}$", 1, IDENT_REQUEST_MAX, REQUEST_CL,
                       REQUEST_CL, REQUEST_CL},
    [IDENT_PLAN] = {"plan id", "^[0-9a-f]{32}$", IDENT_PLAN_LEN, IDENT_PLAN_LEN, HEX_CL, HEX_CL,
                    HEX_CL},
};

static bool ident_class_has(const struct ident_class *cl, char c)
{
        if ((cl->sets & CL_LOWER) && c >= 'a' && c <= 'z')
                return true;
        if ((cl->sets & CL_UPPER) && c >= 'A' && c <= 'Z')
                return true;
        if ((cl->sets & CL_DIGIT) && c >= '0' && c <= '9')
                return true;
        if ((cl->sets & CL_HEX) && c >= 'a' && c <= 'f')
                return true;
        return c != '\0' && strchr(cl->extra, c) != NULL;
}

static const struct ident_rule *ident_rule(enum ident_kind kind)
{
        return (unsigned)kind < IDENT_KIND_COUNT ? &ident_rules[kind] : NULL;
}

bool ident_valid(enum ident_kind kind, const char *s)
{
        const struct ident_rule *r = ident_rule(kind);
        size_t n;

        if (!r || !s)
                return false;
        n = strnlen(s, r->max + 1);
        if (n < r->min || n > r->max || !ident_class_has(&r->first, s[0]))
                return false;
        for (size_t i = 1; i + 1 < n; i++)
                if (!ident_class_has(&r->middle, s[i]))
                        return false;
        return n == 1 || ident_class_has(&r->last, s[n - 1]);
}

const char *ident_pattern(enum ident_kind kind)
{
        const struct ident_rule *r = ident_rule(kind);

        return r ? r->pattern : "";
}

const char *ident_name(enum ident_kind kind)
{
        const struct ident_rule *r = ident_rule(kind);

        return r ? r->name : "id";
}

size_t ident_max(enum ident_kind kind)
{
        const struct ident_rule *r = ident_rule(kind);

        return r ? r->max : 0;
}

bool ident_hex_valid(const char *s, size_t len)
{
        if (!s || strnlen(s, len + 1) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}
