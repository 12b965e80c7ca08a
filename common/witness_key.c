/* Cosigner key files (see the header). The secret stays in memory only as long as the daemon
 * runs; every copy on the stack is wiped. */
#include "common/witness_key.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/small_file.h"

static int witness_key_create(const char *path, const char *name, struct witness_key *ret,
                              char *err, size_t errsize)
{
        char text[TLOG_SKEY_MAX + 2];
        uint8_t pk[TLOG_PUBLIC_KEY_LEN];
        int r;

        crypto_sign_keypair(pk, ret->sk);
        r = tlog_cosig_key_init(name, pk, &ret->pub);
        if (r == 0)
                r = tlog_skey_format(name, ret->sk, text, sizeof(text) - 1);
        if (r < 0) {
                snprintf(err, errsize, "cannot name the witness key '%s'", name);
                return -EINVAL;
        }
        strcat(text, "\n");
        r = small_file_write(path, text, strlen(text), 0600);
        sodium_memzero(text, sizeof(text));
        if (r < 0)
                snprintf(err, errsize, "cannot write '%s': %s", path, strerror(-r));
        return r;
}

int witness_key_load(const char *path, const char *name, bool create, struct witness_key *ret,
                     char *err, size_t errsize)
{
        struct witness_key k;
        char *text = NULL;
        size_t len = 0;
        int r = small_file_read(path, TLOG_SKEY_MAX + 8, true, &text, &len);

        if (r == -ENOENT && create) {
                r = witness_key_create(path, name, &k, err, errsize);
                if (r == 0)
                        *ret = k;
                sodium_memzero(&k, sizeof(k));
                return r;
        }
        if (r < 0) {
                snprintf(err, errsize,
                         r == -EPERM ? "witness key '%s' is readable by others: refused (chmod 600)"
                                     : "cannot read the witness key '%s': %s",
                         path, strerror(-r));
                return r;
        }
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
                text[--len] = '\0';
        r = tlog_skey_parse(text, &k.pub, k.sk);
        sodium_memzero(text, len);
        free(text);
        if (r < 0 || tlog_cosig_key_init(k.pub.name, k.pub.pk, &k.pub) < 0) {
                sodium_memzero(&k, sizeof(k));
                snprintf(err, errsize, "'%s' is not a C2SP signer key", path);
                return -EBADMSG;
        }
        *ret = k;
        sodium_memzero(&k, sizeof(k));
        return 0;
}

int witness_key_cosign(const struct witness_key *k, char *buf, size_t len, size_t size,
                       uint64_t time_s)
{
        return tlog_note_cosign(buf, len, size, &k->pub, k->sk, time_s);
}

void witness_key_wipe(struct witness_key *k)
{
        if (k)
                sodium_memzero(k, sizeof(*k));
}
