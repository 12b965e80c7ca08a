/* Unit tests for the agent's ledger, requests, reports and channel queue: canonical format and
 * strict parse round-trip, hostile lines refused with a reason, asset path rules, the
 * supersedes suffix, request parsing, consistency answers, report size and the bounded queue. */
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
#include <jansson.h>
#include <sodium.h>

#include "agent/agent.h"

static void entry_fill(struct ledger_entry *e, uint64_t seq)
{
        memset(e, 0, sizeof(*e));
        e->seq = seq;
        snprintf(e->time, sizeof(e->time), "2026-11-23T10:00:00.000Z");
        snprintf(e->path, sizeof(e->path), "assets/%08llu-x.txt", (unsigned long long)seq);
        e->size = 1234;
        memset(e->hash, 0x5a, sizeof(e->hash));
        memset(e->prev, seq > 1 ? 0x11 : 0, sizeof(e->prev));
        e->supersedes = seq > 1 ? seq - 1 : 0;
}

static void test_roundtrip(void **state)
{
        struct ledger_entry e, back;
        char line[LEDGER_LINE_MAX], err[256], again[LEDGER_LINE_MAX];
        int n;

        for (uint64_t seq = 1; seq < 4; seq++) {
                entry_fill(&e, seq);
                n = ledger_entry_format(&e, line, sizeof(line));
                assert_true(n > 0);
                assert_int_equal(ledger_entry_parse(line, (size_t)n, &back, err, sizeof(err)), 0);
                assert_int_equal(ledger_entry_format(&back, again, sizeof(again)), n);
                assert_memory_equal(line, again, (size_t)n);
        }
        assert_non_null(strstr(line, "\"supersedes\":2"));
        entry_fill(&e, 1);
        n = ledger_entry_format(&e, line, sizeof(line));
        assert_non_null(strstr(line, "\"supersedes\":null"));
        assert_int_equal(ledger_entry_format(&e, line, 20), -ENOSPC);
}

static void test_hostile_lines(void **state)
{
        static const char *bad[] = {
            "",
            "{",
            "[]",
            "null",
            "{\"seq\":1}",
            "{\"seq\":1,\"seq\":1}",
            "{\"seq\":0,\"time\":\"t\",\"path\":\"assets/a\",\"size\":1,\"blake2b_256\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\","
            "\"supersedes\":null,\"protect\":\"immutable\",\"prev\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}",
            "{\"seq\":1,\"time\":\"t\",\"path\":\"assets/../x\",\"size\":1,\"blake2b_256\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\","
            "\"supersedes\":null,\"protect\":\"immutable\",\"prev\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}",
            "{\"seq\":1,\"time\":\"t\",\"path\":\"assets/a\",\"size\":1,\"blake2b_256\":"
            "\"ABCD000000000000000000000000000000000000000000000000000000000000\","
            "\"supersedes\":null,\"protect\":\"immutable\",\"prev\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}",
            "{\"seq\":2,\"time\":\"t\",\"path\":\"assets/a\",\"size\":1,\"blake2b_256\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\","
            "\"supersedes\":2,\"protect\":\"immutable\",\"prev\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}",
            "{\"seq\":1,\"time\":\"t\",\"path\":\"assets/a\",\"size\":1,\"blake2b_256\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\","
            "\"supersedes\":null,\"protect\":\"maybe\",\"prev\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}",
            "{\"seq\":1,\"time\":\"t\",\"path\":\"assets/a\",\"size\":-1,\"blake2b_256\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\","
            "\"supersedes\":null,\"protect\":\"immutable\",\"prev\":"
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}",
        };
        struct ledger_entry e;
        char err[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                assert_int_equal(ledger_entry_parse(bad[i], strlen(bad[i]), &e, err, sizeof(err)),
                                 -EINVAL);
                assert_true(err[0] != '\0');
        }
}

static void test_paths_and_supersedes(void **state)
{
        char name[256];

        assert_true(ledger_path_valid("assets/00000001-a.txt"));
        assert_false(ledger_path_valid("assets/"));
        assert_false(ledger_path_valid("assets/.hidden"));
        assert_false(ledger_path_valid("assets/a/b"));
        assert_false(ledger_path_valid("ledger/x"));
        assert_false(ledger_path_valid("assets/a b"));
        /* the path rule: the entry's own sequence number, as the agent names the asset */
        assert_true(ledger_path_matches_seq("assets/00000001-a.txt", 1));
        assert_true(ledger_path_matches_seq("assets/00000007-", 7));
        assert_true(ledger_path_matches_seq("assets/123456789-a", 123456789));
        assert_false(ledger_path_matches_seq("assets/00000001-a.txt", 2));
        assert_false(ledger_path_matches_seq("assets/0000001-a.txt", 1));
        assert_false(ledger_path_matches_seq("assets/000000010-a", 10));
        assert_false(ledger_path_matches_seq("assets/00000001a.txt", 1));
        assert_false(ledger_path_matches_seq("assets/00000001-a/b", 1));
        assert_int_equal(seal_parse_supersedes("report.pdf.supersedes-12", name, sizeof(name)), 12);
        assert_string_equal(name, "report.pdf");
        assert_int_equal(seal_parse_supersedes("report.pdf", name, sizeof(name)), 0);
        assert_int_equal(seal_parse_supersedes("x.supersedes-0", name, sizeof(name)), 0);
        assert_int_equal(seal_parse_supersedes("x.supersedes-1a", name, sizeof(name)), 0);
        assert_int_equal(
            seal_parse_supersedes("x.supersedes-99999999999999999999999", name, sizeof(name)), 0);
}

/* A ledger file of n chained lines; line bad_at (1-based, 0: none) is replaced by junk and line
 * long_at by one longer than LEDGER_LINE_MAX. */
static void ledger_file_write(const char *path, size_t n, size_t bad_at, size_t long_at)
{
        FILE *f = fopen(path, "w");
        uint8_t prev[32] = {0};

        assert_non_null(f);
        for (size_t i = 1; i <= n; i++) {
                struct ledger_entry e;
                char line[LEDGER_LINE_MAX];
                int len;

                entry_fill(&e, i);
                e.supersedes = 0;
                memcpy(e.prev, prev, sizeof(prev));
                len = ledger_entry_format(&e, line, sizeof(line));
                assert_true(len > 0);
                ledger_line_hash(line, (size_t)len, prev);
                if (i == bad_at)
                        fprintf(f, "{\"seq\":\"junk\"}\n");
                else if (i == long_at)
                        fprintf(f, "%0*d\n", LEDGER_LINE_MAX + 10, 7);
                else
                        fprintf(f, "%s\n", line);
        }
        fclose(f);
}

static bool mismatch_named(const struct mismatch_list *mm, const char *kind, const char *text)
{
        for (size_t i = 0; i < mm->n; i++)
                if (strcmp(mm->items[i].kind, kind) == 0 && strstr(mm->items[i].detail, text))
                        return true;
        return false;
}

/* Lines are parsed in batches on several threads: a clean ledger across batch edges loads with
 * every leaf, and bad lines on either side of an edge are named with their line numbers. */
static void test_load_across_batches(void **state)
{
        char path[] = "/tmp/totebox-ledger-test-XXXXXX";
        int fd = mkstemp(path);
        struct mismatch_list mm;
        struct ledger l;
        merkle_hash a, b;

        (void)state;
        assert_true(fd >= 0);
        close(fd);
        ledger_file_write(path, 5000, 0, 0);
        ledger_init(&l);
        l.seq_only = true; /* the daemon's copy: every leaf kept */
        mismatch_list_init(&mm);
        assert_int_equal(ledger_load(&l, path, &mm), 0);
        assert_int_equal(mm.n, 0);
        assert_int_equal(l.n, 5000);
        assert_int_equal(ledger_root(&l, 5000, a), 0); /* the frontier, appended to in order */
        merkle_root(l.leaves, 5000, b);
        assert_memory_equal(a, b, sizeof(a));
        for (size_t i = 0; i < l.n; i++)
                assert_int_equal(l.seqs[i], i + 1);
        ledger_done(&l);
        mismatch_list_done(&mm);

        ledger_file_write(path, 5000, 2048, 2049);
        ledger_init(&l);
        mismatch_list_init(&mm);
        assert_int_equal(ledger_load(&l, path, &mm), 0);
        assert_int_equal(l.n, 4999); /* the overlong line is not a leaf */
        assert_true(mismatch_named(&mm, "ledger-edited", "line 2048 is not a ledger entry"));
        assert_true(mismatch_named(&mm, "ledger-edited", "line 2049 is longer than"));
        assert_int_equal(l.nrecs, 4998); /* only entries that parsed are kept */
        assert_int_equal(l.recs[2046].seq, 2047);
        assert_int_equal(l.recs[2047].seq, 2050);
        assert_int_equal(l.recs[2047].line, 2048);
        assert_string_equal(ledger_record_path(&l, &l.recs[2047]), "assets/00002050-x.txt");
        assert_null(l.leaves);
        ledger_done(&l);
        mismatch_list_done(&mm);
        unlink(path);
}

/* Verification's read keeps no per-line array: the roots it asked for are remembered on the
 * way, and every line past the signed size is named `unsigned`. */
static void test_marks_and_unsigned(void **state)
{
        char path[] = "/tmp/totebox-ledger-test-XXXXXX";
        int fd = mkstemp(path);
        struct mismatch_list mm;
        struct ledger full, l;
        merkle_hash a, b;

        (void)state;
        assert_true(fd >= 0);
        close(fd);
        ledger_file_write(path, 10, 0, 0);
        ledger_init(&full);
        full.seq_only = true;
        mismatch_list_init(&mm);
        assert_int_equal(ledger_load(&full, path, &mm), 0);
        ledger_init(&l);
        ledger_mark(&l, 3);
        ledger_mark(&l, 7);
        l.signed_size = 7;
        assert_int_equal(ledger_load(&l, path, &mm), 0);
        assert_int_equal(mismatch_count_kind(&mm, "unsigned"), 3);
        assert_true(mismatch_named(&mm, "unsigned", "line 8 (seq 8) is past the last signed"));
        for (uint64_t size = 0; size <= 10; size++) {
                int r = ledger_root(&l, size, a);

                if (size != 0 && size != 3 && size != 7 && size != 10) {
                        assert_int_equal(r, -ENOENT);
                        continue;
                }
                assert_int_equal(r, 0);
                assert_int_equal(ledger_root(&full, size, b), 0);
                assert_memory_equal(a, b, sizeof(a));
        }
        ledger_done(&l);
        ledger_done(&full);
        mismatch_list_done(&mm);
        unlink(path);
}

static void test_requests(void **state)
{
        struct agent_request r;
        char err[256];
        const char *ok1 = "{\"v\":1,\"type\":\"verify-request\",\"request_id\":\"a\"}";
        const char *ok2 = "{\"v\":1,\"type\":\"consistency-request\",\"request_id\":\"b\","
                          "\"from_size\":2,\"to_size\":5}";
        const char *bad_v = "{\"v\":2,\"type\":\"verify-request\",\"request_id\":\"c\"}";

        assert_int_equal(agent_request_parse(ok1, strlen(ok1), &r, err, sizeof(err)), 0);
        assert_int_equal(r.type, AGENT_REQ_VERIFY);
        assert_string_equal(r.request_id, "a");
        assert_int_equal(agent_request_parse(ok2, strlen(ok2), &r, err, sizeof(err)), 0);
        assert_int_equal(r.type, AGENT_REQ_CONSISTENCY);
        assert_int_equal(r.from_size, 2);
        assert_int_equal(r.to_size, 5);
        assert_int_equal(agent_request_parse(bad_v, strlen(bad_v), &r, err, sizeof(err)), -EINVAL);
        assert_string_equal(r.request_id, "c");
        assert_int_equal(agent_request_parse("{", 1, &r, err, sizeof(err)), -EINVAL);
        assert_string_equal(r.request_id, "");
}

static void test_consistency_answer_and_report(void **state)
{
        struct ledger l;
        struct ledger_entry e;
        struct agent_request req = {.type = AGENT_REQ_CONSISTENCY, .from_size = 3, .to_size = 7};
        struct verify_result vr;
        struct sth s = {.size = 7};
        uint8_t pk[32], sk[64];
        struct tlog_checkpoint cp;
        const char *note;
        char line[LEDGER_LINE_MAX], err[256], *out;
        json_t *o;

        assert_true(sodium_init() >= 0);
        crypto_sign_keypair(pk, sk);
        ledger_init(&l);
        l.seq_only = true; /* the daemon's copy keeps the leaves proofs need */
        for (uint64_t i = 1; i <= 7; i++) {
                entry_fill(&e, i);
                int n = ledger_entry_format(&e, line, sizeof(line));
                assert_int_equal(ledger_push(&l, &e, line, (size_t)n), 0);
        }
        snprintf(req.request_id, sizeof(req.request_id), "q");
        out = report_answer_consistency(&l, &req, err, sizeof(err));
        assert_non_null(out);
        o = json_loads(out, 0, NULL);
        assert_int_equal(json_array_size(json_object_get(o, "proof")), 4);
        json_decref(o);
        free(out);
        req.to_size = 8;
        assert_null(report_answer_consistency(&l, &req, err, sizeof(err)));
        req.from_size = 0;
        req.to_size = 1;
        assert_null(report_answer_consistency(&l, &req, err, sizeof(err)));

        /* a report with the most mismatches stays under the line limit */
        memset(&vr, 0, sizeof(vr));
        mismatch_list_init(&vr.mm);
        for (int i = 0; i < 1000; i++)
                mismatch_add(&vr.mm, "modified-asset", "assets/\x01\xff-long-name", "%0250d", i);
        out = report_build("schedule", NULL, "vault", sk, &s, &vr);
        assert_non_null(out);
        assert_true(strlen(out) < CHANNEL_LINE_MAX);
        /* the head also comes as a C2SP checkpoint signed by the vault key, origin its key */
        o = json_loads(out, 0, NULL);
        note = json_string_value(json_object_get(o, "checkpoint"));
        assert_non_null(note);
        assert_int_equal(sth_checkpoint_open(note, strlen(note), pk, &cp), 0);
        assert_int_equal(cp.size, 7);
        assert_memory_equal(cp.root, s.root, 32);
        assert_int_equal(strncmp(cp.origin, "totebox.vault/", 14), 0);
        pk[0] ^= 1;
        assert_int_equal(sth_checkpoint_open(note, strlen(note), pk, &cp), -ENOKEY);
        json_decref(o);
        assert_null(strchr(out, '\x01'));
        free(out);
        assert_int_equal(vr.mm.total, 1000);
        verify_result_done(&vr);
        ledger_done(&l);
}

static void test_queue_bounded(void **state)
{
        struct channel c;

        assert_int_equal(channel_init(&c, "", 3), 0);
        for (int i = 0; i < 10; i++) {
                char line[16];
                snprintf(line, sizeof(line), "m%d", i);
                assert_int_equal(channel_send(&c, line), 0);
        }
        assert_int_equal(c.q_count, 3);
        assert_int_equal(c.dropped, 7);
        assert_string_equal(c.queue[c.q_head], "m7\n");
        assert_int_equal(channel_ensure_open(&c, 0), -EAGAIN);
        channel_done(&c);
        channel_done(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_roundtrip),
            cmocka_unit_test(test_hostile_lines),
            cmocka_unit_test(test_paths_and_supersedes),
            cmocka_unit_test(test_load_across_batches),
            cmocka_unit_test(test_marks_and_unsigned),
            cmocka_unit_test(test_requests),
            cmocka_unit_test(test_consistency_answer_and_report),
            cmocka_unit_test(test_queue_bounded),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
