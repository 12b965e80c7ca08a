/* Fuzz target: the genesis key backup's parser (provision/pairing_genkey.c; hostile: anyone may
 * hand an operator a file to restore), and its opener for files whose sealed part declares
 * libsodium's minimum Argon2id limits (others would cost 256 MiB per input; the limits are
 * checked before any derivation). */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pwseal.h"
#include "provision/pairing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct pair_genkey_file f;
        struct pwseal_limits l;
        char err[256], *text;
        uint8_t sk[64];

        if (sodium_init() < 0 || !(text = malloc(size + 1)))
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        if (pair_genkey_parse(text, size, &f, err, sizeof(err)) == 0 &&
            pwseal_limits_get(f.sealed, f.sealed_len, &l) == 0 &&
            l.ops == crypto_pwhash_OPSLIMIT_MIN && l.mem == crypto_pwhash_MEMLIMIT_MIN &&
            pair_genkey_unseal(text, &f, "fuzz passphrase", sk) == 0)
                sodium_memzero(sk, sizeof(sk));
        free(text);
        return 0;
}
