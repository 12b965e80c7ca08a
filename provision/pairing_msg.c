/* Pairing messages: length-prefixed frames of compact JSON, decoded strictly (every type has a
 * fixed field set, unknown fields are refused, binary fields are base64 of an exact length).
 * Schema: schemas/pairing-message.schema.json. Fuzzed by tests/fuzz/fuzz_pairing_msg.c. */
#include "provision/pairing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const pair_type_names[] = {"hello", "share",        "confirm",     "sealed",
                                              "error", "join-request", "join-accept", "abort"};

static const struct {
        const char *name, *text;
} pair_errors[] = {
    [PAIR_ERR_NONE] = {"none", "no error"},
    [PAIR_ERR_EXPIRED] = {"expired", "the pairing code has expired"},
    [PAIR_ERR_USED] = {"used", "the pairing code was already used (every attempt burns it)"},
    [PAIR_ERR_BUSY] = {"busy", "another join is in progress; one join at a time"},
    [PAIR_ERR_WRONG_CODE] = {"wrong-code",
                             "wrong code: key confirmation failed (a mistyped code or a man "
                             "in the middle guessing it); the code is burned"},
    [PAIR_ERR_VERSION] = {"version", "the other side speaks another pairing protocol version"},
    [PAIR_ERR_SAS_NOT_CONFIRMED] = {"sas-not-confirmed",
                                    "the short authentication string was not confirmed"},
    [PAIR_ERR_SAS_MISMATCH] = {"sas-mismatch",
                               "the short authentication strings differ: possible man in the "
                               "middle"},
    [PAIR_ERR_NAME_TAKEN] = {"name-taken", "a node with that name is already in the roster"},
    [PAIR_ERR_PROTOCOL] = {"protocol", "protocol error"},
    [PAIR_ERR_INTERNAL] = {"internal", "internal error on the genesis node"},
};

const char *pair_error_name(enum pair_error e)
{
        return pair_errors[e].name;
}

const char *pair_error_text(enum pair_error e)
{
        return pair_errors[e].text;
}

int pair_error_parse(const char *s, enum pair_error *ret)
{
        for (size_t i = 1; i < sizeof(pair_errors) / sizeof(pair_errors[0]); i++) {
                if (strcmp(s, pair_errors[i].name) == 0) {
                        *ret = (enum pair_error)i;
                        return 0;
                }
        }
        return -EINVAL;
}

static int pair_get_b64(const json_t *o, const char *key, uint8_t *out, size_t min, size_t max,
                        size_t *ret_len, struct json_input_error *err)
{
        const char *s = NULL;
        size_t len = 0;
        int r = json_input_get_string(
            o, key, true, sodium_base64_ENCODED_LEN(max, sodium_base64_VARIANT_ORIGINAL), &s, err);

        if (r < 0)
                return r;
        if (sodium_base642bin(out, max, s, strlen(s), NULL, &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            len < min)
                return json_input_fail(err, "field '%s' is not base64 of %zu to %zu bytes", key,
                                       min, max);
        if (ret_len)
                *ret_len = len;
        return 0;
}

static int pair_decode_hello(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        static const char *const keys[] = {"v", "type", "proto", "id", "nonce", "commit", NULL};
        const char *proto = NULL;
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: json_input_get_string(o, "proto", true, 32, &proto, err);
        r = r ?: json_input_copy_string(o, "id", true, m->id, sizeof(m->id), err);
        r = r ?: pair_get_b64(o, "nonce", m->nonce, PAIR_NONCE_LEN, PAIR_NONCE_LEN, NULL, err);
        if (r == 0 && json_object_get(o, "commit")) {
                r = pair_get_b64(o, "commit", m->commit, PAIR_COMMIT_LEN, PAIR_COMMIT_LEN, NULL,
                                 err);
                m->has_commit = r == 0;
        }
        if (r < 0)
                return r;
        if (!ident_valid(IDENT_NODE, m->id))
                return json_input_fail(err, "field 'id' is not a valid node id");
        if (strcmp(proto, PAIR_PROTO) != 0) {
                json_input_fail(err, "protocol '%s' is not '%s'", proto, PAIR_PROTO);
                return -EPROTONOSUPPORT;
        }
        return 0;
}

/* role, wg_public_key and endpoint: what a share binds and a join-request repeats. */
static int pair_decode_binding(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        char role[8] = "";
        uint8_t key[WG_KEY_LEN];
        int r = 0;

        r = r ?: json_input_copy_string(o, "role", true, role, sizeof(role), err);
        r = r
                ?: json_input_copy_string(o, "wg_public_key", true, m->wg_public_key,
                                          sizeof(m->wg_public_key), err);
        r = r ?: json_input_copy_string(o, "endpoint", true, m->endpoint, sizeof(m->endpoint), err);
        if (r < 0)
                return r;
        if (roster_role_parse(role, &m->role) < 0)
                return json_input_fail(err, "unknown role '%s'", role);
        if (strlen(m->wg_public_key) != WG_KEY_B64_LEN ||
            wg_key_from_base64(key, m->wg_public_key) < 0)
                return json_input_fail(err, "field 'wg_public_key' is not a WireGuard key");
        if (m->endpoint[0] && !wg_endpoint_syntax_ok(m->endpoint))
                return json_input_fail(err, "field 'endpoint' is not IPV4:PORT, [IPV6]:PORT or "
                                            "HOSTNAME:PORT");
        return 0;
}

static int pair_decode_share(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        static const char *const keys[] = {"v",        "type", "point", "role", "wg_public_key",
                                           "endpoint", "tag",  NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: pair_get_b64(o, "point", m->point, CPACE_POINT_LEN, CPACE_POINT_LEN, NULL, err);
        r = r ?: pair_decode_binding(o, m, err);
        if (r == 0 && json_object_get(o, "tag")) {
                r = pair_get_b64(o, "tag", m->tag, CPACE_TAG_LEN, CPACE_TAG_LEN, NULL, err);
                m->has_tag = r == 0;
        }
        return r;
}

static int pair_decode_confirm(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        static const char *const keys[] = {"v", "type", "tag", NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: pair_get_b64(o, "tag", m->tag, CPACE_TAG_LEN, CPACE_TAG_LEN, NULL, err);
        m->has_tag = r == 0;
        return r;
}

static int pair_decode_sealed(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        static const char *const keys[] = {"v", "type", "seq", "box", NULL};
        const size_t max = PAIR_FRAME_MAX;
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: json_input_get_uint(o, "seq", true, 0, 1000, &m->seq, err);
        if (r < 0)
                return r;
        m->box = malloc(max);
        if (!m->box)
                return -ENOMEM;
        return pair_get_b64(o, "box", m->box, 17, max, &m->box_len, err);
}

static int pair_decode_error(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        static const char *const keys[] = {"v", "type", "code", "detail", NULL};
        const char *code = NULL;
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: json_input_get_string(o, "code", true, 32, &code, err);
        r = r ?: json_input_copy_string(o, "detail", false, m->detail, sizeof(m->detail), err);
        if (r == 0 && pair_error_parse(code, &m->error) < 0)
                return json_input_fail(err, "unknown error code '%s'", code);
        return r;
}

static int pair_decode_join_request(const json_t *o, struct pair_msg *m,
                                    struct json_input_error *err)
{
        static const char *const keys[] = {"v",        "type", "name", "role", "wg_public_key",
                                           "endpoint", NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: json_input_copy_string(o, "name", true, m->name, sizeof(m->name), err);
        r = r ?: pair_decode_binding(o, m, err);
        if (r == 0 && !ident_valid(IDENT_NODE, m->name))
                return json_input_fail(err, "field 'name' is not a valid node id");
        return r;
}

static int pair_decode_join_accept(const json_t *o, struct pair_msg *m,
                                   struct json_input_error *err)
{
        static const char *const keys[] = {
            "v", "type", "node_id", "mesh_address", "genesis_public_key", "roster", NULL};
        int r = 0;

        r = r ?: json_input_check_keys(o, keys, err);
        r = r ?: json_input_copy_string(o, "node_id", true, m->node_id, sizeof(m->node_id), err);
        r = r
                ?: json_input_copy_string(o, "mesh_address", true, m->mesh_address,
                                          sizeof(m->mesh_address), err);
        r = r
                ?: json_input_copy_string(o, "genesis_public_key", true, m->genesis_public_key,
                                          sizeof(m->genesis_public_key), err);
        if (r < 0)
                return r;
        if (!json_is_object(json_object_get(o, "roster")))
                return json_input_fail(err, "field 'roster' must be an object");
        m->roster = json_incref(json_object_get(o, "roster"));
        return 0;
}

static int pair_decode_abort(const json_t *o, struct pair_msg *m, struct json_input_error *err)
{
        return pair_decode_error(o, m, err);
}

static int (*const pair_decoders[])(const json_t *, struct pair_msg *,
                                    struct json_input_error *) = {
    pair_decode_hello, pair_decode_share,        pair_decode_confirm,     pair_decode_sealed,
    pair_decode_error, pair_decode_join_request, pair_decode_join_accept, pair_decode_abort,
};

int pair_msg_decode(const char *buf, size_t len, struct pair_msg *ret, struct json_input_error *err)
{
        const char *type = NULL;
        uint64_t v = 0;
        json_t *o;
        int r = 0;

        memset(ret, 0, sizeof(*ret));
        o = json_input_parse(buf, len, PAIR_FRAME_MAX, PAIR_JSON_DEPTH, err);
        if (!o)
                return -EINVAL;
        if (!json_is_object(o)) {
                r = json_input_fail(err, "a message must be a JSON object");
                goto cleanup;
        }
        r = r ?: json_input_get_uint(o, "v", true, 1, UINT32_MAX, &v, err);
        if (r == 0 && v != PAIR_VERSION) {
                json_input_fail(err,
                                "pairing protocol version %llu is not supported: this side "
                                "speaks version %d (%s)",
                                (unsigned long long)v, PAIR_VERSION, PAIR_PROTO);
                r = -EPROTONOSUPPORT;
                goto cleanup;
        }
        r = r ?: json_input_get_string(o, "type", true, 32, &type, err);
        if (r < 0)
                goto cleanup;
        r = json_input_fail(err, "unknown message type '%s'", type);
        for (size_t i = 0; i < sizeof(pair_type_names) / sizeof(pair_type_names[0]); i++) {
                if (strcmp(type, pair_type_names[i]) == 0) {
                        ret->type = (enum pair_msg_type)i;
                        err->text[0] = '\0';
                        r = pair_decoders[i](o, ret, err);
                        break;
                }
        }
cleanup:
        json_decref(o);
        if (r < 0)
                pair_msg_clear(ret);
        ret->v = (unsigned)v; /* kept on failure: a refusal is answered in the peer's version */
        return r;
}

void pair_msg_clear(struct pair_msg *m)
{
        if (!m)
                return;
        if (m->box) {
                sodium_memzero(m->box, m->box_len);
                free(m->box);
        }
        json_decref(m->roster);
        memset(m, 0, sizeof(*m));
}

static json_t *pair_b64(const uint8_t *d, size_t len)
{
        size_t size = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
        char *s = malloc(size);
        json_t *j;

        if (!s)
                return NULL;
        sodium_bin2base64(s, size, d, len, sodium_base64_VARIANT_ORIGINAL);
        j = json_string(s);
        free(s);
        return j;
}

static json_t *pair_binding_pack(json_t *o, const struct pair_msg *m)
{
        if (o && json_object_set_new(o, "role", json_string(roster_role_name(m->role))) == 0 &&
            json_object_set_new(o, "wg_public_key", json_string(m->wg_public_key)) == 0 &&
            json_object_set_new(o, "endpoint", json_string(m->endpoint)) == 0)
                return o;
        json_decref(o);
        return NULL;
}

static json_t *pair_msg_fields(const struct pair_msg *m)
{
        switch (m->type) {
        case PAIR_MSG_HELLO:
                if (m->has_commit)
                        return json_pack("{s:s, s:s, s:o, s:o}", "proto", PAIR_PROTO, "id", m->id,
                                         "nonce", pair_b64(m->nonce, PAIR_NONCE_LEN), "commit",
                                         pair_b64(m->commit, PAIR_COMMIT_LEN));
                return json_pack("{s:s, s:s, s:o}", "proto", PAIR_PROTO, "id", m->id, "nonce",
                                 pair_b64(m->nonce, PAIR_NONCE_LEN));
        case PAIR_MSG_SHARE:
                if (m->has_tag)
                        return pair_binding_pack(json_pack("{s:o, s:o}", "point",
                                                           pair_b64(m->point, CPACE_POINT_LEN),
                                                           "tag", pair_b64(m->tag, CPACE_TAG_LEN)),
                                                 m);
                return pair_binding_pack(
                    json_pack("{s:o}", "point", pair_b64(m->point, CPACE_POINT_LEN)), m);
        case PAIR_MSG_CONFIRM:
                return json_pack("{s:o}", "tag", pair_b64(m->tag, CPACE_TAG_LEN));
        case PAIR_MSG_SEALED:
                return json_pack("{s:I, s:o}", "seq", (json_int_t)m->seq, "box",
                                 pair_b64(m->box, m->box_len));
        case PAIR_MSG_ERROR:
        case PAIR_MSG_ABORT:
                return json_pack("{s:s, s:s}", "code", pair_error_name(m->error), "detail",
                                 m->detail);
        case PAIR_MSG_JOIN_REQUEST:
                return pair_binding_pack(json_pack("{s:s}", "name", m->name), m);
        case PAIR_MSG_JOIN_ACCEPT:
                return json_pack("{s:s, s:s, s:s, s:O}", "node_id", m->node_id, "mesh_address",
                                 m->mesh_address, "genesis_public_key", m->genesis_public_key,
                                 "roster", m->roster);
        }
        return NULL;
}

/* Every frame carries its version; only a clear-text error may be framed in an older one (so
 * that a peer of that version can read the refusal). */
static json_t *pair_msg_object(const struct pair_msg *m)
{
        unsigned v = m->type == PAIR_MSG_ERROR && m->v ? m->v : PAIR_VERSION;
        json_t *o = pair_msg_fields(m);

        if (o && (json_object_set_new(o, "v", json_integer(v)) < 0 ||
                  json_object_set_new(o, "type", json_string(pair_type_names[m->type])) < 0)) {
                json_decref(o);
                return NULL;
        }
        return o;
}

char *pair_msg_encode(const struct pair_msg *m)
{
        json_t *o = pair_msg_object(m);
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

        json_decref(o);
        return s;
}

int64_t pair_clock_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pair_remaining_ms(int64_t deadline_ms)
{
        int64_t left = deadline_ms - pair_clock_ms();

        return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static int pair_wait(int fd, short events, int64_t deadline_ms)
{
        struct pollfd p = {.fd = fd, .events = events};
        int n;

        do {
                n = poll(&p, 1, pair_remaining_ms(deadline_ms));
        } while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return n == 0 ? -ETIMEDOUT : 0;
}

static int pair_write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* The deadline holds for the whole read: a peer trickling one byte at a time gains nothing. */
static int pair_read_all(int fd, void *buf, size_t len, int64_t deadline_ms)
{
        char *p = buf;
        int r;

        while (len > 0) {
                ssize_t n;

                r = pair_wait(fd, POLLIN, deadline_ms);
                if (r < 0)
                        return r;
                n = read(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int pair_frame_write(int fd, const char *buf, size_t len)
{
        uint32_t be = htonl((uint32_t)len);
        int r;

        if (len == 0 || len > PAIR_FRAME_MAX)
                return -EMSGSIZE;
        r = pair_write_all(fd, &be, sizeof(be));
        return r < 0 ? r : pair_write_all(fd, buf, len);
}

int pair_frame_read(int fd, int64_t deadline_ms, char **ret_buf, size_t *ret_len,
                    uint8_t ret_head[4])
{
        uint32_t be;
        size_t len;
        char *buf;
        int r = pair_read_all(fd, &be, sizeof(be), deadline_ms);

        if (r < 0)
                return r;
        len = ntohl(be);
        if (len == 0 || len > PAIR_FRAME_MAX) {
                *ret_len = len;
                memcpy(ret_head, &be, sizeof(be));
                return -EPROTO;
        }
        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        r = pair_read_all(fd, buf, len, deadline_ms);
        if (r < 0) {
                free(buf);
                return r;
        }
        buf[len] = '\0';
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}
