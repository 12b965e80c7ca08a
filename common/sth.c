/* Signed tree heads: the message layout is fixed here and nowhere else, so the agent (signer)
 * and vmhost (verifier) cannot drift apart. */
#include "common/sth.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

static void sth_put_u64be(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--) {
                p[i] = (uint8_t)(v & 0xff);
                v >>= 8;
        }
}

void sth_message(const struct sth *s, uint8_t buf[STH_MESSAGE_LEN])
{
        memcpy(buf, "totebox-sth-v1\n", 15);
        sth_put_u64be(buf + 15, s->size);
        memcpy(buf + 23, s->root, MERKLE_HASH_LEN);
        sth_put_u64be(buf + 55, s->time_ms);
}

void sth_sign(struct sth *s, const uint8_t sk[STH_SECRET_KEY_LEN])
{
        uint8_t msg[STH_MESSAGE_LEN];

        sth_message(s, msg);
        crypto_sign_detached(s->signature, NULL, msg, sizeof(msg), sk);
}

int sth_verify(const struct sth *s, const uint8_t pk[STH_PUBLIC_KEY_LEN])
{
        uint8_t msg[STH_MESSAGE_LEN];

        sth_message(s, msg);
        return crypto_sign_verify_detached(s->signature, msg, sizeof(msg), pk) == 0 ? 0 : -EBADMSG;
}
