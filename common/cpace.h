/* CPace (draft-irtf-cfrg-cpace-21), suite CPACE-RISTR255-SHA512, initiator-responder mode, with
 * the string utilities of the draft's appendix (LEB128 prepend_len, lv_cat, o_cat, transcripts)
 * and the optional explicit key confirmation. The application supplies PRS (the short code), CI
 * (both parties' roles and ids), sid (both sides' nonces) and AD (protocol version). K never
 * leaves this module; the ISK is handed to the caller, who must pass it through a KDF. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CPACE_POINT_LEN  32
#define CPACE_SCALAR_LEN 32
#define CPACE_ISK_LEN    64
#define CPACE_TAG_LEN    64
#define CPACE_AD_MAX     256 /* totebox-pair/2 binds ids, roles, WireGuard keys, endpoints */
#define CPACE_SID_MAX    64
#define CPACE_CI_MAX     256

enum cpace_role { CPACE_INITIATOR, CPACE_RESPONDER };

/* String utilities; each returns the output length or -ENOSPC when cap is too small. */
ssize_t cpace_prepend_len(uint8_t *out, size_t cap, const uint8_t *data, size_t len);
ssize_t cpace_lv_cat2(uint8_t *out, size_t cap, const uint8_t *a, size_t alen, const uint8_t *b,
                      size_t blen);
bool cpace_lexiographically_larger(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
ssize_t cpace_o_cat(uint8_t *out, size_t cap, const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen);
ssize_t cpace_transcript_ir(uint8_t *out, size_t cap, const uint8_t *ya, size_t ya_len,
                            const uint8_t *ada, size_t ada_len, const uint8_t *yb, size_t yb_len,
                            const uint8_t *adb, size_t adb_len);
ssize_t cpace_transcript_oc(uint8_t *out, size_t cap, const uint8_t *ya, size_t ya_len,
                            const uint8_t *ada, size_t ada_len, const uint8_t *yb, size_t yb_len,
                            const uint8_t *adb, size_t adb_len);
ssize_t cpace_generator_string(uint8_t *out, size_t cap, const uint8_t *prs, size_t prs_len,
                               const uint8_t *ci, size_t ci_len, const uint8_t *sid,
                               size_t sid_len);

/* g = element_derivation(SHA-512(generator_string)). */
int cpace_calculate_generator(uint8_t g[CPACE_POINT_LEN], const uint8_t *prs, size_t prs_len,
                              const uint8_t *ci, size_t ci_len, const uint8_t *sid, size_t sid_len);
/* A scalar with the bits above 252 cleared, from the CSPRNG. */
void cpace_sample_scalar(uint8_t y[CPACE_SCALAR_LEN]);
/* encode(y * decode(x)); on an undecodable point or an identity result writes G.I (32 zero
 * bytes) and returns -EINVAL: the protocol must then abort. */
int cpace_scalar_mult_vfy(uint8_t out[CPACE_POINT_LEN], const uint8_t y[CPACE_SCALAR_LEN],
                          const uint8_t x[CPACE_POINT_LEN]);

/* One party's state. Wiped by cpace_wipe(). */
struct cpace_ctx {
        enum cpace_role role;
        uint8_t y[CPACE_SCALAR_LEN];
        uint8_t own_point[CPACE_POINT_LEN];
        uint8_t own_ad[CPACE_AD_MAX];
        size_t own_ad_len;
        uint8_t sid[CPACE_SID_MAX];
        size_t sid_len;
        bool started;
};

/* Computes this party's share. scalar may be NULL (sampled) or fixed (test vectors). */
int cpace_start(struct cpace_ctx *c, enum cpace_role role, const uint8_t *prs, size_t prs_len,
                const uint8_t *ci, size_t ci_len, const uint8_t *sid, size_t sid_len,
                const uint8_t *ad, size_t ad_len, const uint8_t *scalar,
                uint8_t ret_point[CPACE_POINT_LEN]);
/* From the peer's share and AD: the ISK (transcript_ir, initiator first). -EINVAL on an invalid
 * or identity point, or when the peer reflected our own share. */
int cpace_finish(struct cpace_ctx *c, const uint8_t peer_point[CPACE_POINT_LEN],
                 const uint8_t *peer_ad, size_t peer_ad_len, uint8_t ret_isk[CPACE_ISK_LEN]);
/* ISK = SHA-512(lv_cat(DSI||"_ISK", sid, K) || transcript); transcript_ir or _oc. */
int cpace_isk(uint8_t isk[CPACE_ISK_LEN], bool ordered, const uint8_t *sid, size_t sid_len,
              const uint8_t k[CPACE_POINT_LEN], const uint8_t *ya, const uint8_t *ada,
              size_t ada_len, const uint8_t *yb, const uint8_t *adb, size_t adb_len);
/* SHA-512("CPaceSidOutput" || transcript). */
int cpace_sid_output(uint8_t out[64], bool ordered, const uint8_t *ya, const uint8_t *ada,
                     size_t ada_len, const uint8_t *yb, const uint8_t *adb, size_t adb_len);
/* Explicit key confirmation: mac_key = SHA-512("CPaceMac" || sid || ISK),
 * tag = HMAC-SHA-512(mac_key, lv_cat(Y, AD)). */
void cpace_confirmation_tag(uint8_t tag[CPACE_TAG_LEN], const uint8_t *sid, size_t sid_len,
                            const uint8_t isk[CPACE_ISK_LEN], const uint8_t y[CPACE_POINT_LEN],
                            const uint8_t *ad, size_t ad_len);
/* Constant time; 0 when equal. */
int cpace_tag_verify(const uint8_t a[CPACE_TAG_LEN], const uint8_t b[CPACE_TAG_LEN]);
void cpace_wipe(struct cpace_ctx *c);
