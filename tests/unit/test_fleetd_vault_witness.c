/* fleetd's oversight of scheduled audits (fleetd/vault_witness.c): a running Totebox whose last
 * full verification is older than vault_verify_interval + vault_stall_grace is stalled (and not
 * before, not when it is not running, and never for time before fleetd started); clean
 * scheduled verifications are audited compactly, one entry per VM per UTC day with the count.
 * And what fleetd makes of what a node sends: first use, a verified proof, a proof from another
 * size (pending, fleetd tells the node what it holds), a node that cosigns a smaller checkpoint,
 * a proof that fails or another key (lying-host), refused evidence it names itself (a smaller
 * vault-signed checkpoint is a rollback whatever the node calls it; one the vault did not sign
 * is no evidence), each audited once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sodium.h>

#include "common/sth.h"
#include "common/witness_key.h"
#include "test_fleetd_util.h"

#define DAY_MS 86400000ull

static int no_call(void *ctx, const char *address, uint16_t port, const char *method,
                   const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                   char **ret_body)
{
        (void)ctx, (void)address, (void)port, (void)method, (void)path, (void)body;
        (void)timeout_ms;
        *ret_status = 404;
        *ret_body = NULL;
        return 0;
}

static void test_stalled_and_clean_verifications(void **state)
{
        struct fleet_transport tr = {no_call, NULL};
        struct fleetd f;
        struct fleet_vm vm = {.status = VM_ACTIVE, .lifecycle = VM_LC_ACTIVE};
        uint64_t t0 = 1000 * DAY_MS; /* midnight UTC */
        char *dir = tfu_tmpdir();
        json_t *result = json_pack("{s:i}", "mismatches", 0);

        (void)state;
        assert_int_equal(tfu_fleetd_open(&f, dir, 1, &tr), 0);
        f.cfg.vault_verify_interval_ms = 3600000;
        f.cfg.vault_stall_grace_ms = 900000;
        f.started_wall_ms = t0;
        snprintf(vm.id, sizeof(vm.id), "tbx-a");
        snprintf(vm.node_id, sizeof(vm.node_id), "n1");
        snprintf(vm.observed, sizeof(vm.observed), "running");
        vm.created_ms = t0 - DAY_MS; /* before fleetd started: fleetd's start counts */
        vm.verification = json_pack("{s:I}", "at_ms", (json_int_t)(t0 + 10000));
        assert_false(vault_vm_stalled(&f, &vm, t0 + 10000 + 4500000)); /* 1h15m: on time */
        assert_true(vault_vm_stalled(&f, &vm, t0 + 10000 + 4500001));
        snprintf(vm.observed, sizeof(vm.observed), "shutoff");
        assert_false(vault_vm_stalled(&f, &vm, t0 + 2 * DAY_MS)); /* not running: nobody waits */
        snprintf(vm.observed, sizeof(vm.observed), "running");
        vm.lifecycle = VM_LC_SUSPENDED;
        assert_false(vault_vm_stalled(&f, &vm, t0 + 2 * DAY_MS));
        vm.lifecycle = VM_LC_ACTIVE;
        json_decref(vm.verification);
        vm.verification = NULL; /* never verified: from fleetd's start */
        assert_false(vault_vm_stalled(&f, &vm, t0 + 4500000));
        assert_true(vault_vm_stalled(&f, &vm, t0 + 4500001));

        /* 24 clean hourly verifications on day 1000, 3 on day 1001: two entries */
        for (uint64_t h = 0; h < 24; h++)
                vault_note_clean(&f, &vm, t0 + h * 3600000, result);
        assert_int_equal(tfu_audit_count(&f, "vm.verifications_clean"), 1);
        for (uint64_t h = 0; h < 3; h++)
                vault_note_clean(&f, &vm, t0 + DAY_MS + h * 3600000, result);
        assert_int_equal(tfu_audit_count(&f, "vm.verifications_clean"), 2);
        {
                json_t *a = audit_list(f.store, 0, 1000, "vm.verifications_clean");
                json_t *d = json_object_get(json_array_get(a, 1), "detail");

                /* the second entry counts the 23 after the first and itself */
                assert_int_equal(json_integer_value(json_object_get(d, "count")), 24);
                assert_int_equal(json_integer_value(json_object_get(d, "day")), 1001);
                json_decref(a);
        }
        assert_int_equal(vm.clean_count, 2);
        json_decref(result);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

/* --- fleetd's classification of what a node sends (vault_witness_on_vm) ------------------- */

static uint8_t vpk[32], vsk[64], opk[32], osk[64];
static struct witness_key host, host2;
static merkle_hash leaves[12];

static void keys_init(void)
{
        uint8_t pk[32];

        crypto_sign_keypair(vpk, vsk);
        crypto_sign_keypair(opk, osk);
        crypto_sign_keypair(pk, host.sk);
        assert_int_equal(tlog_cosig_key_init("totebox.host/n1", pk, &host.pub), 0);
        crypto_sign_keypair(pk, host2.sk);
        assert_int_equal(tlog_cosig_key_init("totebox.host/n1", pk, &host2.pub), 0);
        for (uint8_t i = 0; i < 12; i++)
                merkle_leaf_hash(&i, 1, leaves[i]);
}

/* The vault's checkpoint of the first n leaves (signed by sk), cosigned by h when not NULL. */
static char *note_of(uint64_t n, const uint8_t *sk, const struct witness_key *h)
{
        struct sth s = {.size = n};
        char *buf = malloc(4096);
        int len;

        merkle_root(leaves, n, s.root);
        len = sth_checkpoint_sign(&s, sk, buf, 4096);
        assert_true(len > 0);
        if (h)
                assert_true(witness_key_cosign(h, buf, (size_t)len, 4096, 1700000000) > 0);
        return buf;
}

/* The inventory entry as vmhost writes it: the node-cosigned note, the proof from `from` (of
 * the leaves, or garbage when bad), the evidence (notes with the node's reason). */
static json_t *entry(const char *note, uint64_t from, uint64_t to, bool bad,
                     const struct witness_key *h, json_t *evidence)
{
        char b64[64], vkey[TLOG_VKEY_MAX + 1], pkb[64];
        merkle_hash proof[MERKLE_MAX_PROOF];
        size_t len = 0;
        json_t *p = json_array();

        if (from > 0 && from < to)
                assert_int_equal(merkle_consistency_proof(leaves, to, from, proof, &len), 0);
        for (size_t i = 0; i < len; i++) {
                if (bad)
                        proof[i][0] ^= 1;
                sodium_bin2base64(b64, sizeof(b64), proof[i], 32, sodium_base64_VARIANT_ORIGINAL);
                json_array_append_new(p, json_string(b64));
        }
        assert_int_equal(tlog_cosig_vkey_format(&h->pub, vkey, sizeof(vkey)), 0);
        sodium_bin2base64(pkb, sizeof(pkb), vpk, 32, sodium_base64_VARIANT_ORIGINAL);
        return json_pack("{s:s, s:{s:{s:s, s:s, s:I, s:o, s:o, s:I, s:n}}}", "vault_public_key",
                         pkb, "integrity", "witness", "key", vkey, "checkpoint", note, "from_size",
                         (json_int_t)from, "proof", p, "evidence",
                         evidence ? evidence : json_array(), "evidence_total",
                         (json_int_t)(evidence ? json_array_size(evidence) : 0), "fleet_size");
}

static void feed_vm(struct fleetd *f, struct fleet_vm *vm, json_t *e)
{
        vault_witness_on_vm(f, vm, e);
        json_decref(e);
}

static void test_fleetd_names_what_nodes_send(void **state)
{
        struct fleet_transport tr = {no_call, NULL};
        struct fleetd f;
        struct fleet_vm a = {0}, b = {0}, c = {0}, d = {0};
        char *dir = tfu_tmpdir(), *n3, *n5, *n7, *n9, *n5_vault, *n5_other, *n7_host2;
        json_t *ev;

        (void)state;
        keys_init();
        assert_int_equal(tfu_fleetd_open(&f, dir, 1, &tr), 0);
        assert_true(f.have_vault_witness);
        snprintf(a.id, sizeof(a.id), "tbx-a");
        snprintf(b.id, sizeof(b.id), "tbx-b");
        snprintf(c.id, sizeof(c.id), "tbx-c");
        snprintf(d.id, sizeof(d.id), "tbx-d");
        n3 = note_of(3, vsk, &host), n5 = note_of(5, vsk, &host), n7 = note_of(7, vsk, &host);
        n9 = note_of(9, vsk, &host), n5_vault = note_of(5, vsk, NULL);
        n5_other = note_of(5, osk, NULL);

        /* a: first use at 3, a proof 3 -> 7, then 9 with a proof from 5 (pending: fleetd asks),
         * then 9 with a proof from 7 that does not verify: the node vouched for it */
        feed_vm(&f, &a, entry(n3, 0, 3, false, &host, NULL));
        assert_string_equal(a.witness, "ok");
        assert_int_equal(a.witness_size, 3);
        feed_vm(&f, &a, entry(n7, 3, 7, false, &host, NULL));
        assert_string_equal(a.witness, "ok");
        assert_int_equal(a.witness_size, 7);
        a.witness_post = false;
        feed_vm(&f, &a, entry(n9, 5, 9, false, &host, NULL));
        assert_string_equal(a.witness, "pending");
        assert_true(a.witness_post);
        assert_int_equal(a.witness_size, 7);
        feed_vm(&f, &a, entry(n9, 7, 9, true, &host, NULL));
        assert_string_equal(a.witness, "lying-host");
        assert_int_equal(a.witness_size, 7);

        /* b: the node cosigns a smaller checkpoint than the one fleetd cosigned */
        feed_vm(&f, &b, entry(n7, 0, 7, false, &host, NULL));
        feed_vm(&f, &b, entry(n5, 0, 5, false, &host, NULL));
        assert_string_equal(b.witness, "lying-host");

        /* c: evidence the node refused: fleetd names it itself (smaller than it holds: rollback,
         * whatever the node calls it); evidence the vault did not sign is no evidence */
        feed_vm(&f, &c, entry(n7, 0, 7, false, &host, NULL));
        ev = json_pack("[{s:s, s:s}]", "reason", "fork", "checkpoint", n5_other);
        feed_vm(&f, &c, entry(n7, 0, 7, false, &host, ev));
        assert_string_equal(c.witness, "ok");
        ev = json_pack("[{s:s, s:s}, {s:s, s:s}]", "reason", "fork", "checkpoint", n5_other,
                       "reason", "fork", "checkpoint", n5_vault);
        feed_vm(&f, &c, entry(n7, 0, 7, false, &host, ev));
        assert_string_equal(c.witness, "rollback");

        /* d: the node cosigns with another key than the one fleetd pinned */
        feed_vm(&f, &d, entry(n7, 0, 7, false, &host, NULL));
        n7_host2 = note_of(7, vsk, &host2);
        feed_vm(&f, &d, entry(n7_host2, 0, 7, false, &host2, NULL));
        assert_string_equal(d.witness, "lying-host");

        assert_int_equal(tfu_audit_count(&f, "vault.lying_host"), 3);
        assert_int_equal(tfu_audit_count(&f, "vault.rollback"), 1);
        assert_int_equal(tfu_audit_count(&f, "vault.witnessed"), 4);
        /* the same claims again are the same occurrences */
        feed_vm(&f, &b, entry(n5, 0, 5, false, &host, NULL));
        ev = json_pack("[{s:s, s:s}, {s:s, s:s}]", "reason", "fork", "checkpoint", n5_other,
                       "reason", "fork", "checkpoint", n5_vault);
        feed_vm(&f, &c, entry(n7, 0, 7, false, &host, ev));
        assert_int_equal(tfu_audit_count(&f, "vault.lying_host"), 3);
        assert_int_equal(tfu_audit_count(&f, "vault.rollback"), 1);
        free(n3), free(n5), free(n7), free(n9), free(n5_vault), free(n5_other), free(n7_host2);
        fleetd_close(&f);
        tfu_rmdir(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_stalled_and_clean_verifications),
            cmocka_unit_test(test_fleetd_names_what_nodes_send),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
