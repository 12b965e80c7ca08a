/* Fuzz target: fleetctl restore's readers of a backup file (hostile: anyone may hand an operator
 * a file). The plain archive's parser, and the sealed archive's opener (common/pwseal.h) for inputs
 * that declare libsodium's minimum Argon2id limits (others would cost 256 MiB and a second per
 * input; their limits are checked before any derivation, which the parse of every input exercises).
 */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pwseal.h"
#include "fleetd/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct backup_archive a;
        struct pwseal_limits l;
        uint8_t *plain = NULL;
        size_t plain_len = 0;
        char err[512];

        if (sodium_init() < 0)
                return 0;
        if (backup_parse(data, size, &a, err, sizeof(err)) == 0)
                backup_archive_done(&a);
        if (pwseal_limits_get(data, size, &l) == 0 && l.ops == crypto_pwhash_OPSLIMIT_MIN &&
            l.mem == crypto_pwhash_MEMLIMIT_MIN &&
            pwseal_open(BACKUP_SEALED_MAGIC, NULL, 0, data, size, "fuzz passphrase", &plain,
                        &plain_len) == 0) {
                if (backup_parse(plain, plain_len, &a, err, sizeof(err)) == 0)
                        backup_archive_done(&a);
                free(plain);
        }
        return 0;
}
