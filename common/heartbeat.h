/* The heartbeat: one UDP datagram of JSON, at most HEARTBEAT_MAX_BYTES, from vmhost to fleetd
 * every interval. Schema: schemas/heartbeat.schema.json. */
#pragma once
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ident.h"

#define HEARTBEAT_VERSION 1
/* The versions a receiver reads (docs/contracts.md, "Protocol versions"): its own and one step
 * either side. A newer heartbeat is read by the fields this version knows, its unknown fields
 * ignored (a version step only adds fields, and never changes the meaning or bounds of one);
 * one of this version or older must hold only known fields. Any other version is refused with
 * -EPROTO, never read. */
#define HEARTBEAT_VERSION_MIN (HEARTBEAT_VERSION > 1 ? HEARTBEAT_VERSION - 1 : 1)
#define HEARTBEAT_VERSION_MAX (HEARTBEAT_VERSION + 1)
#define HEARTBEAT_MAX_BYTES   1200
#define NODE_ID_MAX           IDENT_NODE_MAX
#define DIGEST_HEX_LEN        64
#define HEARTBEAT_BOOT_LEN    16 /* hex digits of the boot id */

struct heartbeat {
        uint32_t version; /* the sender's protocol version ("v"), in the range read */
        char node_id[NODE_ID_MAX + 1];
        uint64_t epoch; /* vmhost start, wall-clock ms: a restart starts a new epoch */
        uint64_t seq;   /* increases within a boot; old or repeated ones are dropped */
        /* vmhost's random boot id (64 bits, hex), drawn at start; "" when the sender has none,
         * and then the epoch alone names the boot. fleetd orders seq within a boot only. */
        char boot[HEARTBEAT_BOOT_LEN + 1];
        uint64_t interval_ms; /* the sender's heartbeat interval */
        uint32_t cpus;        /* online CPUs */
        double cpu_percent;   /* utilisation over the last interval, 0..100 of all CPUs */
        uint64_t mem_total_mib;
        uint64_t mem_available_mib; /* MemAvailable */
        uint64_t mem_committed_mib; /* memory of defined Totebox domains */
        int64_t libvirt_age_ms;     /* since vmhost's last successful libvirt call; -1 if none */
        uint32_t vm_count;
        char inventory_digest[DIGEST_HEX_LEN + 1]; /* hex SHA-256 of the inventory */
        /* the node's creation counter when the figures above were sampled: durable, it never
         * goes back, and it increases after every domain vmhost defines and at every vmhost
         * start, so figures carrying N reflect every creation acknowledged with N or less */
        uint64_t creations;
        /* room for VM disks (MiB): free space of the filesystem holding them, less what their
         * sparse disks may still take; optional on the wire (older senders), disk_known then
         * false */
        bool disk_known;
        uint64_t disk_free_mib;
};

/* The heartbeat's field names in wire order, NULL-terminated (fleetd's fast decoder indexes it). */
#define HEARTBEAT_FIELDS 16
extern const char *const heartbeat_fields[HEARTBEAT_FIELDS + 1];

/* Encodes hb into buf; returns the length, or -EMSGSIZE / -EINVAL. */
int heartbeat_encode(const struct heartbeat *hb, char *buf, size_t size);
/* Decodes one datagram strictly: version, types, bounds, no unknown fields (but in a newer
 * version's). Returns 0, -EPROTO for a version outside HEARTBEAT_VERSION_MIN..MAX, or -EINVAL,
 * with a reason in err (size errsize). ret is untouched on failure. */
int heartbeat_decode(const char *buf, size_t len, struct heartbeat *ret, char *err, size_t errsize);
