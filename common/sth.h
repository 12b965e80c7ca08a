/* Signed tree heads of a Totebox vault: Ed25519 over
 * "totebox-sth-v1\n" || u64be(size) || root[32] || u64be(time_ms). */
#pragma once
#include <stdint.h>

#include "common/merkle.h"

#define STH_SIGNATURE_LEN  64
#define STH_PUBLIC_KEY_LEN 32
#define STH_SECRET_KEY_LEN 64

struct sth {
        uint64_t size;
        merkle_hash root;
        uint64_t time_ms;
        uint8_t signature[STH_SIGNATURE_LEN];
};

/* Writes the 63 signed bytes of an STH into buf (size >= STH_MESSAGE_LEN). */
#define STH_MESSAGE_LEN (15 + 8 + 32 + 8)
void sth_message(const struct sth *s, uint8_t buf[STH_MESSAGE_LEN]);
void sth_sign(struct sth *s, const uint8_t sk[STH_SECRET_KEY_LEN]);
/* 0 when the signature is pk's, else -EBADMSG. */
int sth_verify(const struct sth *s, const uint8_t pk[STH_PUBLIC_KEY_LEN]);
