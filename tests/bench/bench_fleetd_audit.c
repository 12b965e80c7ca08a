/* bench_fleetd_audit [ENTRIES]: the cost of the audit record as a witnessed transparency log,
 * beside its peer, the hash chain alone. On a record of ENTRIES entries (default 100,000) in a
 * fresh state directory it prints:
 *   - append: entries per second, 1,000 a transaction (the caller's cost; nothing is signed);
 *   - the entry walk (the peer: audit_verify, each entry's chain link, hash and leaf hash; what
 *     `fleetctl audit verify` checked before, plus the leaf) and the full check
 *     (audit_log_check: the walk, then the tree against fleetd's own checkpoints);
 *   - one checkpoint: loading the leaf column, the root and the Ed25519 signature, stored;
 *   - a consistency proof from half the record, and its verification (what vmhost does);
 *   - the memory fleetd holds for the tree (32 bytes a leaf). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "fleetd/audit_log.h"
#include "fleetd/store.h"

static double bench_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
        unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
        char dir[] = "/tmp/bench-audit-XXXXXX", err[512], cmd[128];
        static char note[TLOG_NOTE_MAX];
        merkle_hash *leaves = NULL, proof[MERKLE_MAX_PROOF];
        struct tlog_checkpoint half = {0}, full = {0};
        struct audit_report *rep = calloc(1, sizeof(*rep));
        struct store *s = NULL;
        struct audit_key k;
        uint64_t count = 0, have = 0;
        size_t plen = 0;
        double t0, t;
        int r;

        log_init("bench", LOG_LEVEL_ERROR);
        if (!mkdtemp(dir) || store_open(dir, &s) < 0 ||
            audit_key_load(dir, true, "bench", &k, err, sizeof(err)) < 0)
                return 1;
        t0 = bench_now();
        for (unsigned long i = 0; i < n; i++) {
                if (i % 1000 == 0 && store_begin(s) < 0)
                        return 1;
                audit_append(
                    s, true, "bench.entry", "node-1", "bench",
                    json_pack("{s:I, s:s}", "i", (json_int_t)i, "why", "a typical detail"));
                if ((i % 1000 == 999 || i == n - 1) && store_commit(s) < 0)
                        return 1;
        }
        t = bench_now() - t0;
        printf("append          %lu entries, %.0f/s (1,000 a transaction)\n", n, (double)n / t);

        t0 = bench_now();
        r = audit_checkpoint_sign(s, dir, &k, NULL, 0, note, sizeof(note)); /* warm the file */
        r = audit_leaves_load(s, 0, &leaves, &have);
        if (r == 0)
                r = audit_checkpoint_sign(s, dir, &k, leaves, have, note, sizeof(note));
        t = bench_now() - t0;
        printf("checkpoint      %.1f ms (load %llu leaves, root, Ed25519, row + file fsync'd)\n",
               t * 1e3, (unsigned long long)have);

        t0 = bench_now();
        r = audit_verify(s, &count, err, sizeof(err));
        t = bench_now() - t0;
        printf("peer: walk      %.0f ms, %.2f us/entry (audit_verify: every entry's chain link and "
               "hashes, no tree) r=%d\n",
               t * 1e3, t * 1e6 / (double)n, r);
        t0 = bench_now();
        r = audit_log_check(s, dir, &k.pub, NULL, 0, rep);
        t = bench_now() - t0;
        printf("full check      %.0f ms, %.2f us/entry (chain, leaves, tree, checkpoints) r=%d "
               "checked=%u\n",
               t * 1e3, t * 1e6 / (double)n, r, rep->checked);

        t0 = bench_now();
        merkle_consistency_proof(leaves, have, have / 2, proof, &plen);
        t = bench_now() - t0;
        printf("proof           %.1f ms for %zu hashes (from %llu to %llu)\n", t * 1e3, plen,
               (unsigned long long)(have / 2), (unsigned long long)have);
        merkle_root(leaves, have / 2, half.root);
        merkle_root(leaves, have, full.root);
        t0 = bench_now();
        r = merkle_verify_consistency(have / 2, have, half.root, full.root, proof, plen);
        t = bench_now() - t0;
        printf("proof verify    %.1f us (what a node does per checkpoint) r=%d\n", t * 1e6, r);
        printf("tree memory     %.1f MiB in fleetd for %llu leaves\n",
               (double)have * MERKLE_HASH_LEN / (1024.0 * 1024.0), (unsigned long long)have);
        free(leaves);
        free(rep);
        audit_key_wipe(&k);
        store_close(s);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
}
