/* The node as a witness of fleetd's audit log (docs/contracts.md section 2, docs/vmhost.md):
 * POST /v1/audit-checkpoint brings fleetd's newest signed checkpoint with a consistency proof
 * from the one this node holds. vmhost checks the signature (fleetd's key from audit_key, or
 * the key of the first checkpoint it accepted, pinned), that the new tree extends the held one,
 * and only then replaces the held checkpoint (durably, state_dir/audit-witness.json). A signed
 * checkpoint that does not extend it (smaller, same size with another root, a proof that does
 * not verify) or one under another key is refused and kept as evidence in
 * state_dir/audit-evidence/; GET /v1/audit-checkpoint shows both, so that fleetctl audit verify
 * can hold the record against them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "common/small_file.h"
#include "common/tlog_checkpoint.h"
#include "vmhost/vmhost.h"

#define WITNESS_FILE      "audit-witness.json"
#define WITNESS_EVIDENCE  "audit-evidence"
#define WITNESS_KEEP_MAX  64 /* evidence files kept; later refusals are logged only */
#define WITNESS_SHOW_MAX  8  /* evidence shown by GET, newest first */
#define WITNESS_STATE_MAX (TLOG_NOTE_MAX * 2)

static pthread_mutex_t witness_lock = PTHREAD_MUTEX_INITIALIZER;

struct witness_held {
        bool have;
        struct tlog_key key;
        char vkey[TLOG_VKEY_MAX + 1];
        char note[TLOG_NOTE_MAX + 1];
        struct tlog_checkpoint cp;
        uint64_t received_ms;
        json_t *previous, *proof; /* the checkpoint held before, and the proof from it */
};

struct witness_push {
        struct tlog_key key;
        const char *vkey, *note;
        size_t note_len;
        struct tlog_checkpoint cp;
        uint64_t old_size;
        struct merkle_span proof[MERKLE_MAX_PROOF];
        uint8_t proof_raw[MERKLE_MAX_PROOF][MERKLE_HASH_LEN];
        size_t proof_len;
};

/* state_dir/NAME[/FILE] (malloc'd; NULL without memory): paths stay out of the frames. */
static char *witness_path(const struct vmhost *vh, const char *name, const char *file)
{
        char *p = NULL;

        if (asprintf(&p, "%s/%s%s%s", vh->cfg.state_dir, name, file ? "/" : "", file ?: "") < 0)
                return NULL;
        return p;
}

static char *witness_read(const char *path, size_t max, size_t *ret_len)
{
        char *text = NULL;

        return small_file_read(path, max, false, &text, ret_len) == 0 ? text : NULL;
}

static int witness_write(const char *path, const char *text)
{
        return small_file_write(path, text, strlen(text), 0600);
}

/* The held checkpoint; a file that does not verify under its own key counts as none held and
 * is logged (it cannot be trusted, and refusing every push would blind the witness). */
static void witness_load(const struct vmhost *vh, struct witness_held *h)
{
        char *path = witness_path(vh, WITNESS_FILE, NULL);
        size_t len = 0;
        char *text;
        json_t *o;
        const char *vkey, *note;

        memset(h, 0, sizeof(*h));
        text = path ? witness_read(path, WITNESS_STATE_MAX, &len) : NULL;
        if (!text) {
                free(path);
                return;
        }
        o = json_loadb(text, len, 0, NULL);
        free(text);
        vkey = json_string_value(json_object_get(o, "key"));
        note = json_string_value(json_object_get(o, "checkpoint"));
        if (vkey && note && strlen(vkey) <= TLOG_VKEY_MAX && strlen(note) <= TLOG_NOTE_MAX &&
            tlog_vkey_parse(vkey, &h->key) == 0 &&
            tlog_checkpoint_open(note, strlen(note), &h->key, &h->cp) == 0) {
                h->have = true;
                snprintf(h->vkey, sizeof(h->vkey), "%s", vkey);
                snprintf(h->note, sizeof(h->note), "%s", note);
                h->received_ms = (uint64_t)json_integer_value(json_object_get(o, "received_ms"));
                h->previous = json_incref(json_object_get(o, "previous"));
                h->proof = json_incref(json_object_get(o, "proof"));
        } else
                log_error("'%s' does not hold a verifiable audit checkpoint; ignored", path);
        json_decref(o);
        free(path);
}

static void witness_held_done(struct witness_held *h)
{
        json_decref(h->previous);
        json_decref(h->proof);
        h->previous = h->proof = NULL;
}

/* The new checkpoint, with the one it replaces and the proof that links them. */
static int witness_store(const struct vmhost *vh, const struct witness_held *h,
                         const struct witness_push *w)
{
        char *path, *text;
        json_t *proof = json_array(), *o;
        int r;

        for (size_t i = 0; h->have && i < w->proof_len; i++) {
                char b64[48];

                sodium_bin2base64(b64, sizeof(b64), w->proof_raw[i], MERKLE_HASH_LEN,
                                  sodium_base64_VARIANT_ORIGINAL);
                json_array_append_new(proof, json_string(b64));
        }
        o = json_pack("{s:i, s:s, s:s, s:I, s:o, s:o}", "v", 1, "key", w->vkey, "checkpoint",
                      w->note, "received_ms", (json_int_t)clock_realtime_ms(), "previous",
                      h->have ? json_string(h->note) : json_null(), "proof", proof);

        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text)
                return -ENOMEM;
        path = witness_path(vh, WITNESS_FILE, NULL);
        r = path ? witness_write(path, text) : -ENOMEM;
        free(path);
        free(text);
        return r;
}

static unsigned witness_evidence_count(const struct vmhost *vh)
{
        char *path = witness_path(vh, WITNESS_EVIDENCE, NULL);
        struct dirent *e;
        unsigned n = 0;
        DIR *d;

        d = path ? opendir(path) : NULL;
        free(path);
        while (d && (e = readdir(d)))
                if (strstr(e->d_name, ".json") && !strstr(e->d_name, ".tmp"))
                        n++;
        if (d)
                closedir(d);
        return n;
}

/* Keeps a refused checkpoint, the held one and the body as sent. */
static void witness_keep(const struct vmhost *vh, const struct witness_held *h, const char *body,
                         size_t len, const char *reason)
{
        char *dir, *path, *text, file[64];
        unsigned n = witness_evidence_count(vh);
        uint64_t now = clock_realtime_ms();
        json_t *o;

        if (n >= WITNESS_KEEP_MAX) {
                log_error("audit checkpoint refused (%s) but not kept: %u pieces of evidence "
                          "are kept already",
                          reason, n);
                return;
        }
        dir = witness_path(vh, WITNESS_EVIDENCE, NULL);
        if (!dir || (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
                free(dir);
                return;
        }
        free(dir);
        snprintf(file, sizeof(file), "%013llu-%03u.json", (unsigned long long)now, n);
        path = witness_path(vh, WITNESS_EVIDENCE, file);
        o = json_pack("{s:i, s:s, s:I, s:s#, s:o}", "v", 1, "reason", reason, "received_ms",
                      (json_int_t)now, "body", body, (int)len, "held",
                      h->have ? json_string(h->note) : json_null());
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text || !path || witness_write(path, text) < 0)
                log_error("cannot keep the refused audit checkpoint in '%s'", path ?: file);
        free(text);
        free(path);
}

static int witness_parse_proof(json_t *arr, struct witness_push *w, struct json_input_error *e)
{
        json_t *it;
        size_t i, got;

        if (!json_is_array(arr) || json_array_size(arr) > MERKLE_MAX_PROOF)
                return json_input_fail(e, "'proof' must be an array of at most %d hashes",
                                       MERKLE_MAX_PROOF);
        json_array_foreach(arr, i, it)
        {
                const char *b = json_string_value(it);

                if (!b || strlen(b) != 44 ||
                    sodium_base642bin(w->proof_raw[i], MERKLE_HASH_LEN, b, 44, NULL, &got, NULL,
                                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
                    got != MERKLE_HASH_LEN)
                        return json_input_fail(e, "proof[%zu] is not a base64 SHA-256 hash", i);
                w->proof[i].data = w->proof_raw[i];
                w->proof[i].len = MERKLE_HASH_LEN;
        }
        w->proof_len = json_array_size(arr);
        return 0;
}

static int witness_parse(json_t *o, struct witness_push *w, struct json_input_error *e)
{
        static const char *const keys[] = {"v", "key", "checkpoint", "old_size", "proof", NULL};
        uint64_t v = 0;

        if (json_input_check_keys(o, keys, e) < 0 ||
            json_input_get_uint(o, "v", true, 1, 1, &v, e) < 0 ||
            json_input_get_string(o, "key", true, TLOG_VKEY_MAX, &w->vkey, e) < 0 ||
            json_input_get_string(o, "checkpoint", true, TLOG_NOTE_MAX, &w->note, e) < 0 ||
            json_input_get_uint(o, "old_size", true, 0, INT64_MAX, &w->old_size, e) < 0 ||
            witness_parse_proof(json_object_get(o, "proof"), w, e) < 0)
                return -EINVAL;
        w->note_len = strlen(w->note);
        if (tlog_vkey_parse(w->vkey, &w->key) < 0)
                return json_input_fail(e, "'key' is not a C2SP verifier key");
        return 0;
}

/* Does the pushed checkpoint extend the held one? NULL when it does, else why not. */
static const char *witness_inconsistent(const struct witness_held *h, const struct witness_push *w)
{
        struct merkle_span r1 = {h->cp.root, MERKLE_HASH_LEN}, r2 = {w->cp.root, MERKLE_HASH_LEN};

        if (w->cp.size < h->cp.size)
                return "smaller than the checkpoint held (rollback)";
        if (w->cp.size == h->cp.size)
                return sodium_memcmp(h->cp.root, w->cp.root, MERKLE_HASH_LEN) == 0
                           ? NULL
                           : "same size as the checkpoint held, another root (fork)";
        if (h->cp.size == 0)
                return NULL;
        return merkle_verify_consistency_span(h->cp.size, w->cp.size, r1, r2, w->proof,
                                              w->proof_len) == 0
                   ? NULL
                   : "the consistency proof from the checkpoint held does not verify (fork)";
}

/* The pushed key against the pinned one: audit_key when set, else the held checkpoint's. */
static bool witness_key_ok(const struct vmhost *vh, const struct witness_held *h,
                           const struct witness_push *w)
{
        struct tlog_key want;

        if (vh->cfg.audit_key[0])
                return tlog_vkey_parse(vh->cfg.audit_key, &want) == 0 &&
                       strcmp(want.name, w->key.name) == 0 &&
                       sodium_memcmp(want.pk, w->key.pk, TLOG_PUBLIC_KEY_LEN) == 0;
        return !h->have || (strcmp(h->key.name, w->key.name) == 0 &&
                            sodium_memcmp(h->key.pk, w->key.pk, TLOG_PUBLIC_KEY_LEN) == 0);
}

static int witness_decide_held(struct vmhost *vh, const struct witness_held *h,
                               struct witness_push *w, const char *body, size_t len,
                               struct vm_problem *p)
{
        const char *why;
        int r;

        r = tlog_checkpoint_open(w->note, w->note_len, &w->key, &w->cp);
        if (r < 0 || strcmp(w->cp.origin, w->key.name) != 0)
                return vms_problem(p, -EINVAL, "audit-bad-signature",
                                   "the checkpoint is not a C2SP checkpoint of origin '%s' "
                                   "signed by that key",
                                   w->key.name);
        if (!witness_key_ok(vh, h, w)) {
                witness_keep(vh, h, body, len, "signed by another key than fleetd's");
                return vms_problem(p, -EBUSY, "audit-key-mismatch",
                                   "the checkpoint is signed by '%s', not by the key this node "
                                   "witnesses ('%s'); kept as evidence",
                                   w->vkey, vh->cfg.audit_key[0] ? vh->cfg.audit_key : h->vkey);
        }
        if (h->have && w->cp.size > h->cp.size && w->old_size != h->cp.size)
                return vms_problem(p, -ESTALE, "audit-stale",
                                   "the proof starts at %llu entries; this node holds %llu",
                                   (unsigned long long)w->old_size, (unsigned long long)h->cp.size);
        why = h->have ? witness_inconsistent(h, w) : NULL;
        if (why) {
                witness_keep(vh, h, body, len, why);
                log_error("audit checkpoint of %llu entries refused and kept as evidence: %s "
                          "(this node holds %llu)",
                          (unsigned long long)w->cp.size, why, (unsigned long long)h->cp.size);
                return vms_problem(p, -EBUSY, "audit-inconsistent",
                                   "checkpoint of %llu entries refused: %s; this node holds %llu "
                                   "and keeps the refused one as evidence",
                                   (unsigned long long)w->cp.size, why,
                                   (unsigned long long)h->cp.size);
        }
        if (h->have && w->cp.size == h->cp.size)
                return 0; /* the same checkpoint (or a re-signature of the same tree) */
        r = witness_store(vh, h, w);
        if (r < 0)
                return vms_problem(p, -EIO, "storage", "cannot keep the checkpoint: %s",
                                   strerror(-r));
        return 0;
}

static int witness_decide(struct vmhost *vh, struct witness_push *w, const char *body, size_t len,
                          struct vm_problem *p)
{
        struct witness_held *h = malloc(sizeof(*h)); /* 8 KiB: not on the stack */
        int r;

        if (!h)
                return vms_problem(p, -ENOMEM, "internal", "out of memory");
        witness_load(vh, h);
        r = witness_decide_held(vh, h, w, body, len, p);
        witness_held_done(h);
        free(h);
        return r;
}

/* The newest pieces of evidence, newest first. */
static json_t *witness_evidence_json(const struct vmhost *vh)
{
        char *dir = witness_path(vh, WITNESS_EVIDENCE, NULL), *path;
        struct dirent **names = NULL;
        json_t *a = json_array();
        int n, shown = 0;

        n = dir ? scandir(dir, &names, NULL, alphasort) : -1;
        free(dir);
        for (int i = n - 1; i >= 0; i--) {
                size_t len = 0;
                char *text = NULL;
                json_t *o, *body;

                if (shown < WITNESS_SHOW_MAX && strstr(names[i]->d_name, ".json") &&
                    !strstr(names[i]->d_name, ".tmp")) {
                        path = witness_path(vh, WITNESS_EVIDENCE, names[i]->d_name);
                        text = path ? witness_read(path, 4 * WITNESS_STATE_MAX, &len) : NULL;
                        free(path);
                }
                o = text ? json_loadb(text, len, 0, NULL) : NULL;
                body = o ? json_loads(json_string_value(json_object_get(o, "body")) ?: "", 0, NULL)
                         : NULL;
                if (o) {
                        json_array_append_new(
                            a, json_pack("{s:O, s:O, s:O}", "reason", json_object_get(o, "reason"),
                                         "received_ms", json_object_get(o, "received_ms"),
                                         "checkpoint",
                                         json_object_get(body, "checkpoint") ?: json_null()));
                        shown++;
                }
                json_decref(body);
                json_decref(o);
                free(text);
                free(names[i]);
        }
        free(names);
        return a;
}

json_t *audit_witness_state(struct vmhost *vh)
{
        struct witness_held *h = malloc(sizeof(*h)); /* 8 KiB: not on the stack */
        json_t *o;

        if (!h)
                return NULL;
        pthread_mutex_lock(&witness_lock);
        witness_load(vh, h);
        o = json_pack("{s:i, s:s, s:o, s:o, s:o, s:o, s:O, s:O, s:i, s:o}", "v", 1, "node",
                      vh->cfg.node_id, "key", h->have ? json_string(h->vkey) : json_null(),
                      "checkpoint", h->have ? json_string(h->note) : json_null(), "size",
                      h->have ? json_integer((json_int_t)h->cp.size) : json_null(), "received_ms",
                      h->have ? json_integer((json_int_t)h->received_ms) : json_null(), "previous",
                      h->previous ? h->previous : json_null(), "proof",
                      h->proof ? h->proof : json_null(), "refused_total",
                      (int)witness_evidence_count(vh), "refused", witness_evidence_json(vh));
        witness_held_done(h);
        pthread_mutex_unlock(&witness_lock);
        free(h);
        return o;
}

int audit_witness_accept(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                         struct vm_problem *p)
{
        struct json_input_error e = {{0}};
        struct witness_push *w = calloc(1, sizeof(*w));
        json_t *o = json_input_parse(body, len, 4 * TLOG_NOTE_MAX, 4, &e);
        int r;

        if (!w || !o || witness_parse(o, w, &e) < 0) {
                r = vms_problem(p, -EINVAL, "bad-request", "audit checkpoint: %s",
                                w ? e.text : "out of memory");
        } else {
                pthread_mutex_lock(&witness_lock);
                r = witness_decide(vh, w, body, len, p);
                pthread_mutex_unlock(&witness_lock);
        }
        json_decref(o);
        free(w);
        if (r >= 0)
                *ret = audit_witness_state(vh);
        return r;
}
