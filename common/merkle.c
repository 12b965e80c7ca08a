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

void merkle_root(const merkle_hash *leaves, uint64_t n, merkle_hash ret)
{
        struct merkle_frontier f;

        merkle_frontier_init(&f);
        for (uint64_t i = 0; i < n; i++)
                merkle_frontier_append(&f, leaves[i]);
        merkle_frontier_root(&f, ret);
}

/* Largest power of two strictly less than n (n >= 2). */
static uint64_t merkle_split(uint64_t n)
{
        uint64_t k = 1;

        while (k << 1 < n)
                k <<= 1;
        return k;
}

struct merkle_proof_buf {
        merkle_hash *items;
        size_t len;
};

static int merkle_proof_push_root(struct merkle_proof_buf *p, const merkle_hash *leaves, uint64_t n)
{
        if (p->len >= MERKLE_MAX_PROOF)
                return -E2BIG;
        merkle_root(leaves, n, p->items[p->len++]);
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
        merkle_hash tmp[MERKLE_MAX_PROOF];
        struct merkle_proof_buf p = {tmp, 0};
        int r;

        if (index >= n)
                return -EINVAL;
        r = merkle_path(leaves, n, index, &p);
        if (r < 0)
                return r;
        memcpy(ret_proof, tmp, p.len * MERKLE_HASH_LEN);
        *ret_len = p.len;
        return 0;
}

/* n is the (new) tree size, m the older size: PROOF(m, D[n]). */
int merkle_consistency_proof(const merkle_hash *leaves, uint64_t n, uint64_t m,
                             merkle_hash *ret_proof, size_t *ret_len)
{
        merkle_hash tmp[MERKLE_MAX_PROOF];
        struct merkle_proof_buf p = {tmp, 0};
        int r;

        if (m == 0 || m > n)
                return -EINVAL;
        r = merkle_subproof(leaves, n, m, true, &p);
        if (r < 0)
                return r;
        memcpy(ret_proof, tmp, p.len * MERKLE_HASH_LEN);
        *ret_len = p.len;
        return 0;
}

static bool merkle_equal(const uint8_t *a, const uint8_t *b)
{
        return sodium_memcmp(a, b, MERKLE_HASH_LEN) == 0;
}

/* RFC 9162 2.1.3.2 over fixed-size hashes. */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const merkle_hash leaf,
                            const merkle_hash *proof, size_t proof_len, const merkle_hash root)
{
        uint64_t fn = index, sn;
        merkle_hash r;

        if (size == 0 || index >= size)
                return -EINVAL;
        if (proof_len > MERKLE_MAX_PROOF)
                return -EBADMSG;
        sn = size - 1;
        memcpy(r, leaf, MERKLE_HASH_LEN);
        for (size_t i = 0; i < proof_len; i++) {
                if (sn == 0)
                        return -EBADMSG;
                if ((fn & 1) || fn == sn) {
                        merkle_node_hash(proof[i], r, r);
                        while (!(fn & 1) && fn != 0) {
                                fn >>= 1;
                                sn >>= 1;
                        }
                } else {
                        merkle_node_hash(r, proof[i], r);
                }
                fn >>= 1;
                sn >>= 1;
        }
        return sn == 0 && merkle_equal(r, root) ? 0 : -EBADMSG;
}

/* RFC 9162 2.1.4.2 for 0 < size1 < size2; proof[0] is the seed (already prepended). */
static int merkle_verify_consistency_seeded(uint64_t size1, uint64_t size2, const merkle_hash root1,
                                            const merkle_hash root2, const merkle_hash *proof,
                                            size_t proof_len)
{
        uint64_t fn = size1 - 1, sn = size2 - 1;
        merkle_hash fr, sr;

        while (fn & 1) {
                fn >>= 1;
                sn >>= 1;
        }
        memcpy(fr, proof[0], MERKLE_HASH_LEN);
        memcpy(sr, proof[0], MERKLE_HASH_LEN);
        for (size_t i = 1; i < proof_len; i++) {
                if (sn == 0)
                        return -EBADMSG;
                if ((fn & 1) || fn == sn) {
                        merkle_node_hash(proof[i], fr, fr);
                        merkle_node_hash(proof[i], sr, sr);
                        while (!(fn & 1) && fn != 0) {
                                fn >>= 1;
                                sn >>= 1;
                        }
                } else {
                        merkle_node_hash(sr, proof[i], sr);
                }
                fn >>= 1;
                sn >>= 1;
        }
        return sn == 0 && merkle_equal(fr, root1) && merkle_equal(sr, root2) ? 0 : -EBADMSG;
}

int merkle_verify_consistency(uint64_t size1, uint64_t size2, const merkle_hash root1,
                              const merkle_hash root2, const merkle_hash *proof, size_t proof_len)
{
        merkle_hash seeded[MERKLE_MAX_PROOF + 1];
        size_t n = 0;

        if (size1 == 0 || size1 > size2)
                return -EINVAL;
        if (size1 == size2)
                return proof_len == 0 && merkle_equal(root1, root2) ? 0 : -EBADMSG;
        if (proof_len == 0 || proof_len > MERKLE_MAX_PROOF)
                return -EBADMSG;
        /* When size1 is a power of two, the old root is the first node of the path. */
        if ((size1 & (size1 - 1)) == 0)
                memcpy(seeded[n++], root1, MERKLE_HASH_LEN);
        memcpy(seeded + n, proof, proof_len * MERKLE_HASH_LEN);
        return merkle_verify_consistency_seeded(size1, size2, root1, root2, seeded, n + proof_len);
}

static int merkle_span_copy(const struct merkle_span *s, merkle_hash ret)
{
        if (s->len != MERKLE_HASH_LEN || s->data == NULL)
                return -EBADMSG;
        memcpy(ret, s->data, MERKLE_HASH_LEN);
        return 0;
}

static int merkle_spans_copy(const struct merkle_span *proof, size_t proof_len, merkle_hash *ret)
{
        if (proof_len > MERKLE_MAX_PROOF)
                return -EBADMSG;
        for (size_t i = 0; i < proof_len; i++)
                if (merkle_span_copy(&proof[i], ret[i]) < 0)
                        return -EBADMSG;
        return 0;
}

int merkle_verify_inclusion_span(uint64_t index, uint64_t size, struct merkle_span leaf,
                                 const struct merkle_span *proof, size_t proof_len,
                                 struct merkle_span root)
{
        merkle_hash l, r, p[MERKLE_MAX_PROOF];

        if (size == 0 || index >= size)
                return -EINVAL;
        if (merkle_span_copy(&leaf, l) < 0 || merkle_span_copy(&root, r) < 0 ||
            merkle_spans_copy(proof, proof_len, p) < 0)
                return -EBADMSG;
        return merkle_verify_inclusion(index, size, l, p, proof_len, r);
}

int merkle_verify_consistency_span(uint64_t size1, uint64_t size2, struct merkle_span root1,
                                   struct merkle_span root2, const struct merkle_span *proof,
                                   size_t proof_len)
{
        merkle_hash r1, r2, p[MERKLE_MAX_PROOF];

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
            merkle_spans_copy(proof, proof_len, p) < 0)
                return -EBADMSG;
        return merkle_verify_consistency(size1, size2, r1, r2, p, proof_len);
}
