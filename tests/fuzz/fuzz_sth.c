/* Fuzz target: the tree-head loader (sth.json in the vault's state directory, and the file an
 * operator passes with --trusted-sth). A head that parses formats back to text that parses to
 * the same head; the signature check never crashes on whatever it holds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t pk[STH_PUBLIC_KEY_LEN] = {1};
        struct sth s, again;
        char buf[512];
        int n;

        if (vault_sth_parse((const char *)data, size, &s) != 0)
                return 0;
        (void)sth_verify(&s, pk);
        n = vault_sth_format(&s, buf, sizeof(buf));
        if (n <= 0 || vault_sth_parse(buf, (size_t)n, &again) != 0 ||
            memcmp(&s, &again, sizeof(s)) != 0)
                abort();
        return 0;
}
