/* RFC 9162 Merkle tree hashing (SHA-256): leaf and node hashes, tree roots, inclusion and
 * consistency proofs (generation from a list of leaf hashes, verification from the wire), and an
 * incremental frontier that keeps the root of an append-only list in O(log n). The agent builds
 * with it; vmhost verifies with it. The verifiers are stricter than the RFC pseudo-code: they
 * refuse consistency from an empty tree and any hash that is not exactly 32 bytes. */
#include "common/merkle.h"
#include "common/sha256.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

void merkle_leaf_hash(const uint8_t *data, size_t len, merkle_hash ret)
{
        struct sha256 st;
        const uint8_t prefix = 0x00;

        sha256_init(&st);
        sha256_update(&st, &prefix, 1);
        sha256_update(&st, data, len);
        sha256_final(&st, ret);
}

void merkle_node_hash(const merkle_hash left, const merkle_hash right, merkle_hash ret)
{
        uint8_t buf[1 + 2 * MERKLE_HASH_LEN];

        buf[0] = 0x01;
        memcpy(buf + 1, left, MERKLE_HASH_LEN);
        memcpy(buf + 1 + MERKLE_HASH_LEN, right, MERKLE_HASH_LEN);
        sha256_digest(buf, sizeof(buf), ret);
}

void merkle_frontier_init(struct merkle_frontier *f)
{
        memset(f, 0, sizeof(*f));
}

int merkle_frontier_append(struct merkle_frontier *f, const merkle_hash leaf)
{
        merkle_hash h;
        unsigned i = 0;

        if (f->count == UINT64_MAX >> 1)
                return -EOVERFLOW;
        memcpy(h, leaf, MERKLE_HASH_LEN);
        while (f->count & ((uint64_t)1 << i)) {
                merkle_node_hash(f->full[i], h, h);
                i++;
        }
        memcpy(f->full[i], h, MERKLE_HASH_LEN);
        f->count++;
        return 0;
}

void merkle_frontier_root(const struct merkle_frontier *f, merkle_hash ret)
{
        merkle_hash r;
        bool have = false;

        if (f->count == 0) {
                sha256_digest(NULL, 0, ret);
                return;
        }
        for (unsigned i = 0; i < MERKLE_MAX_PROOF; i++) {
                if (!(f->count & ((uint64_t)1 << i)))
                        continue;
                if (!have)
                        memcpy(r, f->full[i], MERKLE_HASH_LEN);
                else
                        merkle_node_hash(f->full[i], r, r);
                have = true;
        }
        memcpy(ret, r, MERKLE_HASH_LEN);
}

/* Largest power of two strictly less than n (n >= 2). */
static uint64_t merkle_split(uint64_t n)
{
        return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/* MTH(D[n]) of RFC 9162 2.1.1, recursively: one level of the tree per call, ceil(log2 n) deep
 * at most (a frontier would be 2 KiB on the stack whatever n is). */
void merkle_root(const merkle_hash *leaves, uint64_t n, merkle_hash ret)
{
        merkle_hash left, right;
        uint64_t k;

        if (n <= 1) {
                if (n == 0)
                        sha256_digest(NULL, 0, ret);
                else
                        memcpy(ret, leaves[0], MERKLE_HASH_LEN);
                return;
        }
        k = merkle_split(n);
        merkle_root(leaves, k, left);
        merkle_root(leaves + k, n - k, right);
        merkle_node_hash(left, right, ret);
}

/* Where a proof is written; items NULL only counts, so that a proof too long is refused before
 * anything is written. */
struct merkle_proof_buf {
        merkle_hash *items;
        size_t len;
};

static int merkle_proof_push_root(struct merkle_proof_buf *p, const merkle_hash *leaves, uint64_t n)
{
        if (p->len >= MERKLE_MAX_PROOF)
                return -E2BIG;
        if (p->items)
                merkle_root(leaves, n, p->items[p->len]);
        p->len++;
        return 0;
}

/* RFC 9162 2.1.3.1 PATH(m, D[n]). */
static int merkle_path(const merkle_hash *leaves, uint64_t n, uint64_t m,
                       struct merkle_proof_buf *p)
{
        uint64_t k;
        int r;

        if (n <= 1)
                return 0;
        k = merkle_split(n);
        if (m < k) {
                r = merkle_path(leaves, k, m, p);
                return r < 0 ? r : merkle_proof_push_root(p, leaves + k, n - k);
        }
        r = merkle_path(leaves + k, n - k, m - k, p);
        return r < 0 ? r : merkle_proof_push_root(p, leaves, k);
}

/* RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b). */
static int merkle_subproof(const merkle_hash *leaves, uint64_t n, uint64_t m, bool b,
                           struct merkle_proof_buf *p)
{
        uint64_t k;
        int r;

        if (m == n)
                return b ? 0 : merkle_proof_push_root(p, leaves, n);
        k = merkle_split(n);
        if (m <= k) {
                r = merkle_subproof(leaves, k, m, b, p);
                return r < 0 ? r : merkle_proof_push_root(p, leaves + k, n - k);
        }
        r = merkle_subproof(leaves + k, n - k, m - k, false, p);
        return r < 0 ? r : merkle_proof_push_root(p, leaves, k);
}

int merkle_inclusion_proof(const merkle_hash *leaves, uint64_t n, uint64_t index,
                           merkle_hash *ret_proof, size_t *ret_len)
{
        struct merkle_proof_buf count = {NULL, 0}, p = {ret_proof, 0};
        int r;

        if (index >= n)
                return -EINVAL;
        r = merkle_path(leaves, n, index, &count);
        if (r < 0)
                return r;
        merkle_path(leaves, n, index, &p);
        *ret_len = p.len;
        return 0;
}

/* n is the (new) tree size, m the older size: PROOF(m, D[n]). */
int merkle_consistency_proof(const merkle_hash *leaves, uint64_t n, uint64_t m,
                             merkle_hash *ret_proof, size_t *ret_len)
{
        struct merkle_proof_buf count = {NULL, 0}, p = {ret_proof, 0};
        int r;

        if (m == 0 || m > n)
                return -EINVAL;
        r = merkle_subproof(leaves, n, m, true, &count);
        if (r < 0)
                return r;
        merkle_subproof(leaves, n, m, true, &p);
        *ret_len = p.len;
        return 0;
}

static bool merkle_equal(const uint8_t *a, const uint8_t *b)
{
        return sodium_memcmp(a, b, MERKLE_HASH_LEN) == 0;
}

/* A proof's hashes as they came: fixed-size hashes, or spans already checked to be exactly
 * MERKLE_HASH_LEN bytes each. Verification reads them in place, copying none. */
struct merkle_proof_view {
        const merkle_hash *hashes;
        const struct merkle_span *spans;
        size_t len;
};

static const uint8_t *merkle_proof_at(const struct merkle_proof_view *v, size_t i)
{
        return v->spans ? v->spans[i].data : v->hashes[i];
}

/* RFC 9162 2.1.3.2. */
static int merkle_verify_inclusion_view(uint64_t index, uint64_t size, const merkle_hash leaf,
                                        const struct merkle_proof_view *proof,
                                        const merkle_hash root)
{
        uint64_t fn = index, sn;
        merkle_hash r;

        if (size == 0 || index >= size)
                return -EINVAL;
        if (proof->len > MERKLE_MAX_PROOF)
                return -EBADMSG;
        sn = size - 1;
        memcpy(r, leaf, MERKLE_HASH_LEN);
        for (size_t i = 0; i < proof->len; i++) {
                const uint8_t *p = merkle_proof_at(proof, i);

                if (sn == 0)
                        return -EBADMSG;
                if ((fn & 1) || fn == sn) {
                        merkle_node_hash(p, r, r);
                        while (!(fn & 1) && fn != 0) {
                                fn >>= 1;
                                sn >>= 1;
                        }
                } else {
                        merkle_node_hash(r, p, r);
                }
                fn >>= 1;
                sn >>= 1;
        }
        return sn == 0 && merkle_equal(r, root) ? 0 : -EBADMSG;
}

int merkle_verify_inclusion(uint64_t index, uint64_t size, const merkle_hash leaf,
                            const merkle_hash *proof, size_t proof_len, const merkle_hash root)
{
        struct merkle_proof_view v = {proof, NULL, proof_len};

        return merkle_verify_inclusion_view(index, size, leaf, &v, root);
}

/* RFC 9162 2.1.4.2 for 0 < size1 < size2: seed is the first node of the path, proof from index
 * first on the rest. */
static int merkle_verify_consistency_seeded(uint64_t size1, uint64_t size2, const merkle_hash root1,
                                            const merkle_hash root2, const uint8_t *seed,
                                            const struct merkle_proof_view *proof, size_t first)
{
        uint64_t fn = size1 - 1, sn = size2 - 1;
        merkle_hash fr, sr;

        while (fn & 1) {
                fn >>= 1;
                sn >>= 1;
        }
        memcpy(fr, seed, MERKLE_HASH_LEN);
        memcpy(sr, seed, MERKLE_HASH_LEN);
        for (size_t i = first; i < proof->len; i++) {
                const uint8_t *p = merkle_proof_at(proof, i);

                if (sn == 0)
                        return -EBADMSG;
                if ((fn & 1) || fn == sn) {
                        merkle_node_hash(p, fr, fr);
                        merkle_node_hash(p, sr, sr);
                        while (!(fn & 1) && fn != 0) {
                                fn >>= 1;
                                sn >>= 1;
                        }
                } else {
                        merkle_node_hash(sr, p, sr);
                }
                fn >>= 1;
                sn >>= 1;
        }
        return sn == 0 && merkle_equal(fr, root1) && merkle_equal(sr, root2) ? 0 : -EBADMSG;
}

/* For 0 < size1 < size2. */
static int merkle_verify_consistency_view(uint64_t size1, uint64_t size2, const merkle_hash root1,
                                          const merkle_hash root2,
                                          const struct merkle_proof_view *proof)
{
        if (proof->len == 0 || proof->len > MERKLE_MAX_PROOF)
                return -EBADMSG;
        /* When size1 is a power of two, the old root is the first node of the path. */
        if ((size1 & (size1 - 1)) == 0)
                return merkle_verify_consistency_seeded(size1, size2, root1, root2, root1, proof,
                                                        0);
        return merkle_verify_consistency_seeded(size1, size2, root1, root2,
                                                merkle_proof_at(proof, 0), proof, 1);
}

int merkle_verify_consistency(uint64_t size1, uint64_t size2, const merkle_hash root1,
                              const merkle_hash root2, const merkle_hash *proof, size_t proof_len)
{
        struct merkle_proof_view v = {proof, NULL, proof_len};

        if (size1 == 0 || size1 > size2)
                return -EINVAL;
        if (size1 == size2)
                return proof_len == 0 && merkle_equal(root1, root2) ? 0 : -EBADMSG;
        return merkle_verify_consistency_view(size1, size2, root1, root2, &v);
}

static bool merkle_span_ok(const struct merkle_span *s)
{
        return s->len == MERKLE_HASH_LEN && s->data != NULL;
}

static int merkle_span_copy(const struct merkle_span *s, merkle_hash ret)
{
        if (!merkle_span_ok(s))
                return -EBADMSG;
        memcpy(ret, s->data, MERKLE_HASH_LEN);
        return 0;
}

static int merkle_spans_check(const struct merkle_span *proof, size_t proof_len)
{
        if (proof_len > MERKLE_MAX_PROOF)
                return -EBADMSG;
        for (size_t i = 0; i < proof_len; i++)
                if (!merkle_span_ok(&proof[i]))
                        return -EBADMSG;
        return 0;
}

int merkle_verify_inclusion_span(uint64_t index, uint64_t size, struct merkle_span leaf,
                                 const struct merkle_span *proof, size_t proof_len,
                                 struct merkle_span root)
{
        struct merkle_proof_view v = {NULL, proof, proof_len};
        merkle_hash l, r;

        if (size == 0 || index >= size)
                return -EINVAL;
        if (merkle_span_copy(&leaf, l) < 0 || merkle_span_copy(&root, r) < 0 ||
            merkle_spans_check(proof, proof_len) < 0)
                return -EBADMSG;
        return merkle_verify_inclusion_view(index, size, l, &v, r);
}

int merkle_verify_consistency_span(uint64_t size1, uint64_t size2, struct merkle_span root1,
                                   struct merkle_span root2, const struct merkle_span *proof,
                                   size_t proof_len)
{
        struct merkle_proof_view v = {NULL, proof, proof_len};
        merkle_hash r1, r2;

        if (size1 == 0 || size1 > size2)
                return -EINVAL;
        if (size1 == size2) {
                if (proof_len != 0 || root1.len != root2.len)
                        return -EBADMSG;
                if (root1.len > 0 && sodium_memcmp(root1.data, root2.data, root1.len) != 0)
                        return -EBADMSG;
                return 0;
        }
        if (merkle_span_copy(&root1, r1) < 0 || merkle_span_copy(&root2, r2) < 0 ||
            merkle_spans_check(proof, proof_len) < 0)
                return -EBADMSG;
        return merkle_verify_consistency_view(size1, size2, r1, r2, &v);
}
