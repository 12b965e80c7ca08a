/* The pin: the fleet's signed statement that one VM lives on one node for life. fleetd signs it
 * at dispatch with its pin key (Ed25519) whose public half the genesis publishes in the roster
 * (`controller_pin_key`); vmhost stores it in the domain's metadata and starts a domain only when
 * its pin verifies under the current roster's controller key and names this node (its id and
 * its own WireGuard public key), this VM, this fleet, the entity and the image. The signature
 * is over "totebox-pin-v1\n" and the canonical JSON (sorted keys, compact) without "signature".
 * Schema: schemas/pin.schema.json. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "common/ident.h"
#include "common/roster.h"

#define PIN_MAX_BYTES      2048
#define PIN_VM_ID_MAX      IDENT_VM_MAX
#define PIN_ENTITY_MAX     IDENT_ENTITY_MAX
#define PIN_IMAGE_MAX      IDENT_IMAGE_MAX
#define PIN_REQUEST_ID_MAX IDENT_REQUEST_MAX
#define PIN_DOMAIN         "totebox-pin-v1\n"

struct pin {
        char fleet_id[NODE_ID_MAX + 1];
        char vm_id[PIN_VM_ID_MAX + 1];
        char node_id[NODE_ID_MAX + 1];
        char node_wg_key[WG_KEY_B64_LEN + 1]; /* base64 WireGuard public key of node_id */
        char entity[PIN_ENTITY_MAX + 1];
        char image[PIN_IMAGE_MAX + 1];
        char request_id[PIN_REQUEST_ID_MAX + 1];
        bool signed_;
        uint8_t signature[64];
};

/* What the verifier knows on its own; NULL fields are not compared. */
struct pin_expect {
        const char *fleet_id;
        const char *vm_id;
        const char *node_id;
        const char *node_wg_key;
        const char *entity;
        const char *image;
};

/* Worst first is not implied: pin_check returns the first failed check in this order. */
enum pin_verdict {
        PIN_OK = 0,
        PIN_NO_KEY,        /* the roster names no controller pin key */
        PIN_MISSING,       /* no pin (a legacy or hand-made domain) */
        PIN_UNSIGNED,      /* a pin without a signature */
        PIN_BAD_SIGNATURE, /* not signed by the controller key, or a field was edited */
        PIN_OTHER_FLEET,
        PIN_OTHER_VM, /* a valid pin of another VM spliced in */
        PIN_OTHER_NODE,
        PIN_OTHER_WG_KEY, /* names this node id but another WireGuard key */
        PIN_OTHER_ENTITY,
        PIN_OTHER_IMAGE,
        PIN_VERDICT_MAX
};

const char *pin_verdict_name(enum pin_verdict v);
/* Strict: unknown fields, wrong types, over-long values, a bad signature encoding are errors.
 * ret untouched on failure; err names the problem. */
int pin_parse(const char *buf, size_t len, struct pin *ret, char *err, size_t errsize);
int pin_from_json(const json_t *o, struct pin *ret, char *err, size_t errsize);
/* A new reference, with the signature when signed. */
json_t *pin_to_json(const struct pin *p);
/* Compact JSON with the signature (malloc'd), what the metadata and the create body carry. */
char *pin_format(const struct pin *p);
/* The signed bytes: PIN_DOMAIN then the canonical JSON without "signature" (malloc'd). */
char *pin_message(const struct pin *p, size_t *ret_len);
int pin_sign(struct pin *p, const uint8_t sk[64]);
/* Signature first (under pk, NULL meaning no key), then each expected field. */
enum pin_verdict pin_check(const struct pin *p, const uint8_t *pk, const struct pin_expect *e);
/* The roster's controller pin key (32 bytes); -ENOKEY when it names none or it is malformed. */
int pin_roster_key(const struct roster *r, uint8_t ret_pk[32]);
