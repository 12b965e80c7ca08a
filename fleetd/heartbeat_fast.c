/* A fast path for the heartbeat decoder, for the ingest rate: a single pass over the flat JSON
 * object that vmhost sends, with no allocation. It accepts only what common/heartbeat.c's strict
 * decoder accepts, with the same bounds; anything it does not handle itself (escapes, literals,
 * nesting, duplicates, an out-of-bounds value, odd numbers) returns 0 and the caller falls back
 * to heartbeat_decode, which then gives the canonical error. A differential fuzz target
 * (tests/fuzz/fuzz_fleetd_heartbeat_fast.c) checks that both agree whenever this one accepts. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fleetd/fleetd.h"

enum hb_field {
        F_V,
        F_NODE,
        F_EPOCH,
        F_BOOT,
        F_SEQ,
        F_INTERVAL,
        F_CPUS,
        F_CPU_PERCENT,
        F_MEM_TOTAL,
        F_MEM_AVAILABLE,
        F_MEM_COMMITTED,
        F_LIBVIRT_AGE,
        F_VM_COUNT,
        F_DIGEST,
        F_CREATIONS,
        F_DISK_FREE,
        F_MAX
};

/* F_* follow the codec's wire order: hb_fast_names[F_X] is the field's name. */
#define hb_fast_names heartbeat_fields
_Static_assert(F_MAX == HEARTBEAT_FIELDS, "the fast path knows every heartbeat field");
/* the fields a heartbeat must carry: all but the optional ones */
#define HB_REQUIRED (((1u << F_MAX) - 1) & ~(1u << F_BOOT) & ~(1u << F_DISK_FREE))

struct hb_cursor {
        const char *p, *end;
};

static void hb_ws(struct hb_cursor *c)
{
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
                c->p++;
}

static bool hb_eat(struct hb_cursor *c, char ch)
{
        hb_ws(c);
        if (c->p >= c->end || *c->p != ch)
                return false;
        c->p++;
        return true;
}

/* A string of printable ASCII without escapes; *ret points into the input. */
static bool hb_string(struct hb_cursor *c, const char **ret, size_t *ret_len)
{
        const char *s;

        if (!hb_eat(c, '"'))
                return false;
        s = c->p;
        while (c->p < c->end && *c->p != '"') {
                if (*c->p == '\\' || (unsigned char)*c->p < 0x20 || (unsigned char)*c->p > 0x7e)
                        return false;
                c->p++;
        }
        if (c->p >= c->end)
                return false;
        *ret = s;
        *ret_len = (size_t)(c->p - s);
        c->p++;
        return true;
}

/* A JSON integer of at most 18 digits, no leading zero; negative only when allowed. */
static bool hb_int(struct hb_cursor *c, bool allow_neg, int64_t *ret)
{
        bool neg = false;
        int64_t v = 0;
        int digits = 0;

        hb_ws(c);
        if (allow_neg && c->p < c->end && *c->p == '-') {
                neg = true;
                c->p++;
        }
        if (c->p < c->end && *c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
                return false;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
                if (digits == 18)
                        return false; /* the strict decoder handles the big ones */
                v = v * 10 + (*c->p++ - '0');
                digits++;
        }
        if (digits == 0 || (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')))
                return false;
        *ret = neg ? -v : v;
        return true;
}

/* A JSON number (integer or real) converted as jansson does (strtod). */
static bool hb_number(struct hb_cursor *c, double *ret)
{
        char buf[64];
        const char *s;
        size_t n;

        hb_ws(c);
        s = c->p;
        if (c->p < c->end && *c->p == '-')
                c->p++;
        if (c->p < c->end && *c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
                return false;
        while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '.' || *c->p == 'e' ||
                                 *c->p == 'E' || *c->p == '+' || *c->p == '-'))
                c->p++;
        n = (size_t)(c->p - s);
        if (n == 0 || n >= sizeof(buf))
                return false;
        memcpy(buf, s, n);
        buf[n] = '\0';
        /* strict grammar: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
        {
                const char *q = buf;

                if (*q == '-')
                        q++;
                if (!(*q >= '0' && *q <= '9'))
                        return false;
                while (*q >= '0' && *q <= '9')
                        q++;
                if (*q == '.') {
                        q++;
                        if (!(*q >= '0' && *q <= '9'))
                                return false;
                        while (*q >= '0' && *q <= '9')
                                q++;
                }
                if (*q == 'e' || *q == 'E') {
                        q++;
                        if (*q == '+' || *q == '-')
                                q++;
                        if (!(*q >= '0' && *q <= '9'))
                                return false;
                        while (*q >= '0' && *q <= '9')
                                q++;
                }
                if (*q)
                        return false;
        }
        *ret = strtod(buf, NULL);
        return isfinite(*ret);
}

static bool hb_key(const char *k, size_t n, enum hb_field *ret)
{
        for (unsigned i = 0; i < F_MAX; i++) {
                if (strlen(hb_fast_names[i]) == n && memcmp(hb_fast_names[i], k, n) == 0) {
                        *ret = (enum hb_field)i;
                        return true;
                }
        }
        return false;
}

static bool hb_uint_in(int64_t v, uint64_t min, uint64_t max)
{
        return v >= 0 && (uint64_t)v >= min && (uint64_t)v <= max;
}

/* A string of exactly len lowercase hex digits, copied into out (len + 1 bytes). */
static bool hb_hex(struct hb_cursor *c, size_t len, char *out)
{
        const char *s;
        size_t n;

        if (!hb_string(c, &s, &n) || n != len)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        memcpy(out, s, n);
        out[n] = '\0';
        return true;
}

static bool hb_value(struct hb_cursor *c, enum hb_field f, struct heartbeat *hb, int64_t *ints)
{
        const char *s;
        size_t n;

        switch (f) {
        case F_NODE:
                if (!hb_string(c, &s, &n) || n > NODE_ID_MAX)
                        return false;
                memcpy(hb->node_id, s, n);
                hb->node_id[n] = '\0';
                return ident_valid(IDENT_NODE, hb->node_id);
        case F_BOOT:
                return hb_hex(c, HEARTBEAT_BOOT_LEN, hb->boot);
        case F_DIGEST:
                return hb_hex(c, DIGEST_HEX_LEN, hb->inventory_digest);
        case F_CPU_PERCENT:
                return hb_number(c, &hb->cpu_percent) && hb->cpu_percent >= 0 &&
                       hb->cpu_percent <= 100;
        case F_V:
        case F_EPOCH:
        case F_SEQ:
        case F_INTERVAL:
        case F_CPUS:
        case F_MEM_TOTAL:
        case F_MEM_AVAILABLE:
        case F_MEM_COMMITTED:
        case F_LIBVIRT_AGE:
        case F_VM_COUNT:
        case F_CREATIONS:
        case F_DISK_FREE:
                return hb_int(c, f == F_LIBVIRT_AGE, &ints[f]);
        case F_MAX:
                break;
        }
        return false;
}

static bool hb_check(struct heartbeat *hb, const int64_t *v)
{
        if (v[F_V] != HEARTBEAT_VERSION || !hb_uint_in(v[F_EPOCH], 1, INT64_MAX) ||
            !hb_uint_in(v[F_SEQ], 1, INT64_MAX) || !hb_uint_in(v[F_INTERVAL], 100, 3600000) ||
            !hb_uint_in(v[F_CPUS], 1, 4096) || !hb_uint_in(v[F_MEM_TOTAL], 1, 1ull << 32) ||
            !hb_uint_in(v[F_MEM_AVAILABLE], 0, (uint64_t)v[F_MEM_TOTAL]) ||
            !hb_uint_in(v[F_MEM_COMMITTED], 0, 1ull << 32) ||
            !hb_uint_in(v[F_VM_COUNT], 0, 100000) || v[F_LIBVIRT_AGE] < -1 ||
            !hb_uint_in(v[F_CREATIONS], 0, INT64_MAX) || !hb_uint_in(v[F_DISK_FREE], 0, 1ull << 40))
                return false;
        hb->version = HEARTBEAT_VERSION;
        hb->epoch = (uint64_t)v[F_EPOCH];
        hb->seq = (uint64_t)v[F_SEQ];
        hb->interval_ms = (uint64_t)v[F_INTERVAL];
        hb->cpus = (uint32_t)v[F_CPUS];
        hb->mem_total_mib = (uint64_t)v[F_MEM_TOTAL];
        hb->mem_available_mib = (uint64_t)v[F_MEM_AVAILABLE];
        hb->mem_committed_mib = (uint64_t)v[F_MEM_COMMITTED];
        hb->libvirt_age_ms = v[F_LIBVIRT_AGE];
        hb->vm_count = (uint32_t)v[F_VM_COUNT];
        hb->creations = (uint64_t)v[F_CREATIONS];
        hb->disk_free_mib = (uint64_t)v[F_DISK_FREE];
        return true;
}

int heartbeat_decode_fast(const char *buf, size_t len, struct heartbeat *ret)
{
        struct hb_cursor c = {buf, buf + len};
        struct heartbeat hb = {0};
        int64_t ints[F_MAX] = {0};
        unsigned seen = 0;

        if (!hb_eat(&c, '{'))
                return 0;
        do {
                enum hb_field f;
                const char *k;
                size_t n;

                if (!hb_string(&c, &k, &n) || !hb_key(k, n, &f) || (seen & (1u << f)) ||
                    !hb_eat(&c, ':') || !hb_value(&c, f, &hb, ints))
                        return 0;
                seen |= 1u << f;
        } while (hb_eat(&c, ','));
        if (!hb_eat(&c, '}'))
                return 0;
        hb_ws(&c);
        if (c.p != c.end || (seen & HB_REQUIRED) != HB_REQUIRED || !hb_check(&hb, ints))
                return 0;
        hb.disk_known = (seen & (1u << F_DISK_FREE)) != 0;
        *ret = hb;
        return 1;
}
