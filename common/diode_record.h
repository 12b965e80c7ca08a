/* The Diode's record answers (a deposit receipt, a read's entry), checked by whoever receives
 * one: vmhost before it passes it on, fleetctl before it believes a receipt or writes a record
 * out. An answer holds the record's exact ledger line, its leaf index, an RFC 9162 inclusion
 * proof, the signed tree head it leads to, and the vault key (schemas/agent-message.schema.json,
 * "record"). */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* 0 when the head is signed by pk_b64 (the VM's pinned vault key, base64; it must also be the
 * key the answer names), the line is the entry the answer's seq, size and blake2b_256 describe,
 * and the proof leads from the line's leaf to the head's root. -EBADMSG with why otherwise
 * (-ENOMEM, with why, when the proof finds no memory). */
int diode_record_check(const json_t *o, const char *pk_b64, char *why, size_t whylen);
/* The same for bytes that came with it: their size and BLAKE2b-256 (computed by the caller) must
 * be the entry's. */
/* The value of a "Totebox-Record:" header line (libcurl's header callback hands one line with
 * its CRLF): malloc'd, or NULL when the line is another header. */
char *diode_record_header(const char *line, size_t len);
int diode_record_check_content(const json_t *o, uint64_t size, const uint8_t hash[32], char *why,
                               size_t whylen);
