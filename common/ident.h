/* Identifiers: the one rule for each kind of id the fleet passes between its parts (node, VM,
 * entity, image, request, plan). fleetd, vmhost, the pairing tool and every schema in schemas/
 * use these rules, so an id that one part accepts is never refused by another further on; the
 * pattern strings below are the schemas' patterns, character for character (tests/unit/
 * test_ident.c checks both the strings and the behaviour). docs/contracts.md lists the rules. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define IDENT_NODE_MAX    63 /* node ids and fleet ids */
#define IDENT_VM_MAX      63
#define IDENT_ENTITY_MAX  48
#define IDENT_IMAGE_MAX   63
#define IDENT_REQUEST_MAX 64
#define IDENT_PLAN_LEN    32 /* lowercase hex */

enum ident_kind {
        IDENT_NODE,    /* ^[a-z0-9][a-z0-9-]{0,62}$, also fleet ids */
        IDENT_VM,      /* ^[a-z0-9][a-z0-9-]{0,62}$: a libvirt domain name */
        IDENT_ENTITY,  /* ^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$ */
        IDENT_IMAGE,   /* ^[a-z0-9][a-z0-9._-]{0,62}$: a base image file name on a node */
        IDENT_REQUEST, /* ^[A-Za-z0-9_-]{1,64}$: create and verification request ids */
        IDENT_PLAN,    /* ^[0-9a-f]{32}$ */
        IDENT_KIND_COUNT,
};

/* True when s (NUL-terminated, may be NULL) is an id of that kind. */
bool ident_valid(enum ident_kind kind, const char *s);
/* The kind's rule as a JSON Schema (ECMA-262, also POSIX ERE) pattern, anchored. */
const char *ident_pattern(enum ident_kind kind);
/* The kind's name for messages, e.g. "image name". */
const char *ident_name(enum ident_kind kind);
/* The most bytes an id of that kind has (without the NUL). */
size_t ident_max(enum ident_kind kind);
/* True when s is exactly len lowercase hex digits (digests and keys, not ids). */
bool ident_hex_valid(const char *s, size_t len);
