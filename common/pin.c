/* The pin codec and its verification (see pin.h). Every field is bounded and checked with the
 * same rules as where it comes from (node ids, VM ids, base64 keys); a pin that does not parse
 * is treated by the verifier like a missing one: the domain does not start. */
#include "common/pin.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_input.h"

static const char *const pin_verdict_names[PIN_VERDICT_MAX] = {
    [PIN_OK] = "ok",
    [PIN_NO_KEY] = "no-controller-key",
    [PIN_MISSING] = "missing",
    [PIN_UNSIGNED] = "unsigned",
    [PIN_BAD_SIGNATURE] = "bad-signature",
    [PIN_OTHER_FLEET] = "other-fleet",
    [PIN_OTHER_VM] = "other-vm",
    [PIN_OTHER_NODE] = "other-node",
    [PIN_OTHER_WG_KEY] = "other-wireguard-key",
    [PIN_OTHER_ENTITY] = "other-entity",
    [PIN_OTHER_IMAGE] = "other-image",
};

const char *pin_verdict_name(enum pin_verdict v)
{
        return v < PIN_VERDICT_MAX ? pin_verdict_names[v] : "unknown";
}

static bool pin_key_b64_valid(const char *s)
{
        uint8_t k[32];
        size_t n = 0;

        return strlen(s) == WG_KEY_B64_LEN &&
               sodium_base642bin(k, sizeof(k), s, strlen(s), NULL, &n, NULL,
                                 sodium_base64_VARIANT_ORIGINAL) == 0 &&
               n == sizeof(k);
}

static int pin_parse_signature(const json_t *o, struct pin *p, struct json_input_error *e)
{
        const char *sig = NULL;
        size_t n = 0;
        int r = json_input_get_string(o, "signature", false, 88, &sig, e);

        if (r < 0 || !sig)
                return r;
        if (sodium_base642bin(p->signature, sizeof(p->signature), sig, strlen(sig), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(p->signature))
                return json_input_fail(e,
                                       "pin field 'signature' is not a base64 Ed25519 signature");
        p->signed_ = true;
        return 0;
}

static int pin_parse_object(const json_t *o, struct pin *p, struct json_input_error *e)
{
        static const char *const fields[] = {"v",           "fleet_id", "vm_id", "node_id",
                                             "node_wg_key", "entity",   "image", "request_id",
                                             "signature",   NULL};
        uint64_t v;
        int r = 0;

        if (!json_is_object(o))
                return json_input_fail(e, "a pin must be a JSON object");
        r = r ?: json_input_check_keys(o, fields, e);
        r = r ?: json_input_get_uint(o, "v", true, 1, 1, &v, e);
        r = r ?: json_input_copy_string(o, "fleet_id", true, p->fleet_id, sizeof(p->fleet_id), e);
        r = r ?: json_input_copy_string(o, "vm_id", true, p->vm_id, sizeof(p->vm_id), e);
        r = r ?: json_input_copy_string(o, "node_id", true, p->node_id, sizeof(p->node_id), e);
        r = r
                ?: json_input_copy_string(o, "node_wg_key", true, p->node_wg_key,
                                          sizeof(p->node_wg_key), e);
        r = r ?: json_input_copy_string(o, "entity", true, p->entity, sizeof(p->entity), e);
        r = r ?: json_input_copy_string(o, "image", true, p->image, sizeof(p->image), e);
        r = r
                ?: json_input_copy_string(o, "request_id", true, p->request_id,
                                          sizeof(p->request_id), e);
        r = r ?: pin_parse_signature(o, p, e);
        if (r < 0)
                return r;
        if (!ident_valid(IDENT_NODE, p->fleet_id) || !ident_valid(IDENT_NODE, p->node_id) ||
            !ident_valid(IDENT_VM, p->vm_id) || !ident_valid(IDENT_ENTITY, p->entity) ||
            !ident_valid(IDENT_IMAGE, p->image) || !ident_valid(IDENT_REQUEST, p->request_id))
                return json_input_fail(e, "pin fleet_id, node_id, vm_id, entity, image or "
                                          "request_id is not a valid id");
        if (!pin_key_b64_valid(p->node_wg_key))
                return json_input_fail(e, "pin node_wg_key '%.44s' is not a base64 32-byte key",
                                       p->node_wg_key);
        return 0;
}

int pin_from_json(const json_t *o, struct pin *ret, char *err, size_t errsize)
{
        struct json_input_error e = {{0}};
        struct pin p = {0};
        int r = pin_parse_object(o, &p, &e);

        if (r < 0) {
                if (err)
                        snprintf(err, errsize, "%s", e.text);
                return r;
        }
        *ret = p;
        return 0;
}

int pin_parse(const char *buf, size_t len, struct pin *ret, char *err, size_t errsize)
{
        struct json_input_error e = {{0}};
        json_t *o = json_input_parse(buf, len, PIN_MAX_BYTES, 1, &e);
        int r;

        if (!o) {
                if (err)
                        snprintf(err, errsize, "%s", e.text);
                return -EINVAL;
        }
        r = pin_from_json(o, ret, err, errsize);
        json_decref(o);
        return r;
}

static json_t *pin_to_json_unsigned(const struct pin *p)
{
        return json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "v", 1, "fleet_id",
                         p->fleet_id, "vm_id", p->vm_id, "node_id", p->node_id, "node_wg_key",
                         p->node_wg_key, "entity", p->entity, "image", p->image, "request_id",
                         p->request_id);
}

json_t *pin_to_json(const struct pin *p)
{
        char sig[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
        json_t *o = pin_to_json_unsigned(p);

        if (o && p->signed_) {
                sodium_bin2base64(sig, sizeof(sig), p->signature, sizeof(p->signature),
                                  sodium_base64_VARIANT_ORIGINAL);
                json_object_set_new(o, "signature", json_string(sig));
        }
        return o;
}

char *pin_format(const struct pin *p)
{
        json_t *o = pin_to_json(p);
        char *s = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

        json_decref(o);
        return s;
}

char *pin_message(const struct pin *p, size_t *ret_len)
{
        json_t *o = pin_to_json_unsigned(p);
        char *c = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        char *msg = NULL;

        json_decref(o);
        if (c && asprintf(&msg, "%s%s", PIN_DOMAIN, c) < 0)
                msg = NULL;
        free(c);
        if (msg)
                *ret_len = strlen(msg);
        return msg;
}

int pin_sign(struct pin *p, const uint8_t sk[64])
{
        size_t len = 0;
        char *msg = pin_message(p, &len);

        if (!msg)
                return -ENOMEM;
        crypto_sign_detached(p->signature, NULL, (const uint8_t *)msg, len, sk);
        p->signed_ = true;
        free(msg);
        return 0;
}

static bool pin_differs(const char *want, const char *have)
{
        return want && strcmp(want, have) != 0;
}

enum pin_verdict pin_check(const struct pin *p, const uint8_t *pk, const struct pin_expect *e)
{
        size_t len = 0;
        char *msg;
        int bad;

        if (!pk)
                return PIN_NO_KEY;
        if (!p)
                return PIN_MISSING;
        if (!p->signed_)
                return PIN_UNSIGNED;
        msg = pin_message(p, &len);
        bad = !msg || crypto_sign_verify_detached(p->signature, (const uint8_t *)msg, len, pk) != 0;
        free(msg);
        if (bad)
                return PIN_BAD_SIGNATURE;
        if (pin_differs(e->fleet_id, p->fleet_id))
                return PIN_OTHER_FLEET;
        if (pin_differs(e->vm_id, p->vm_id))
                return PIN_OTHER_VM;
        if (pin_differs(e->node_id, p->node_id))
                return PIN_OTHER_NODE;
        if (pin_differs(e->node_wg_key, p->node_wg_key))
                return PIN_OTHER_WG_KEY;
        if (pin_differs(e->entity, p->entity))
                return PIN_OTHER_ENTITY;
        if (pin_differs(e->image, p->image))
                return PIN_OTHER_IMAGE;
        return PIN_OK;
}

int pin_roster_key(const struct roster *r, uint8_t ret_pk[32])
{
        uint8_t pk[32];
        size_t n = 0;

        if (!r || !r->controller_pin_key[0] ||
            sodium_base642bin(pk, sizeof(pk), r->controller_pin_key, strlen(r->controller_pin_key),
                              NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(pk))
                return -ENOKEY;
        memcpy(ret_pk, pk, sizeof(pk));
        return 0;
}
