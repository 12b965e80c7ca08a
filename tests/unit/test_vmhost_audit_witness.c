/* Unit tests for vmhost/audit_witness: the node's witness rule for fleetd's audit checkpoints.
 * The adversary controls fleetd's database (and, for some cases, a key): it pushes a smaller
 * checkpoint (rollback), a same-size checkpoint with another root, a larger one from a forked
 * history with a proof that cannot verify, one under another key, a tampered note, a stale
 * proof and garbage. Consistent checkpoints are accepted and held durably; every signed
 * inconsistent one is refused and kept as evidence, and the held checkpoint is unchanged. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/tlog_checkpoint.h"
#include "vmhost/vmhost.h"

#define N_LEAVES 40

struct fx {
        struct vmhost vh;
        char dir[64];
        merkle_hash good[N_LEAVES], forked[N_LEAVES];
        struct tlog_key key, other;
        uint8_t sk[64], other_sk[64];
};

static void fx_key(struct tlog_key *k, uint8_t sk[64])
{
        uint8_t pk[32];

        crypto_sign_keypair(pk, sk);
        assert_int_equal(tlog_key_init("fleetd.totebox/f1", pk, k), 0);
}

static int setup(void **state)
{
        struct fx *fx = calloc(1, sizeof(*fx));

        snprintf(fx->dir, sizeof(fx->dir), "/tmp/tbx-witness-XXXXXX");
        if (!mkdtemp(fx->dir))
                return -1;
        snprintf(fx->vh.cfg.state_dir, sizeof(fx->vh.cfg.state_dir), "%s", fx->dir);
        snprintf(fx->vh.cfg.node_id, sizeof(fx->vh.cfg.node_id), "n1");
        for (int i = 0; i < N_LEAVES; i++) {
                char entry[32];

                snprintf(entry, sizeof(entry), "entry %d", i);
                merkle_leaf_hash((const uint8_t *)entry, strlen(entry), fx->good[i]);
        }
        memcpy(fx->forked, fx->good, sizeof(fx->good));
        merkle_leaf_hash((const uint8_t *)"edited", 6, fx->forked[4]); /* entry 5 rewritten */
        fx_key(&fx->key, fx->sk);
        fx_key(&fx->other, fx->other_sk);
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fx *fx = *state;
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
        if (system(cmd) != 0)
                return -1;
        free(fx);
        return 0;
}

/* A push body: the checkpoint of the first n leaves signed by (key, sk), the proof from old. */
static char *body_of(const merkle_hash *leaves, uint64_t n, uint64_t old,
                     const struct tlog_key *key, const uint8_t *sk)
{
        struct tlog_checkpoint c = {.size = n};
        merkle_hash proof[MERKLE_MAX_PROOF];
        char note[1024], vkey[TLOG_VKEY_MAX + 1];
        size_t len = 0;
        json_t *arr = json_array(), *o;
        char *text;

        snprintf(c.origin, sizeof(c.origin), "%s", key->name);
        merkle_root(leaves, n, c.root);
        assert_true(tlog_checkpoint_sign(&c, key, sk, note, sizeof(note)) > 0);
        assert_int_equal(tlog_vkey_format(key, vkey, sizeof(vkey)), 0);
        if (old > 0 && old < n)
                assert_int_equal(merkle_consistency_proof(leaves, n, old, proof, &len), 0);
        for (size_t i = 0; i < len; i++) {
                char b64[48];

                sodium_bin2base64(b64, sizeof(b64), proof[i], 32, sodium_base64_VARIANT_ORIGINAL);
                json_array_append_new(arr, json_string(b64));
        }
        o = json_pack("{s:i, s:s, s:s, s:I, s:o}", "v", 1, "key", vkey, "checkpoint", note,
                      "old_size", (json_int_t)old, "proof", arr);
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return text;
}

/* Pushes; returns the HTTP status, and the problem type in type (when refused). */
static unsigned push(struct fx *fx, char *body, char type[48])
{
        struct vm_problem p = {0};
        json_t *st = NULL;
        int r = audit_witness_accept(&fx->vh, body, strlen(body), &st, &p);

        free(body);
        json_decref(st);
        snprintf(type, 48, "%s", r < 0 ? p.type : "");
        return r < 0 ? node_problem_status(&p) : 200;
}

static uint64_t held_size(struct fx *fx, uint64_t *ret_refused)
{
        json_t *st = audit_witness_state(&fx->vh);
        uint64_t n = (uint64_t)json_integer_value(json_object_get(st, "size"));

        *ret_refused = (uint64_t)json_integer_value(json_object_get(st, "refused_total"));
        json_decref(st);
        return n;
}

static void test_consistent_accepted(void **state)
{
        struct fx *fx = *state;
        uint64_t refused;
        char type[48];

        assert_int_equal(push(fx, body_of(fx->good, 10, 0, &fx->key, fx->sk), type), 200);
        assert_int_equal(held_size(fx, &refused), 10);
        assert_int_equal(push(fx, body_of(fx->good, 20, 10, &fx->key, fx->sk), type), 200);
        assert_int_equal(push(fx, body_of(fx->good, 20, 20, &fx->key, fx->sk), type), 200);
        assert_int_equal(push(fx, body_of(fx->good, 21, 20, &fx->key, fx->sk), type), 200);
        assert_int_equal(held_size(fx, &refused), 21);
        assert_int_equal(refused, 0);
        {
                /* the node keeps the checkpoint before and the proof that links the two */
                json_t *st = audit_witness_state(&fx->vh);
                struct tlog_checkpoint prev;
                const char *note = json_string_value(json_object_get(st, "previous"));

                assert_non_null(note);
                assert_int_equal(tlog_checkpoint_open(note, strlen(note), &fx->key, &prev), 0);
                assert_int_equal(prev.size, 20);
                assert_true(json_array_size(json_object_get(st, "proof")) > 0);
                json_decref(st);
        }
}

static void test_inconsistent_refused_and_kept(void **state)
{
        struct fx *fx = *state;
        uint64_t refused;
        char type[48], *b;

        assert_int_equal(push(fx, body_of(fx->good, 20, 0, &fx->key, fx->sk), type), 200);
        /* rollback: a restored database signs a smaller tree */
        assert_int_equal(push(fx, body_of(fx->good, 15, 0, &fx->key, fx->sk), type), 409);
        assert_string_equal(type, "audit-inconsistent");
        /* fork at the same size */
        assert_int_equal(push(fx, body_of(fx->forked, 20, 0, &fx->key, fx->sk), type), 409);
        assert_string_equal(type, "audit-inconsistent");
        /* a larger tree from the edited history, with its own (valid for it) proof */
        assert_int_equal(push(fx, body_of(fx->forked, 33, 20, &fx->key, fx->sk), type), 409);
        assert_string_equal(type, "audit-inconsistent");
        /* the good tree but a proof from the forked one */
        {
                char *fb = body_of(fx->forked, 33, 20, &fx->key, fx->sk);
                char *gb = body_of(fx->good, 33, 20, &fx->key, fx->sk);
                json_t *o = json_loads(fb, 0, NULL), *good = json_loads(gb, 0, NULL);

                json_object_set(good, "proof", json_object_get(o, "proof"));
                b = json_dumps(good, JSON_COMPACT);
                json_decref(o);
                json_decref(good);
                free(fb);
                free(gb);
        }
        assert_int_equal(push(fx, b, type), 409);
        assert_string_equal(type, "audit-inconsistent");
        assert_int_equal(held_size(fx, &refused), 20);
        assert_int_equal(refused, 4);
        /* the held checkpoint and the evidence survive a restart (they are files) */
        {
                char path[128];

                snprintf(path, sizeof(path), "%s/audit-witness.json", fx->dir);
                assert_int_equal(access(path, F_OK), 0);
                snprintf(path, sizeof(path), "%s/audit-evidence", fx->dir);
                assert_int_equal(access(path, F_OK), 0);
        }
        /* and the consistent continuation is still accepted */
        assert_int_equal(push(fx, body_of(fx->good, 33, 20, &fx->key, fx->sk), type), 200);
        assert_int_equal(held_size(fx, &refused), 33);
}

static void test_keys_and_garbage(void **state)
{
        struct fx *fx = *state;
        uint64_t refused;
        char type[48], *b, *p;

        assert_int_equal(push(fx, body_of(fx->good, 10, 0, &fx->key, fx->sk), type), 200);
        /* another key under the same name: the first key was pinned */
        assert_int_equal(push(fx, body_of(fx->good, 12, 10, &fx->other, fx->other_sk), type), 409);
        assert_string_equal(type, "audit-key-mismatch");
        /* a note changed after signing: nobody's statement, not kept */
        b = body_of(fx->good, 12, 10, &fx->key, fx->sk);
        p = strstr(b, "\\n12\\n");
        assert_non_null(p);
        p[3] = '3';
        assert_int_equal(push(fx, b, type), 422);
        assert_string_equal(type, "audit-bad-signature");
        /* a proof from a size the node does not hold */
        assert_int_equal(push(fx, body_of(fx->good, 30, 20, &fx->key, fx->sk), type), 409);
        assert_string_equal(type, "audit-stale");
        assert_int_equal(push(fx, strdup("{\"v\":1}"), type), 400);
        assert_int_equal(push(fx, strdup("[[[[[[[[[[[[1]]]]]]]]]]]]"), type), 400);
        assert_int_equal(push(fx,
                              strdup("{\"v\":1,\"key\":\"x\",\"checkpoint\":\"\","
                                     "\"old_size\":0,\"proof\":[],\"more\":1}"),
                              type),
                         400);
        assert_int_equal(held_size(fx, &refused), 10);
        assert_int_equal(refused, 1);
}

static void test_configured_key(void **state)
{
        struct fx *fx = *state;
        uint64_t refused;
        char type[48];

        assert_int_equal(
            tlog_vkey_format(&fx->other, fx->vh.cfg.audit_key, sizeof(fx->vh.cfg.audit_key)), 0);
        /* with audit_key set, even the first checkpoint must be that key's */
        assert_int_equal(push(fx, body_of(fx->good, 10, 0, &fx->key, fx->sk), type), 409);
        assert_string_equal(type, "audit-key-mismatch");
        assert_int_equal(push(fx, body_of(fx->good, 10, 0, &fx->other, fx->other_sk), type), 200);
        assert_int_equal(held_size(fx, &refused), 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_consistent_accepted, setup, teardown),
            cmocka_unit_test_setup_teardown(test_inconsistent_refused_and_kept, setup, teardown),
            cmocka_unit_test_setup_teardown(test_keys_and_garbage, setup, teardown),
            cmocka_unit_test_setup_teardown(test_configured_key, setup, teardown),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
