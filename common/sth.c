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

void sth_checkpoint_origin(const uint8_t pk[STH_PUBLIC_KEY_LEN], char buf[STH_ORIGIN_MAX + 1])
{
        memcpy(buf, STH_ORIGIN_PREFIX, sizeof(STH_ORIGIN_PREFIX) - 1);
        sodium_bin2hex(buf + sizeof(STH_ORIGIN_PREFIX) - 1, 2 * STH_PUBLIC_KEY_LEN + 1, pk,
                       STH_PUBLIC_KEY_LEN);
}

void sth_checkpoint_key(const uint8_t pk[STH_PUBLIC_KEY_LEN], struct tlog_key *ret)
{
        char origin[STH_ORIGIN_MAX + 1];

        sth_checkpoint_origin(pk, origin);
        tlog_key_init(origin, pk, ret); /* the origin is always a valid name */
}

int sth_checkpoint_sign(const struct sth *s, const uint8_t sk[STH_SECRET_KEY_LEN], char *buf,
                        size_t size)
{
        struct tlog_checkpoint c;
        struct tlog_key key;

        sth_checkpoint_key(sk + 32, &key);
        memcpy(c.origin, key.name, sizeof(c.origin));
        c.size = s->size;
        memcpy(c.root, s->root, MERKLE_HASH_LEN);
        return tlog_checkpoint_sign(&c, &key, sk, buf, size);
}

int sth_checkpoint_open(const char *note, size_t len, const uint8_t pk[STH_PUBLIC_KEY_LEN],
                        struct tlog_checkpoint *ret)
{
        struct tlog_checkpoint c;
        struct tlog_key key;
        int r;

        sth_checkpoint_key(pk, &key);
        r = tlog_checkpoint_open(note, len, &key, &c);
        if (r < 0)
                return r;
        if (strcmp(c.origin, key.name) != 0)
                return -EBADMSG;
        *ret = c;
        return 0;
}
