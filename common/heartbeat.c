/* Heartbeat codec. Decoding is strict: a heartbeat is network input from a peer that may be
 * buggy or hostile, and fleetd must never act on a half-understood one. */
#include "common/heartbeat.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/ident.h"
#include "common/json_input.h"

#define HEARTBEAT_MAX_DEPTH 2

int heartbeat_encode(const struct heartbeat *hb, char *buf, size_t size)
{
        json_t *o;
        size_t n;

        if (!ident_valid(IDENT_NODE, hb->node_id) ||
            !ident_hex_valid(hb->inventory_digest, DIGEST_HEX_LEN) ||
            (hb->boot[0] && !ident_hex_valid(hb->boot, HEARTBEAT_BOOT_LEN)))
                return -EINVAL;
        o = json_pack(
            "{s:i, s:s, s:I, s:s*, s:I, s:I, s:i, s:f, s:I, s:I, s:I, s:I, s:i, s:s, s:I}", "v",
            HEARTBEAT_VERSION, "node", hb->node_id, "epoch", (json_int_t)hb->epoch, "boot",
            hb->boot[0] ? hb->boot : NULL, "seq", (json_int_t)hb->seq, "interval_ms",
            (json_int_t)hb->interval_ms, "cpus", (int)hb->cpus, "cpu_percent", hb->cpu_percent,
            "mem_total_mib", (json_int_t)hb->mem_total_mib, "mem_available_mib",
            (json_int_t)hb->mem_available_mib, "mem_committed_mib",
            (json_int_t)hb->mem_committed_mib, "libvirt_age_ms", (json_int_t)hb->libvirt_age_ms,
            "vm_count", (int)hb->vm_count, "inventory_digest", hb->inventory_digest, "creations",
            (json_int_t)hb->creations);
        if (o && hb->disk_known)
                json_object_set_new(o, "disk_free_mib",
                                    json_integer((json_int_t)hb->disk_free_mib));
        if (!o)
                return -EINVAL;
        n = json_dumpb(o, buf, size, JSON_COMPACT | JSON_REAL_PRECISION(4));
        json_decref(o);
        if (n == 0 || n > size || n > HEARTBEAT_MAX_BYTES)
                return -EMSGSIZE;
        return (int)n;
}

const char *const heartbeat_fields[HEARTBEAT_FIELDS + 1] = {"v",
                                                            "node",
                                                            "epoch",
                                                            "boot",
                                                            "seq",
                                                            "interval_ms",
                                                            "cpus",
                                                            "cpu_percent",
                                                            "mem_total_mib",
                                                            "mem_available_mib",
                                                            "mem_committed_mib",
                                                            "libvirt_age_ms",
                                                            "vm_count",
                                                            "inventory_digest",
                                                            "creations",
                                                            "disk_free_mib",
                                                            NULL};

static int heartbeat_decode_fields(const json_t *o, struct heartbeat *hb,
                                   struct json_input_error *err)
{
        uint64_t v, cpus, vm_count;
        int64_t age;
        json_t *age_v;
        int r = 0;

        if (!json_is_object(o))
                return json_input_fail(err, "expected a JSON object");
        r = r ?: json_input_get_uint(o, "v", true, 0, UINT32_MAX, &v, err);
        if (r == 0 && (v < HEARTBEAT_VERSION_MIN || v > HEARTBEAT_VERSION_MAX)) {
                json_input_fail(err,
                                "heartbeat version %llu is outside the versions %d..%d this "
                                "build reads",
                                (unsigned long long)v, HEARTBEAT_VERSION_MIN,
                                HEARTBEAT_VERSION_MAX);
                return -EPROTO;
        }
        if (r == 0 && v <= HEARTBEAT_VERSION)
                r = json_input_check_keys(o, heartbeat_fields, err);
        hb->version = (uint32_t)v;
        r = r ?: json_input_copy_string(o, "node", true, hb->node_id, sizeof(hb->node_id), err);
        if (r == 0 && !ident_valid(IDENT_NODE, hb->node_id))
                return json_input_fail(err, "field 'node' is not a valid node id");
        r = r ?: json_input_get_uint(o, "epoch", true, 1, INT64_MAX, &hb->epoch, err);
        r = r ?: json_input_copy_string(o, "boot", false, hb->boot, sizeof(hb->boot), err);
        if (r == 0 && json_object_get(o, "boot") && !ident_hex_valid(hb->boot, HEARTBEAT_BOOT_LEN))
                return json_input_fail(err, "field 'boot' is not %d hex digits",
                                       HEARTBEAT_BOOT_LEN);
        r = r ?: json_input_get_uint(o, "seq", true, 1, INT64_MAX, &hb->seq, err);
        r = r ?: json_input_get_uint(o, "interval_ms", true, 100, 3600000, &hb->interval_ms, err);
        r = r ?: json_input_get_uint(o, "cpus", true, 1, 4096, &cpus, err);
        r = r ?: json_input_get_double(o, "cpu_percent", true, 0, 100, &hb->cpu_percent, err);
        r = r
                ?: json_input_get_uint(o, "mem_total_mib", true, 1, 1ull << 32, &hb->mem_total_mib,
                                       err);
        r = r
                ?: json_input_get_uint(o, "mem_available_mib", true, 0, hb->mem_total_mib,
                                       &hb->mem_available_mib, err);
        r = r
                ?: json_input_get_uint(o, "mem_committed_mib", true, 0, 1ull << 32,
                                       &hb->mem_committed_mib, err);
        r = r ?: json_input_get_uint(o, "vm_count", true, 0, 100000, &vm_count, err);
        r = r
                ?: json_input_copy_string(o, "inventory_digest", true, hb->inventory_digest,
                                          sizeof(hb->inventory_digest), err);
        r = r ?: json_input_get_uint(o, "creations", true, 0, INT64_MAX, &hb->creations, err);
        r = r
                ?: json_input_get_uint(o, "disk_free_mib", false, 0, 1ull << 40, &hb->disk_free_mib,
                                       err);
        if (r < 0)
                return r;
        hb->disk_known = json_object_get(o, "disk_free_mib") != NULL;
        if (!ident_hex_valid(hb->inventory_digest, DIGEST_HEX_LEN))
                return json_input_fail(err, "field 'inventory_digest' is not 64 hex digits");
        age_v = json_object_get(o, "libvirt_age_ms");
        if (!json_is_integer(age_v) || (age = json_integer_value(age_v)) < -1)
                return json_input_fail(err, "field 'libvirt_age_ms' must be an integer >= -1");
        hb->libvirt_age_ms = age;
        hb->cpus = (uint32_t)cpus;
        hb->vm_count = (uint32_t)vm_count;
        return 0;
}

int heartbeat_decode(const char *buf, size_t len, struct heartbeat *ret, char *err, size_t errsize)
{
        struct json_input_error jerr = {{0}};
        struct heartbeat hb = {0};
        json_t *o;
        int r;

        o = json_input_parse(buf, len, HEARTBEAT_MAX_BYTES, HEARTBEAT_MAX_DEPTH, &jerr);
        if (!o) {
                r = -EINVAL;
                goto cleanup;
        }
        r = heartbeat_decode_fields(o, &hb, &jerr);
        if (r == 0)
                *ret = hb;
cleanup:
        if (r < 0 && err)
                snprintf(err, errsize, "%s", jerr.text);
        json_decref(o);
        return r;
}
