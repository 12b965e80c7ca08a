/* vmhost: the agent-line parser, the integrity checks (TOFU, STH signatures, rollback,
 * consistency), the refusal policy, the create-request parser and the inventory digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/merkle.h"
#include "vmhost/vmhost.h"

static uint8_t pk[32], sk[64], pk2[32], sk2[64];

static int setup(void **state)
{
        uint8_t seed[32];

        if (sodium_init() < 0)
                return -1;
        memset(seed, 0x42, sizeof(seed));
        crypto_sign_seed_keypair(pk, sk, seed);
        memset(seed, 0x43, sizeof(seed));
        crypto_sign_seed_keypair(pk2, sk2, seed);
        return 0;
}

/* A report line for an STH of size n whose root is filled with byte fill, signed by key. */
static char *report_line(uint64_t n, uint8_t fill, const uint8_t *pub, const uint8_t *sec,
                         const char *mismatches)
{
        struct sth s = {.size = n, .time_ms = 1000 + n};
        char b64pk[64], b64sig[128], root[65], *line = NULL;

        memset(s.root, fill, sizeof(s.root));
        sth_sign(&s, sec);
        sodium_bin2base64(b64pk, sizeof(b64pk), pub, 32, sodium_base64_VARIANT_ORIGINAL);
        sodium_bin2base64(b64sig, sizeof(b64sig), s.signature, 64, sodium_base64_VARIANT_ORIGINAL);
        sodium_bin2hex(root, sizeof(root), s.root, 32);
        assert_true(asprintf(&line,
                             "{\"v\":1,\"type\":\"report\",\"trigger\":\"seal\",\"vault_id\":\"v\","
                             "\"public_key\":\"%s\",\"sth\":{\"size\":%llu,\"root\":\"%s\","
                             "\"time_ms\":%llu,\"signature\":\"%s\"},\"records\":1,\"bytes\":2,"
                             "\"duration_ms\":3,\"mismatches\":%s}",
                             b64pk, (unsigned long long)n, root, (unsigned long long)s.time_ms,
                             b64sig, mismatches ? mismatches : "[]") > 0);
        return line;
}

static enum verify_action feed(struct integrity *in, const char *line)
{
        struct agent_msg m;
        char err[256];
        enum verify_action a;

        assert_int_equal(agent_line_parse(line, strlen(line), &m, err, sizeof(err)), 0);
        a = integrity_on_report(in, &m, 5);
        agent_msg_clear(&m);
        return a;
}

static const char *last_kind(const struct integrity *in)
{
        size_t n = json_array_size(in->mismatches);

        return n ? json_string_value(json_object_get(json_array_get(in->mismatches, n - 1), "kind"))
                 : "";
}

static void test_parse_valid_and_strict(void **state)
{
        char *ok = report_line(3, 1, pk, sk, NULL), err[256];
        static const char *const bad[] = {
            "",
            "[]",
            "{\"v\":2,\"type\":\"report\"}",
            "{\"v\":1,\"type\":\"hello\"}",
            "{\"v\":1,\"type\":\"error\",\"detail\":\"x\",\"extra\":1}",
            "{\"v\":1,\"type\":\"error\"}",
            "{\"v\":1,\"type\":\"consistency\",\"request_id\":\"r\",\"from_size\":1,"
            "\"to_size\":2,\"proof\":[\"zz\"]}",
            "{\"v\":1,\"type\":\"consistency\",\"request_id\":\"r\",\"from_size\":-1,"
            "\"to_size\":2,\"proof\":[]}",
            "{\"v\":1,\"v\":1,\"type\":\"error\",\"detail\":\"dup\"}",
            "{\"a\":[[[[[[]]]]]]}",
        };
        struct agent_msg m;

        assert_int_equal(agent_line_parse(ok, strlen(ok), &m, err, sizeof(err)), 0);
        assert_int_equal(m.type, AGENT_MSG_REPORT);
        assert_int_equal(m.sth.size, 3);
        assert_string_equal(m.trigger, "seal");
        agent_msg_clear(&m);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(agent_line_parse(bad[i], strlen(bad[i]), &m, err, sizeof(err)),
                                 -EINVAL);
        free(ok);
        ok = report_line(3, 1, pk, sk, "[{\"kind\":\"no-such-kind\"}]");
        assert_int_equal(agent_line_parse(ok, strlen(ok), &m, err, sizeof(err)), -EINVAL);
        free(ok);
}

static void test_tofu_and_forgery(void **state)
{
        struct integrity in;
        char *a = report_line(1, 1, pk, sk, NULL), *b = report_line(1, 1, pk2, sk2, NULL);
        char *forged = report_line(1, 1, pk, sk2, NULL);
        json_t *j;

        integrity_init(&in);
        assert_int_equal(feed(&in, a), VERIFY_DONE);
        assert_true(in.key_pinned_now);
        assert_true(in.has_sth);
        j = integrity_to_json(&in);
        assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
        json_decref(j);
        feed(&in, b); /* another key: a mismatch, kept */
        assert_string_equal(last_kind(&in), "key-changed");
        assert_memory_equal(in.key, pk, 32);
        feed(&in, forged); /* the pinned key, but signed by another */
        assert_string_equal(last_kind(&in), "forged-tree-head");
        feed(&in, a); /* a good report does not clear the mismatches */
        j = integrity_to_json(&in);
        assert_string_equal(json_string_value(json_object_get(j, "status")), "mismatch");
        assert_int_equal(json_array_size(json_object_get(j, "mismatches")), 2);
        json_decref(j);
        integrity_clear(&in);
        free(a), free(b), free(forged);
}

static void test_rollback_and_same_size(void **state)
{
        struct integrity in;
        char *five = report_line(5, 1, pk, sk, NULL), *three = report_line(3, 1, pk, sk, NULL);
        char *five_other = report_line(5, 2, pk, sk, NULL);

        integrity_init(&in);
        feed(&in, five);
        feed(&in, three);
        assert_string_equal(last_kind(&in), "rollback");
        feed(&in, five_other);
        assert_string_equal(last_kind(&in), "inconsistent-tree-head");
        assert_int_equal(in.sth.size, 5);
        integrity_clear(&in);
        free(five), free(three), free(five_other);
}

static void test_agent_mismatches_are_kept(void **state)
{
        struct integrity in;
        char *r = report_line(
            1, 1, pk, sk, "[{\"kind\":\"modified-asset\",\"path\":\"/vault/a\",\"detail\":\"x\"}]");

        integrity_init(&in);
        feed(&in, r);
        assert_string_equal(last_kind(&in), "modified-asset");
        feed(&in, r); /* the agent repeats what it still finds: kept once */
        feed(&in, r);
        assert_int_equal(json_array_size(in.mismatches), 1);
        integrity_add_mismatch(&in, "modified-asset", "/vault/a", "y"); /* another detail */
        integrity_add_mismatch(&in, "modified-asset", "/vault/b", "x"); /* another path */
        assert_int_equal(json_array_size(in.mismatches), 3);
        integrity_clear(&in);
        free(r);
        /* the kinds issue 14 added pass through too */
        for (const char *const *k =
                 (const char *const[]){"unsigned", "mode-changed", "owner-changed", "hard-linked",
                                       "unverified", NULL};
             *k; k++) {
                char list[128];

                snprintf(list, sizeof(list), "[{\"kind\":\"%s\",\"path\":\"p\",\"detail\":\"d\"}]",
                         *k);
                r = report_line(1, 1, pk, sk, list);
                integrity_init(&in);
                feed(&in, r);
                assert_string_equal(last_kind(&in), *k);
                integrity_clear(&in);
                free(r);
        }
}

static void test_consistency_request_flow(void **state)
{
        struct integrity in;
        char *two = report_line(2, 1, pk, sk, NULL), *four = report_line(4, 2, pk, sk, NULL);
        char line[512];
        struct agent_msg m;
        char err[256];

        integrity_init(&in);
        feed(&in, two);
        assert_int_equal(feed(&in, four), VERIFY_NEED_CONSISTENCY);
        assert_true(in.pending);
        assert_int_equal(in.sth.size, 2); /* not accepted before the proof */
        /* A reply for another request is ignored; a proof that does not verify is a mismatch. */
        snprintf(line, sizeof(line),
                 "{\"v\":1,\"type\":\"consistency\",\"request_id\":\"%s\",\"from_size\":2,"
                 "\"to_size\":4,\"proof\":[\"%064d\"]}",
                 in.pending_id, 0);
        assert_int_equal(agent_line_parse(line, strlen(line), &m, err, sizeof(err)), 0);
        integrity_on_consistency(&in, &m, 9);
        assert_false(in.pending);
        assert_string_equal(last_kind(&in), "inconsistent-tree-head");
        assert_int_equal(in.sth.size, 2);
        agent_msg_clear(&m);
        integrity_clear(&in);
        free(two), free(four);
}

/* A report line whose STH is the real root of the first n of leaves, signed by sk. */
static char *report_root(const merkle_hash *leaves, uint64_t n)
{
        struct sth s = {.size = n, .time_ms = 1000 + n};
        char b64pk[64], b64sig[128], hex[65], *line = NULL;

        merkle_root(leaves, n, s.root);
        sth_sign(&s, sk);
        sodium_bin2hex(hex, sizeof(hex), s.root, 32);
        sodium_bin2base64(b64pk, sizeof(b64pk), pk, 32, sodium_base64_VARIANT_ORIGINAL);
        sodium_bin2base64(b64sig, sizeof(b64sig), s.signature, 64, sodium_base64_VARIANT_ORIGINAL);
        assert_true(asprintf(&line,
                             "{\"v\":1,\"type\":\"report\",\"trigger\":\"seal\",\"vault_id\":\"v\","
                             "\"public_key\":\"%s\",\"sth\":{\"size\":%llu,\"root\":\"%s\","
                             "\"time_ms\":%llu,\"signature\":\"%s\"},\"records\":1,\"bytes\":2,"
                             "\"duration_ms\":3,\"mismatches\":[]}",
                             b64pk, (unsigned long long)n, hex, (unsigned long long)s.time_ms,
                             b64sig) > 0);
        return line;
}

static void test_consistency_valid_proof(void **state)
{
        merkle_hash leaves[7], proof[MERKLE_MAX_PROOF];
        struct integrity in;
        struct agent_msg m;
        char *three, *seven, line[4096], err[256], hex[65];
        size_t len = 0, o;

        for (uint8_t i = 0; i < 7; i++)
                merkle_leaf_hash(&i, 1, leaves[i]);
        three = report_root(leaves, 3);
        seven = report_root(leaves, 7);
        integrity_init(&in);
        feed(&in, three);
        assert_int_equal(feed(&in, seven), VERIFY_NEED_CONSISTENCY);
        assert_int_equal(merkle_consistency_proof(leaves, 7, 3, proof, &len), 0);
        o = (size_t)snprintf(line, sizeof(line),
                             "{\"v\":1,\"type\":\"consistency\",\"request_id\":\"%s\","
                             "\"from_size\":3,\"to_size\":7,\"proof\":[",
                             in.pending_id);
        for (size_t i = 0; i < len; i++) {
                sodium_bin2hex(hex, sizeof(hex), proof[i], 32);
                o += (size_t)snprintf(line + o, sizeof(line) - o, "%s\"%s\"", i ? "," : "", hex);
        }
        snprintf(line + o, sizeof(line) - o, "]}");
        assert_int_equal(agent_line_parse(line, strlen(line), &m, err, sizeof(err)), 0);
        integrity_on_consistency(&in, &m, 9);
        agent_msg_clear(&m);
        assert_int_equal(json_array_size(in.mismatches), 0);
        assert_int_equal(in.sth.size, 7); /* accepted after the proof verified */
        integrity_clear(&in);
        free(three), free(seven);
}

static void test_policy(void **state)
{
        struct vm_meta m = {.lifecycle = VM_LC_ACTIVE};

        strcpy(m.node_id, "n1");
        assert_int_equal(policy_check_start(&m, "n1"), REFUSE_NONE);
        assert_int_equal(policy_check_start(&m, "n2"), REFUSE_PINNED_ELSEWHERE);
        m.lifecycle = VM_LC_ARCHIVED;
        assert_int_equal(policy_check_start(&m, "n1"), REFUSE_ARCHIVED);
        assert_int_equal(policy_check_start(NULL, "n1"), REFUSE_NOT_TOTEBOX);
        assert_int_equal(policy_check_memory(2048, 1024, 512), REFUSE_NONE);
        assert_int_equal(policy_check_memory(2048, 1537, 512), REFUSE_INSUFFICIENT_MEMORY);
        assert_int_equal(policy_check_memory(100, 1024, 0), REFUSE_INSUFFICIENT_MEMORY);
        assert_string_equal(refusal_name(REFUSE_PINNED_ELSEWHERE), "pinned-elsewhere");
        assert_string_equal(policy_virt_type("auto", true, true), "qemu"); /* PVM KVM here */
        assert_string_equal(policy_virt_type("auto", true, false), "kvm");
        assert_string_equal(policy_virt_type("auto", false, false), "qemu");
        assert_string_equal(policy_virt_type("kvm", false, false), "kvm");
        assert_null(policy_virt_type("xen", true, false));
        /* a system daemon's QEMU (libvirt-qemu) must search the directories it opens files in */
        assert_int_equal(policy_state_dir_mode("qemu:///system", ""), 0711);
        assert_int_equal(policy_state_dir_mode("qemu:///system", "images"), 0711);
        assert_int_equal(policy_state_dir_mode("qemu:///system", "seeds"), 0711);
        assert_int_equal(policy_state_dir_mode("qemu+unix:///system?socket=/s", "vms"), 0711);
        assert_int_equal(policy_state_dir_mode("qemu:///system", "channels"), 0700);
        assert_int_equal(policy_state_dir_mode("qemu:///system", "manifests"), 0700);
        assert_int_equal(policy_state_dir_mode("qemu:///session", "images"), 0700);
        assert_int_equal(policy_state_dir_mode("qemu:///systemd", ""), 0700);
        assert_int_equal(policy_state_dir_mode("qemu:///embed?root=/x/system", ""), 0700);
        assert_int_equal(policy_state_dir_mode("test:///default", ""), 0700);
}

static void test_create_request(void **state)
{
        static const char ok[] = "{\"request_id\":\"r1\",\"vm_id\":\"vm-1\",\"entity\":\"acme\","
                                 "\"memory_mib\":512,\"vcpus\":1,\"image\":\"img\","
                                 "\"vault_disk_mib\":64,\"fleet_id\":\"f\"}";
        static const char *const bad[] = {
            "{\"request_id\":\"r1\",\"vm_id\":\"VM\",\"entity\":\"a\",\"memory_mib\":512,"
            "\"vcpus\":1,\"image\":\"i\",\"vault_disk_mib\":64}",
            "{\"request_id\":\"r1\",\"vm_id\":\"v\",\"entity\":\"a\",\"memory_mib\":1,"
            "\"vcpus\":1,\"image\":\"i\",\"vault_disk_mib\":64}",
            "{\"request_id\":\"r1\",\"vm_id\":\"v\",\"entity\":\"a\",\"memory_mib\":512,"
            "\"vcpus\":1,\"image\":\"i\",\"vault_disk_mib\":64,\"migrate\":true}",
            "{\"request_id\":\"\",\"vm_id\":\"v\",\"entity\":\"a\",\"memory_mib\":512,"
            "\"vcpus\":1,\"image\":\"i\",\"vault_disk_mib\":64}",
            /* ids by common/ident.h: what fleetd would have refused at plan time */
            "{\"request_id\":\"r1\",\"vm_id\":\"v\",\"entity\":\"Acme Ltd\",\"memory_mib\":512,"
            "\"vcpus\":1,\"image\":\"i\",\"vault_disk_mib\":64}",
            "{\"request_id\":\"r1\",\"vm_id\":\"v\",\"entity\":\"a\",\"memory_mib\":512,"
            "\"vcpus\":1,\"image\":\"Ubuntu\",\"vault_disk_mib\":64}",
            "{\"request_id\":\"r 1\",\"vm_id\":\"v\",\"entity\":\"a\",\"memory_mib\":512,"
            "\"vcpus\":1,\"image\":\"i\",\"vault_disk_mib\":64}",
            "[]",
        };
        struct vm_create_req q;
        struct vm_problem p;

        assert_int_equal(vm_create_req_parse(ok, strlen(ok), &q, &p), 0);
        assert_string_equal(q.vm_id, "vm-1");
        assert_int_equal(q.memory_mib, 512);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(vm_create_req_parse(bad[i], strlen(bad[i]), &q, &p), -EINVAL);
                assert_int_equal(node_problem_status(&p), 400);
        }
}

static void test_inventory_digest(void **state)
{
        char hex[DIGEST_HEX_LEN + 1];
        json_t *a = json_loads("[{\"id\":\"b\",\"a\":1}]", 0, NULL);
        json_t *b = json_loads("[{\"a\":1,\"id\":\"b\"}]", 0, NULL);
        char hex2[DIGEST_HEX_LEN + 1];
        json_t *empty = json_array();

        assert_int_equal(inventory_digest(empty, NULL, hex), 0);
        json_decref(empty);
        /* SHA-256("[]") */
        assert_string_equal(hex,
                            "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945");
        inventory_digest(a, NULL, hex);
        inventory_digest(b, NULL, hex2); /* key order does not matter: JSON_SORT_KEYS */
        assert_string_equal(hex, hex2);
        json_decref(a);
        json_decref(b);
}

static void test_allow_list(void **state)
{
        assert_true(node_api_address_allowed("10.0.0.1, 127.0.0.1", "127.0.0.1"));
        assert_false(node_api_address_allowed("10.0.0.1", "10.0.0.10"));
        assert_false(node_api_address_allowed("", "127.0.0.1"));
}

/* The line with its head also as a checkpoint note signed by note_sk (the vault's, or not). */
static char *with_checkpoint(char *line, const uint8_t *note_sk)
{
        json_t *o = json_loads(line, 0, NULL), *sth = json_object_get(o, "sth");
        struct sth s = {.size = (uint64_t)json_integer_value(json_object_get(sth, "size"))};
        char note[1024], *out;
        size_t n = 0;

        assert_int_equal(sodium_hex2bin(s.root, 32, json_string_value(json_object_get(sth, "root")),
                                        64, NULL, &n, NULL),
                         0);
        assert_true(sth_checkpoint_sign(&s, note_sk, note, sizeof(note)) > 0);
        json_object_set_new(o, "checkpoint", json_string(note));
        out = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        free(line);
        return out;
}

static void answer_proof(struct integrity *in, const char *rid, const merkle_hash *leaves,
                         uint64_t from, uint64_t to, enum verify_action want)
{
        merkle_hash proof[MERKLE_MAX_PROOF];
        char line[4096], err[256], hex[65];
        struct agent_msg m;
        size_t len = 0, o;

        assert_int_equal(merkle_consistency_proof(leaves, to, from, proof, &len), 0);
        o = (size_t)snprintf(line, sizeof(line),
                             "{\"v\":1,\"type\":\"consistency\",\"request_id\":\"%s\","
                             "\"from_size\":%llu,\"to_size\":%llu,\"proof\":[",
                             rid, (unsigned long long)from, (unsigned long long)to);
        for (size_t i = 0; i < len; i++) {
                sodium_bin2hex(hex, sizeof(hex), proof[i], 32);
                o += (size_t)snprintf(line + o, sizeof(line) - o, "%s\"%s\"", i ? "," : "", hex);
        }
        snprintf(line + o, sizeof(line) - o, "]}");
        assert_int_equal(agent_line_parse(line, strlen(line), &m, err, sizeof(err)), 0);
        assert_int_equal(integrity_on_consistency(in, &m, 9), want);
        agent_msg_clear(&m);
}

/* The host as a witness: it cosigns only accepted heads, keeps refused checkpoints (signed by
 * the vault) as evidence, refuses a checkpoint the vault key did not sign, and asks the agent
 * for the proof fleetd needs from the size fleetd holds. */
static void test_witness_cosigns_and_keeps_evidence(void **state)
{
        struct witness_key wk;
        struct integrity in;
        struct tlog_checkpoint cp;
        merkle_hash leaves[7];
        uint8_t wpk[32];
        uint64_t t = 0;
        char *five = with_checkpoint(report_line(5, 1, pk, sk, NULL), sk);
        char *three = with_checkpoint(report_line(3, 1, pk, sk, NULL), sk);
        char *fork = with_checkpoint(report_line(5, 2, pk, sk, NULL), sk);
        char *forged = with_checkpoint(report_line(5, 1, pk, sk, NULL), sk2);
        char fleet[1024];
        struct sth s1 = {.size = 1};
        int err = 0;

        crypto_sign_keypair(wpk, wk.sk);
        assert_int_equal(tlog_cosig_key_init("totebox.host/n1", wpk, &wk.pub), 0);
        integrity_init(&in);
        in.signer = &wk;
        feed(&in, five);
        assert_non_null(in.note);
        assert_int_equal(tlog_note_cosig_verify(in.note, strlen(in.note), &wk.pub, &t), 0);
        assert_int_equal(sth_checkpoint_open(in.note, strlen(in.note), pk, &cp), 0);
        assert_int_equal(cp.size, 5);
        feed(&in, three);
        feed(&in, fork);
        assert_int_equal(in.evidence_total, 2);
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(in.evidence, 0), "reason")),
            "rollback");
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(in.evidence, 1), "reason")), "fork");
        assert_int_equal(sth_checkpoint_open(in.note, strlen(in.note), pk, &cp), 0);
        assert_int_equal(cp.size, 5); /* the cosigned head did not move */
        feed(&in, forged);
        assert_string_equal(last_kind(&in), "forged-tree-head");
        /* fleetd's note must be this vault's */
        assert_int_equal(integrity_on_fleet_note(&in, "x\n", 2, &err), VERIFY_DONE);
        assert_int_equal(err, -EBADMSG);
        integrity_clear(&in);

        /* fleetd holds size 1; the host accepted 3 then 7 (proof 3 -> 7): it asks for 1 -> 7 */
        for (uint8_t i = 0; i < 7; i++)
                merkle_leaf_hash(&i, 1, leaves[i]);
        free(three);
        three = with_checkpoint(report_root(leaves, 3), sk);
        free(five);
        five = with_checkpoint(report_root(leaves, 7), sk);
        integrity_init(&in);
        in.signer = &wk;
        feed(&in, three);
        assert_int_equal(feed(&in, five), VERIFY_NEED_CONSISTENCY);
        answer_proof(&in, in.pending_id, leaves, 3, 7, VERIFY_DONE);
        assert_int_equal(in.fwd_from, 3);
        merkle_root(leaves, 1, s1.root);
        assert_true(sth_checkpoint_sign(&s1, sk, fleet, sizeof(fleet)) > 0);
        assert_int_equal(integrity_on_fleet_note(&in, fleet, strlen(fleet), &err),
                         VERIFY_NEED_FLEET_PROOF);
        assert_int_equal(err, 0);
        assert_int_equal(in.fleet_size, 1);
        answer_proof(&in, in.fleet_rid, leaves, 1, 7, VERIFY_DONE);
        assert_int_equal(in.fwd_from, 1);
        assert_true(in.fwd_len > 0);
        assert_int_equal(
            merkle_verify_consistency(1, 7, s1.root, in.sth.root, in.fwd_proof, in.fwd_len), 0);
        integrity_clear(&in);
        free(three), free(five), free(fork), free(forged);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_valid_and_strict),
            cmocka_unit_test(test_tofu_and_forgery),
            cmocka_unit_test(test_rollback_and_same_size),
            cmocka_unit_test(test_agent_mismatches_are_kept),
            cmocka_unit_test(test_consistency_request_flow),
            cmocka_unit_test(test_consistency_valid_proof),
            cmocka_unit_test(test_witness_cosigns_and_keeps_evidence),
            cmocka_unit_test(test_policy),
            cmocka_unit_test(test_create_request),
            cmocka_unit_test(test_inventory_digest),
            cmocka_unit_test(test_allow_list),
        };

        return cmocka_run_group_tests(tests, setup, NULL);
}
