/* fleetctl deposit / records / read: the Diode from the operator's side. A deposit streams the
 * file (its BLAKE2b-256 computed first and sent along, so any change on the way is refused) and
 * prints the receipt only after checking it: the ledger line is the file's (size, hash), the
 * inclusion proof leads to the signed tree head, the head is signed by the vault key. A read is
 * written to FILE.part and renamed to FILE only when the same checks pass on the bytes that came
 * back; a tampered record or answer is refused with the reason and nothing is written. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/diode_frame.h"
#include "common/diode_record.h"
#include "common/http_body.h"
#include "fleetctl/fleetctl.h"
#include "fleetd/fleetd.h"

struct ctl_xfer {
        FILE *out; /* a read's bytes (when the answer is 200) */
        crypto_generichash_state hs;
        uint64_t bytes;
        struct http_body json; /* any other answer, bounded */
        char *record;          /* the Totebox-Record header */
        long status;
        CURL *e;
};

static size_t ctl_xfer_header(char *data, size_t size, size_t n, void *arg)
{
        struct ctl_xfer *x = arg;
        size_t len = size * n;

        if (!x->record)
                x->record = diode_record_header(data, len);
        return len;
}

static size_t ctl_xfer_write(char *data, size_t size, size_t n, void *arg)
{
        struct ctl_xfer *x = arg;
        size_t len = size * n, k = len;

        if (!x->status)
                curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &x->status);
        if (x->out && x->status == 200) {
                crypto_generichash_update(&x->hs, (const uint8_t *)data, len);
                x->bytes += len;
                return fwrite(data, 1, len, x->out) == len ? len : 0;
        }
        http_body_feed(&x->json, data, &k, 1u << 20);
        return x->json.too_large ? 0 : len;
}

/* One call; in (may be NULL) is the body, of in_len bytes. -1 when fleetd did not answer. */
static long ctl_xfer(struct ctl *c, const char *method, const char *path, FILE *in, uint64_t in_len,
                     struct ctl_xfer *x)
{
        struct curl_slist *h = NULL;
        CURLcode rc;

        x->e = curl_easy_init();
        crypto_generichash_init(&x->hs, NULL, 0, 32);
        rc = ctl_curl_target(c, x->e, path, &h);
        h = curl_slist_append(h, "Expect:");
        if (in)
                h = curl_slist_append(h, "Content-Type: application/octet-stream");
        curl_easy_setopt(x->e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(x->e, CURLOPT_HEADERFUNCTION, ctl_xfer_header);
        curl_easy_setopt(x->e, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, ctl_xfer_write);
        curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
        if (in) {
                curl_easy_setopt(x->e, CURLOPT_POST, 1L);
                curl_easy_setopt(x->e, CURLOPT_READDATA, in);
                curl_easy_setopt(x->e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)in_len);
        } else
                curl_easy_setopt(x->e, CURLOPT_CUSTOMREQUEST, method);
        rc = rc ?: curl_easy_perform(x->e);
        if (rc == CURLE_OK)
                curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &x->status);
        else
                fprintf(stderr, "fleetctl: cannot reach fleetd at '%s': %s\n", c->url,
                        curl_easy_strerror(rc));
        curl_slist_free_all(h);
        curl_easy_cleanup(x->e);
        return rc == CURLE_OK ? x->status : -1;
}

static void ctl_xfer_done(struct ctl_xfer *x)
{
        http_body_done(&x->json);
        free(x->record);
}

static int ctl_hash_file(FILE *f, uint8_t out[32], uint64_t *ret_size)
{
        static uint8_t buf[1 << 16];
        crypto_generichash_state st;
        uint64_t n = 0;
        size_t k;

        crypto_generichash_init(&st, NULL, 0, 32);
        while ((k = fread(buf, 1, sizeof(buf), f)) > 0) {
                crypto_generichash_update(&st, buf, k);
                n += k;
        }
        crypto_generichash_final(&st, out, 32);
        *ret_size = n;
        return ferror(f) ? -EIO : 0;
}

/* The key answers are held against: --vault-key, else the one the answer names (which vmhost
 * checked against the key it pinned at the VM's first report). */
static const char *ctl_vault_key(struct ctl *c, json_t *rec)
{
        return c->vault_key ? c->vault_key : json_string_value(json_object_get(rec, "public_key"));
}

static bool ctl_check(struct ctl *c, json_t *rec, uint64_t size, const uint8_t hash[32],
                      const char *what)
{
        char why[400];

        if (diode_record_check(rec, ctl_vault_key(c, rec), why, sizeof(why)) == 0 &&
            diode_record_check_content(rec, size, hash, why, sizeof(why)) == 0)
                return true;
        fprintf(stderr, "fleetctl: %s does not verify: %s\n", what, why);
        return false;
}

static void ctl_show_receipt(json_t *r)
{
        json_t *sth = json_object_get(r, "sth");

        printf("record %s sealed in VM '%s' as '%s'\n", ctl_str(r, "seq"), ctl_str(r, "vm"),
               ctl_str(r, "path"));
        printf("  size         %s bytes\n  blake2b-256  %s\n  supersedes   %s\n",
               ctl_str(r, "size"), ctl_str(r, "blake2b_256"), ctl_str(r, "supersedes"));
        printf("  tree head    size %s, root %s\n  proof        %zu hashes, verified\n",
               ctl_str(sth, "size"), ctl_str(sth, "root"),
               json_array_size(json_object_get(r, "proof")));
        printf("  deposit id   %s\n", ctl_str(r, "deposit_id"));
}

static char *ctl_escape(const char *s)
{
        return curl_easy_escape(NULL, s, 0);
}

/* The deposit's POST path (malloc'd; NULL without memory): the record's name is --name, else
 * the file's own. */
static char *ctl_deposit_path(const struct ctl *c, const char *did, const uint8_t hash[32])
{
        const char *base = strrchr(c->argv[1], '/') ? strrchr(c->argv[1], '/') + 1 : c->argv[1];
        char hex[65], *ename = ctl_escape(c->name ? c->name : base), *path = NULL;

        sodium_bin2hex(hex, sizeof(hex), hash, 32);
        if (asprintf(&path, "/v1/vms/%s/records?name=%s&deposit_id=%s&blake2b_256=%s%s%s",
                     c->argv[0], ename ? ename : "", did, hex, c->supersedes ? "&supersedes=" : "",
                     c->supersedes ? c->supersedes : "") < 0)
                path = NULL; /* asprintf leaves it undefined on failure */
        curl_free(ename);
        return path;
}

int ctl_cmd_deposit(struct ctl *c)
{
        char did[DIODE_ID_MAX + 1], *path;
        uint8_t hash[32], raw[12];
        struct ctl_xfer x = {0};
        uint64_t size = 0;
        json_t *a = NULL;
        FILE *f;
        long st;
        int r = 1;

        if (c->argc != 2 || !ident_valid(IDENT_VM, c->argv[0])) {
                fprintf(stderr, "fleetctl: deposit needs a VM id and a file\n");
                return 2;
        }
        f = fopen(c->argv[1], "rb");
        if (!f || ctl_hash_file(f, hash, &size) < 0) {
                fprintf(stderr, "fleetctl: cannot read '%s': %s\n", c->argv[1], strerror(errno));
                if (f)
                        fclose(f);
                return 1;
        }
        rewind(f);
        if (c->deposit_id)
                snprintf(did, sizeof(did), "%s", c->deposit_id);
        else {
                randombytes_buf(raw, sizeof(raw));
                memcpy(did, "c-", 3);
                sodium_bin2hex(did + 2, sizeof(did) - 2, raw, sizeof(raw));
        }
        /* printed first: after an interruption, the same command with --deposit-id resumes */
        fprintf(stderr, "fleetctl: deposit id '%s'\n", did);
        path = ctl_deposit_path(c, did, hash);
        if (!path) {
                fprintf(stderr, "fleetctl: out of memory\n");
                fclose(f);
                return 1;
        }
        st = ctl_xfer(c, "POST", path, f, size, &x);
        free(path);
        fclose(f);
        a = json_loads(http_body_text(&x.json), 0, NULL);
        if (st == 202) { /* the operation that forwards it: its result is the receipt */
                json_t *res = NULL;
                int k = ctl_operation_outcome(c, a, &res);

                json_decref(a);
                a = res;
                if (k >= 0) {
                        ctl_xfer_done(&x);
                        return k;
                }
                st = 201;
        }
        if (st < 0)
                r = 3;
        else if (st != 201)
                ctl_problem(c, st, a);
        else if (ctl_check(c, a, size, hash, "the receipt")) {
                r = 0;
                if (c->json)
                        ctl_print(c, a);
                else
                        ctl_show_receipt(a);
        }
        json_decref(a);
        ctl_xfer_done(&x);
        return r;
}

static const struct ctl_column ctl_record_columns[] = {
    {"seq", "SEQ", "seq", NULL, false},
    {"path", "PATH", "path", NULL, false},
    {"size", "SIZE", "size", NULL, false},
    {"blake2b_256", "BLAKE2B-256", "blake2b_256", NULL, false},
    {"time", "TIME", "time", NULL, false},
    {"supersedes", "SUPERSEDES", "supersedes", NULL, false},
    {"protect", "PROTECT", "protect", NULL, true},
    {NULL, NULL, NULL, NULL, false},
};

int ctl_cmd_records(struct ctl *c)
{
        static const struct ctl_view v = {"records", ctl_record_columns, NULL, NULL};
        char path[512];

        if (c->argc != 1 || !ident_valid(IDENT_VM, c->argv[0])) {
                fprintf(stderr, "fleetctl: records needs a VM id\n");
                return 2;
        }
        snprintf(path, sizeof(path), "/v1/vms/%s/records?after=%s&limit=%s", c->argv[0],
                 c->after ? c->after : "0", c->limit ? c->limit : "50");
        c->argc = 0; /* the id is in the path */
        return ctl_get(c, path, &v);
}

/* The Totebox-Record header: base64 of the record's entry, proof and head. */
static json_t *ctl_record_header(const char *b64)
{
        size_t n = 0, cap = b64 ? strlen(b64) : 0;
        char *raw = cap ? malloc(cap + 1) : NULL;
        json_t *o = NULL;

        if (raw && sodium_base642bin((uint8_t *)raw, cap, b64, cap, NULL, &n, NULL,
                                     sodium_base64_VARIANT_ORIGINAL) == 0)
                o = json_loadb(raw, n, JSON_REJECT_DUPLICATES, NULL);
        free(raw);
        return o;
}

int ctl_cmd_read(struct ctl *c)
{
        char path[512], *part = NULL, what[128];
        uint8_t hash[32];
        struct ctl_xfer x = {0};
        json_t *rec = NULL, *a = NULL;
        long st;
        int r = 1;

        if (c->argc != 2 || !ident_valid(IDENT_VM, c->argv[0]) || !c->output) {
                fprintf(stderr,
                        "fleetctl: read needs a VM id, a record number and --output FILE\n");
                return 2;
        }
        if (asprintf(&part, "%s.part", c->output) < 0) {
                fprintf(stderr, "fleetctl: out of memory\n");
                return 1;
        }
        x.out = fopen(part, "wbx");
        if (!x.out) {
                fprintf(stderr, "fleetctl: cannot create '%s': %s\n", part, strerror(errno));
                free(part);
                return 1;
        }
        snprintf(path, sizeof(path), "/v1/vms/%s/records/%s", c->argv[0], c->argv[1]);
        st = ctl_xfer(c, "GET", path, NULL, 0, &x);
        if (fflush(x.out) != 0 || fsync(fileno(x.out)) != 0)
                st = st < 0 ? st : 0;
        fclose(x.out);
        crypto_generichash_final(&x.hs, hash, sizeof(hash));
        snprintf(what, sizeof(what), "record %s of VM '%s'", c->argv[1], c->argv[0]);
        if (st < 0)
                r = 3;
        else if (st != 200) {
                a = json_loads(http_body_text(&x.json), 0, NULL);
                ctl_problem(c, st, a);
        } else if (!(rec = ctl_record_header(x.record)))
                fprintf(stderr, "fleetctl: %s came without its proof (Totebox-Record)\n", what);
        else if (ctl_check(c, rec, x.bytes, hash, what)) {
                if (rename(part, c->output) == 0)
                        r = 0;
                else
                        fprintf(stderr, "fleetctl: cannot rename '%s': %s\n", part,
                                strerror(errno));
        }
        if (r != 0)
                unlink(part); /* nothing unverified is left behind */
        else if (c->json)
                ctl_print(c, rec);
        else
                printf("record %s of VM '%s' verified (%s, %llu bytes, blake2b-256 %s) and "
                       "written to '%s'\n",
                       ctl_str(rec, "seq"), c->argv[0], ctl_str(rec, "path"),
                       (unsigned long long)x.bytes, ctl_str(rec, "blake2b_256"), c->output);
        json_decref(rec);
        json_decref(a);
        ctl_xfer_done(&x);
        free(part);
        return r;
}
