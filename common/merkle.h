/* RFC 9162 (Certificate Transparency v2) Merkle tree hashing with SHA-256: leaf hash
 * SHA-256(0x00 || data), node hash SHA-256(0x01 || left || right), inclusion and consistency
 * proofs. Used by the agent (to build) and vmhost (to verify). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN  32
#define MERKLE_MAX_PROOF 64 /* log2 of any tree we can hold */

typedef uint8_t merkle_hash[MERKLE_HASH_LEN];

void merkle_leaf_hash(const uint8_t *data, size_t len, merkle_hash ret);
void merkle_node_hash(const merkle_hash left, const merkle_hash right, merkle_hash ret);
/* Root of the first n leaf hashes (MTH); the empty tree's root is SHA-256(""). */
void merkle_root(const merkle_hash *leaves, uint64_t n, merkle_hash ret);

/* Proofs are arrays of hashes; *ret_len is set to the number written (<= MERKLE_MAX_PROOF). */
int merkle_inclusion_proof(const merkle_hash *leaves, uint64_t n, uint64_t index,
                           merkle_hash *ret_proof, size_t *ret_len);
int merkle_consistency_proof(const merkle_hash *leaves, uint64_t n, uint64_t m,
                             merkle_hash *ret_proof, size_t *ret_len);

/* RFC 9162 section 2.1.3.2 / 2.1.4.2 verification. 0 when valid, -EBADMSG when not,
 * -EINVAL for impossible sizes (e.g. consistency from an empty tree). */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const merkle_hash leaf,
                            const merkle_hash *proof, size_t proof_len, const merkle_hash root);
int merkle_verify_consistency(uint64_t size1, uint64_t size2, const merkle_hash root1,
                              const merkle_hash root2, const merkle_hash *proof, size_t proof_len);

/* Wire-level verification for hashes that arrive with a length (decoded hex or base64 from a
 * peer). Every hash must be exactly MERKLE_HASH_LEN bytes or the proof is refused (-EBADMSG);
 * the one exception is consistency between equal sizes, which only compares the two roots. */
struct merkle_span {
        const uint8_t *data;
        size_t len;
};

int merkle_verify_inclusion_span(uint64_t index, uint64_t size, struct merkle_span leaf,
                                 const struct merkle_span *proof, size_t proof_len,
                                 struct merkle_span root);
int merkle_verify_consistency_span(uint64_t size1, uint64_t size2, struct merkle_span root1,
                                   struct merkle_span root2, const struct merkle_span *proof,
                                   size_t proof_len);

/* Incremental root over an append-only list of leaves: O(log n) memory and work per append.
 * full[i] holds the root of a perfect subtree of 2^i leaves when bit i of count is set. */
struct merkle_frontier {
        uint64_t count;
        merkle_hash full[MERKLE_MAX_PROOF];
};

void merkle_frontier_init(struct merkle_frontier *f);
int merkle_frontier_append(struct merkle_frontier *f, const merkle_hash leaf);
void merkle_frontier_root(const struct merkle_frontier *f, merkle_hash ret);
