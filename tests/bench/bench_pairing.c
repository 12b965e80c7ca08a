/* Benchmark: what the pairing ceremony costs, beside libsodium's ristretto255 scalar
 * multiplication (the unit of work every CPace share needs), in one run on this machine:
 *   - a genesis hello: session start (generator, share, commitment): what each connection,
 *     junk included, costs the server before any guess;
 *   - a whole handshake in memory (both sides: shares, ISK, keys, SAS, tags);
 *   - the SAS grinder of issue 14 (a fresh share and the SAS it gives, per try), and so the
 *     expected time of a full 6-digit match (10^6 tries) against totebox-pair/1 on one core.
 * usage: bench_pairing [N] (default 2000 iterations each) */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provision/pairing.h"

static struct pair_binding bench_binding(void)
{
        struct pair_binding b = {.role = ROSTER_ROLE_NODE};
        uint8_t k[WG_KEY_LEN], pub[WG_KEY_LEN];

        wg_key_generate_private(k);
        wg_key_public_from_private(pub, k);
        wg_key_to_base64(b.wg_public_key, pub);
        snprintf(b.endpoint, sizeof(b.endpoint), "192.0.2.1:51820");
        return b;
}

static double bench_rate(const char *what, int n, int64_t t0)
{
        double s = (double)(pair_clock_ms() - t0) / 1000.0, rate = s > 0 ? n / s : 0;

        printf("%-44s %10.0f /s  %8.1f us each\n", what, rate, rate > 0 ? 1e6 / rate : 0);
        return rate;
}

int main(int argc, char **argv)
{
        const char *code = "ABCDE-FGHJK";
        int n = argc > 1 ? atoi(argv[1]) : 2000;
        struct pair_binding bj = bench_binding(), bg = bench_binding();
        struct pair_session *j = calloc(1, sizeof(*j)), *g = calloc(1, sizeof(*g));
        uint8_t y[32], p[32], out[32];
        struct pair_msg mj, mg;
        double peer, grind;
        int64_t t0;

        if (sodium_init() < 0 || n <= 0 || !j || !g)
                return 1;
        crypto_core_ristretto255_random(p);
        t0 = pair_clock_ms();
        for (int i = 0; i < n; i++) {
                crypto_core_ristretto255_scalar_random(y);
                if (crypto_scalarmult_ristretto255(out, y, p) != 0)
                        return 1;
        }
        peer = bench_rate("libsodium crypto_scalarmult_ristretto255", n, t0);
        t0 = pair_clock_ms();
        for (int i = 0; i < n; i++) {
                pair_session_init(g, false, "genesis");
                pair_session_start(g, code, "laptop-b", j->nonce_self, &bg, NULL);
        }
        bench_rate("genesis hello (share + commitment)", n, t0);
        t0 = pair_clock_ms();
        for (int i = 0; i < n; i++) {
                pair_session_init(j, true, "laptop-b");
                pair_session_init(g, false, "genesis");
                pair_session_start(g, code, "laptop-b", j->nonce_self, &bg, NULL);
                pair_session_start(j, code, "genesis", g->nonce_self, &bj, g->commit);
                pair_session_share(j, &mj);
                pair_session_finish(g, &mj);
                pair_session_share(g, &mg);
                if (pair_session_finish(j, &mg) < 0 || strcmp(j->sas, g->sas) != 0)
                        return 1;
        }
        bench_rate("whole handshake, both sides", n, t0);
        t0 = pair_clock_ms();
        for (int i = 0; i < n; i++) {
                struct pair_session t;

                pair_session_init(&t, false, "genesis");
                memcpy(t.nonce_self, g->nonce_self, PAIR_NONCE_LEN);
                pair_session_start(&t, code, "laptop-b", g->nonce_peer, &bg, NULL);
                pair_session_finish(&t, &mj);
                pair_session_wipe(&t);
        }
        grind = bench_rate("SAS grinder try (fresh share -> SAS)", n, t0);
        printf("grinder try / scalar mult: %.2fx; a 6-digit match against totebox-pair/1: "
               "~%.0f s of one core (10^6 tries)\n",
               peer / (grind > 0 ? grind : 1), grind > 0 ? 1e6 / grind : 0);
        free(j);
        free(g);
        return 0;
}
