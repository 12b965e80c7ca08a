/* Unit tests for common/merkle: the RFC 6962/9162 vectors in tests/vectors/merkle-vectors.txt
 * (single hashes, roots, inclusion and consistency proofs, generated and verified), all 196
 * golden probes of merkle-golden-probes.json (positive and negative), and the frontier against
 * the recursive definition for every size up to 300. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "common/merkle.h"

#define VECTORS_TXT   TOTEBOX_VECTORS_DIR "/merkle-vectors.txt"
#define VECTORS_PROBE TOTEBOX_VECTORS_DIR "/merkle-golden-probes.json"
#define MAX_LEAVES    8

static void hex_decode32(const char *hex, merkle_hash out)
{
        size_t len = 0;

        assert_int_equal(sodium_hex2bin(out, MERKLE_HASH_LEN, hex, strlen(hex), NULL, &len, NULL),
                         0);
        assert_int_equal(len, MERKLE_HASH_LEN);
}

/* The vector file: parsed once into these arrays. */
struct vec_proof {
        uint64_t a, b; /* inclusion: leaf index (0-based), size; consistency: size1, size2 */
        merkle_hash items[MERKLE_MAX_PROOF];
        size_t len;
        int is_consistency;
};

static struct {
        uint8_t leaf_input[MAX_LEAVES][32];
        size_t leaf_input_len[MAX_LEAVES];
        merkle_hash leaf_hash[MAX_LEAVES];
        merkle_hash roots[MAX_LEAVES + 1];
        merkle_hash empty_root, leaf_empty, leaf_l123456, node_n123_n456;
        struct vec_proof proofs[32];
        size_t n_proofs, n_roots, n_leaf_hashes, n_inputs, n_singles;
} vec;

static char *last_token(char *line)
{
        char *end = line + strlen(line);
        char *p;

        while (end > line && (end[-1] == '\n' || end[-1] == ' '))
                *--end = '\0';
        p = strrchr(line, ' ');
        return p ? p + 1 : line;
}

static void vectors_parse_line(char *line, int *section, struct vec_proof **cur, int *level)
{
        unsigned long a, b;
        char hex[80];

        if (strncmp(line, "---", 3) == 0) {
                *section = strstr(line, "Single-hash")          ? 1
                           : strstr(line, "Leaf inputs")        ? 2
                           : strstr(line, "Node hashes")        ? 3
                           : strstr(line, "Root hashes")        ? 4
                           : strstr(line, "Inclusion proofs")   ? 5
                           : strstr(line, "Consistency proofs") ? 6
                                                                : 0;
                *cur = NULL;
                return;
        }
        if (*section == 1) {
                merkle_hash *dst = strstr(line, "empty tree root")          ? &vec.empty_root
                                   : strstr(line, "leaf hash of \"\"")      ? &vec.leaf_empty
                                   : strstr(line, "leaf hash of \"L123456") ? &vec.leaf_l123456
                                   : strstr(line, "node hash(\"N123")       ? &vec.node_n123_n456
                                                                            : NULL;
                if (dst) {
                        hex_decode32(last_token(line), *dst);
                        vec.n_singles++;
                }
        } else if (*section == 2 && sscanf(line, " %lu: %79s", &a, hex) == 2 && a < MAX_LEAVES) {
                if (hex[0] != '"')
                        assert_int_equal(sodium_hex2bin(vec.leaf_input[a], 32, hex, strlen(hex),
                                                        NULL, &vec.leaf_input_len[a], NULL),
                                         0);
                vec.n_inputs++;
        } else if (*section == 3) {
                if (sscanf(line, " level %lu", &a) == 1)
                        *level = (int)a;
                else if (*level == 0 && sscanf(line, " %64s", hex) == 1 && strlen(hex) == 64 &&
                         vec.n_leaf_hashes < MAX_LEAVES)
                        hex_decode32(hex, vec.leaf_hash[vec.n_leaf_hashes++]);
        } else if (*section == 4 && sscanf(line, " n=%lu %64s", &a, hex) == 2 && a <= MAX_LEAVES) {
                hex_decode32(hex, vec.roots[a]);
                vec.n_roots++;
        } else if ((*section == 5 && sscanf(line, " leaf %lu, size %lu:", &a, &b) == 2) ||
                   (*section == 6 && sscanf(line, " %lu -> %lu:", &a, &b) == 2)) {
                *cur = &vec.proofs[vec.n_proofs++];
                (*cur)->a = *section == 5 ? a - 1 : a;
                (*cur)->b = b;
                (*cur)->is_consistency = *section == 6;
        } else if (*cur && sscanf(line, " %64s", hex) == 1 && strlen(hex) == 64) {
                hex_decode32(hex, (*cur)->items[(*cur)->len++]);
        }
}

static int vectors_setup(void **state)
{
        FILE *f = fopen(VECTORS_TXT, "re");
        char line[512];
        int section = 0, level = -1;
        struct vec_proof *cur = NULL;

        if (sodium_init() < 0 || !f)
                return -1;
        while (fgets(line, sizeof(line), f))
                vectors_parse_line(line, &section, &cur, &level);
        fclose(f);
        return 0;
}

static void test_vectors_parsed(void **state)
{
        assert_int_equal(vec.n_singles, 4);
        assert_int_equal(vec.n_inputs, MAX_LEAVES);
        assert_int_equal(vec.n_leaf_hashes, MAX_LEAVES);
        assert_int_equal(vec.n_roots, MAX_LEAVES + 1);
        assert_int_equal(vec.n_proofs, 10);
}

static void test_single_hashes(void **state)
{
        merkle_hash h, a, b;
        struct merkle_frontier f;

        merkle_root(NULL, 0, h);
        assert_memory_equal(h, vec.empty_root, 32);
        merkle_frontier_init(&f);
        merkle_frontier_root(&f, h);
        assert_memory_equal(h, vec.empty_root, 32);
        merkle_leaf_hash((const uint8_t *)"", 0, h);
        assert_memory_equal(h, vec.leaf_empty, 32);
        merkle_leaf_hash((const uint8_t *)"L123456", 7, h);
        assert_memory_equal(h, vec.leaf_l123456, 32);
        /* The RFC 6962 node vector hashes two 4-byte strings; merkle_node_hash takes 32-byte
         * children, so the vector checks the 0x01 prefix rule and the API check follows. */
        uint8_t buf[1 + 8] = {0x01, 'N', '1', '2', '3', 'N', '4', '5', '6'};
        crypto_hash_sha256(h, buf, sizeof(buf));
        assert_memory_equal(h, vec.node_n123_n456, 32);
        memset(a, 0x11, 32);
        memset(b, 0x22, 32);
        merkle_node_hash(a, b, h);
        uint8_t buf2[65];
        buf2[0] = 1;
        memcpy(buf2 + 1, a, 32);
        memcpy(buf2 + 33, b, 32);
        merkle_hash want;
        crypto_hash_sha256(want, buf2, sizeof(buf2));
        assert_memory_equal(h, want, 32);
}

static void test_leaf_hashes_and_roots(void **state)
{
        merkle_hash leaves[MAX_LEAVES], h;
        struct merkle_frontier f;

        merkle_frontier_init(&f);
        for (int i = 0; i < MAX_LEAVES; i++) {
                merkle_leaf_hash(vec.leaf_input[i], vec.leaf_input_len[i], leaves[i]);
                assert_memory_equal(leaves[i], vec.leaf_hash[i], 32);
        }
        for (uint64_t n = 0; n <= MAX_LEAVES; n++) {
                merkle_root(leaves, n, h);
                assert_memory_equal(h, vec.roots[n], 32);
                merkle_frontier_root(&f, h);
                assert_memory_equal(h, vec.roots[n], 32);
                if (n < MAX_LEAVES)
                        assert_int_equal(merkle_frontier_append(&f, leaves[n]), 0);
        }
}

static void test_vector_proofs(void **state)
{
        merkle_hash got[MERKLE_MAX_PROOF];
        size_t len = 99;

        for (size_t i = 0; i < vec.n_proofs; i++) {
                const struct vec_proof *p = &vec.proofs[i];

                if (p->is_consistency) {
                        assert_int_equal(
                            merkle_consistency_proof(vec.leaf_hash, p->b, p->a, got, &len), 0);
                        assert_int_equal(merkle_verify_consistency(p->a, p->b, vec.roots[p->a],
                                                                   vec.roots[p->b], p->items,
                                                                   p->len),
                                         0);
                } else {
                        assert_int_equal(
                            merkle_inclusion_proof(vec.leaf_hash, p->b, p->a, got, &len), 0);
                        assert_int_equal(merkle_verify_inclusion(p->a, p->b, vec.leaf_hash[p->a],
                                                                 p->items, p->len, vec.roots[p->b]),
                                         0);
                }
                assert_int_equal(len, p->len);
                assert_memory_equal(got, p->items, len * MERKLE_HASH_LEN);
        }
}

/* Every (index, size) and (m, n) pair up to 8 leaves: generated proofs verify, and a flipped
 * bit in any proof element is refused. */
static void test_all_small_proofs(void **state)
{
        merkle_hash proof[MERKLE_MAX_PROOF];
        size_t len;

        for (uint64_t n = 1; n <= MAX_LEAVES; n++) {
                for (uint64_t i = 0; i < n; i++) {
                        assert_int_equal(merkle_inclusion_proof(vec.leaf_hash, n, i, proof, &len),
                                         0);
                        assert_int_equal(merkle_verify_inclusion(i, n, vec.leaf_hash[i], proof, len,
                                                                 vec.roots[n]),
                                         0);
                        for (size_t j = 0; j < len; j++) {
                                proof[j][0] ^= 1;
                                assert_int_equal(merkle_verify_inclusion(i, n, vec.leaf_hash[i],
                                                                         proof, len, vec.roots[n]),
                                                 -EBADMSG);
                                proof[j][0] ^= 1;
                        }
                }
                for (uint64_t m = 1; m <= n; m++) {
                        assert_int_equal(merkle_consistency_proof(vec.leaf_hash, n, m, proof, &len),
                                         0);
                        assert_int_equal(
                            merkle_verify_consistency(m, n, vec.roots[m], vec.roots[n], proof, len),
                            0);
                        for (size_t j = 0; j < len; j++) {
                                proof[j][5] ^= 0x80;
                                assert_int_not_equal(merkle_verify_consistency(m, n, vec.roots[m],
                                                                               vec.roots[n], proof,
                                                                               len),
                                                     0);
                                proof[j][5] ^= 0x80;
                        }
                }
        }
        assert_int_equal(merkle_consistency_proof(vec.leaf_hash, 4, 0, proof, &len), -EINVAL);
        assert_int_equal(merkle_consistency_proof(vec.leaf_hash, 4, 5, proof, &len), -EINVAL);
        assert_int_equal(merkle_inclusion_proof(vec.leaf_hash, 4, 4, proof, &len), -EINVAL);
        assert_int_equal(merkle_verify_consistency(0, 4, vec.roots[0], vec.roots[4], proof, 0),
                         -EINVAL);
}

/* Frontier against merkle_root for larger sizes; consistency proofs across many splits. */
static void test_frontier_large(void **state)
{
        enum { N = 300 };
        merkle_hash *leaves = calloc(N, sizeof(merkle_hash));
        merkle_hash a, b, proof[MERKLE_MAX_PROOF];
        struct merkle_frontier f;
        size_t len;

        assert_non_null(leaves);
        merkle_frontier_init(&f);
        for (uint64_t i = 0; i < N; i++) {
                uint8_t x[8];
                memcpy(x, &i, sizeof(x));
                merkle_leaf_hash(x, sizeof(x), leaves[i]);
                merkle_frontier_append(&f, leaves[i]);
                merkle_frontier_root(&f, a);
                merkle_root(leaves, i + 1, b);
                assert_memory_equal(a, b, 32);
        }
        for (uint64_t m = 1; m < N; m += 7) {
                merkle_root(leaves, m, a);
                assert_int_equal(merkle_consistency_proof(leaves, N, m, proof, &len), 0);
                assert_int_equal(merkle_verify_consistency(m, N, a, b, proof, len), 0);
                assert_int_equal(merkle_inclusion_proof(leaves, N, m, proof, &len), 0);
                assert_int_equal(merkle_verify_inclusion(m, N, leaves[m], proof, len, b), 0);
        }
        free(leaves);
}

/* Golden probes: hashes are base64 and may be any length (the negative cases use 0- and
 * 12-byte "hashes"), so they go through the span verifiers. */
struct probe_bytes {
        uint8_t buf[64];
        struct merkle_span span;
};

static void probe_decode(const json_t *v, struct probe_bytes *out)
{
        const char *s = json_string_value(v);
        size_t len = 0;

        assert_non_null(s);
        assert_int_equal(sodium_base642bin(out->buf, sizeof(out->buf), s, strlen(s), NULL, &len,
                                           NULL, sodium_base64_VARIANT_ORIGINAL),
                         0);
        out->span.data = out->buf;
        out->span.len = len;
}

static size_t probe_proof(const json_t *arr, struct probe_bytes *items, struct merkle_span *spans)
{
        size_t i;
        json_t *v;

        if (json_is_null(arr) || arr == NULL)
                return 0;
        assert_true(json_is_array(arr));
        assert_true(json_array_size(arr) <= MERKLE_MAX_PROOF);
        json_array_foreach(arr, i, v)
        {
                probe_decode(v, &items[i]);
                spans[i] = items[i].span;
        }
        return json_array_size(arr);
}

/* jansson's integers are signed 64-bit and two probes use 2^64 - 1, so numbers are read as
 * reals: exact below 2^53, and 2^64 - 1 rounds to 2^64, which maps back to UINT64_MAX. */
static uint64_t probe_u64(const json_t *p, const char *key)
{
        double d = json_number_value(json_object_get(p, key));

        assert_true(d >= 0);
        return d >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d;
}

static int probe_run(const json_t *p)
{
        struct probe_bytes items[MERKLE_MAX_PROOF], r1, r2, leaf;
        struct merkle_span spans[MERKLE_MAX_PROOF];
        size_t n = probe_proof(json_object_get(p, "proof"), items, spans);

        if (json_object_get(p, "leafIdx")) {
                probe_decode(json_object_get(p, "root"), &r1);
                probe_decode(json_object_get(p, "leafHash"), &leaf);
                return merkle_verify_inclusion_span(probe_u64(p, "leafIdx"),
                                                    probe_u64(p, "treeSize"), leaf.span, spans, n,
                                                    r1.span);
        }
        probe_decode(json_object_get(p, "root1"), &r1);
        probe_decode(json_object_get(p, "root2"), &r2);
        return merkle_verify_consistency_span(probe_u64(p, "size1"), probe_u64(p, "size2"), r1.span,
                                              r2.span, spans, n);
}

static void test_golden_probes(void **state)
{
        json_error_t jerr;
        json_t *root = json_load_file(VECTORS_PROBE, JSON_DECODE_INT_AS_REAL, &jerr);
        json_t *probes, *p;
        const char *name;
        int checked = 0, rejected = 0, failures = 0;

        if (!root)
                fail_msg("%s:%d: %s", VECTORS_PROBE, jerr.line, jerr.text);
        probes = json_object_get(root, "probes");
        assert_true(json_is_object(probes));
        json_object_foreach(probes, name, p)
        {
                int want_err = json_is_true(json_object_get(p, "wantErr"));
                int r = probe_run(p);

                if ((r != 0) != want_err) {
                        fprintf(stderr, "probe '%s': got %d, wantErr %d\n", name, r, want_err);
                        failures++;
                }
                if (r != 0)
                        rejected++;
                checked++;
        }
        json_decref(root);
        fprintf(stderr, "golden probes: %d checked, %d rejected\n", checked, rejected);
        assert_int_equal(failures, 0);
        assert_int_equal(checked, 196);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_vectors_parsed),        cmocka_unit_test(test_single_hashes),
            cmocka_unit_test(test_leaf_hashes_and_roots), cmocka_unit_test(test_vector_proofs),
            cmocka_unit_test(test_all_small_proofs),      cmocka_unit_test(test_frontier_large),
            cmocka_unit_test(test_golden_probes),
        };

        return cmocka_run_group_tests(tests, vectors_setup, NULL);
}
