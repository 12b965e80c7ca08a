/* A Totebox as one file (docs/vmhost.md "Exports"): POST /v1/vms/{id}/export writes
 * state_dir/exports/{id}.tar, an uncompressed POSIX (ustar) archive whose members are, in name
 * order, `checkpoint` (the vault checkpoint fleetd witnessed last, with its cosignatures),
 * `manifest.json` (fleetd's record of the Totebox, the members' sizes and hashes) and
 * `vault.img` (the vault disk as stored, raw). Only a Totebox that is suspended or archived and
 * not running is exported; the node's verbs wait meanwhile (ops_lock), so it cannot start while
 * its disk is read. The archive is the same bytes for the same disk, manifest and checkpoint, so
 * an export cut short resumes: the partial file's bytes are compared with what they must be,
 * kept up to the first difference, and the rest is written. {id}.tar.sha256 (a `sha256sum`
 * line) is what the fleet signs: POST /v1/vms/{id}/export-signature checks the signature under
 * the roster's controller key before it writes {id}.tar.sig (64 raw bytes, Ed25519). Nothing here
 * reads the disk of a running VM, deletes a disk, or moves anything off the node. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json_input.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/small_file.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

#define EXPORT_BLOCK      512
#define EXPORT_BUF        (1u << 20)
#define EXPORT_NOTE_MAX   8192
#define EXPORT_MANIFEST   65536
#define EXPORT_BODY_DEPTH 6
#define EXPORT_PATH_MAX   4400 /* state_dir/exports/{id}.tar.sha256, as the job's paths */

/* The archive being written: the head (three headers and two small members) in memory, then the
 * disk, then padding and the two zero blocks. */
struct export_job {
        struct vmhost *vh;
        char vm_id[VM_ID_MAX + 1];
        char disk[4200], dir[4200], part[4300], final[4300], sums[4400]; /* sums: final.sha256 */
        int disk_fd, out_fd;
        uint64_t disk_size;
        uint64_t mtime_s; /* the disk's: the archive's bytes depend on nothing else that moves */
        uint8_t *head;
        size_t head_len;
        uint64_t total;   /* the archive's length */
        uint64_t pos;     /* bytes emitted */
        uint64_t keep;    /* bytes of the partial file still to compare */
        uint64_t resumed; /* bytes kept from a partial file */
        struct sha256 sha;
        crypto_generichash_state b2;
        uint8_t *buf, *cmp;
};

/* A NUL-terminated octal field of width bytes (values that fit: sizes < 8 GiB * 8^3). */
static void export_octal(char *field, size_t width, uint64_t v)
{
        char tmp[32];
        int n = snprintf(tmp, sizeof(tmp), "%0*" PRIo64, (int)width - 1, v);

        memcpy(field, tmp + (n > (int)width - 1 ? n - ((int)width - 1) : 0), width - 1);
        field[width - 1] = '\0';
}

/* One ustar header block for a regular file. */
static void export_header(uint8_t blk[EXPORT_BLOCK], const char *name, uint64_t size,
                          uint64_t mtime_s)
{
        unsigned sum = 0;

        memset(blk, 0, EXPORT_BLOCK);
        snprintf((char *)blk, 100, "%s", name);
        export_octal((char *)blk + 100, 8, 0444);
        export_octal((char *)blk + 108, 8, 0);
        export_octal((char *)blk + 116, 8, 0);
        export_octal((char *)blk + 124, 12, size);
        export_octal((char *)blk + 136, 12, mtime_s);
        memset(blk + 148, ' ', 8);
        blk[156] = '0';
        memcpy(blk + 257, "ustar", 6);
        memcpy(blk + 263, "00", 2);
        for (size_t i = 0; i < EXPORT_BLOCK; i++)
                sum += blk[i];
        snprintf((char *)blk + 148, 8, "%06o", sum);
}

static uint64_t export_pad(uint64_t n)
{
        return (EXPORT_BLOCK - n % EXPORT_BLOCK) % EXPORT_BLOCK;
}

/* SHA-256 and BLAKE2b-256 of the disk (the manifest names them), in hex. */
static int export_hash_disk(struct export_job *j, char sha_hex[65], char b2_hex[65])
{
        uint8_t sha[32], b2[32];
        struct sha256 s;
        crypto_generichash_state g;
        uint64_t done = 0;
        ssize_t n;

        sha256_init(&s);
        crypto_generichash_init(&g, NULL, 0, 32);
        while ((n = pread(j->disk_fd, j->buf, EXPORT_BUF, (off_t)done)) > 0) {
                sha256_update(&s, j->buf, (size_t)n);
                crypto_generichash_update(&g, j->buf, (size_t)n);
                done += (uint64_t)n;
                atomic_fetch_add(&j->vh->export_done, (uint64_t)n);
        }
        if (n < 0 || done != j->disk_size)
                return n < 0 ? -errno : -EIO;
        sha256_final(&s, sha);
        crypto_generichash_final(&g, b2, 32);
        sodium_bin2hex(sha_hex, 65, sha, 32);
        sodium_bin2hex(b2_hex, 65, b2, 32);
        return 0;
}

static json_t *export_member(const char *name, const void *data, size_t len, const char *sha_hex,
                             const char *b2_hex, uint64_t size)
{
        char s[65], b[65];
        uint8_t h[32];

        if (data) {
                sha256_digest(data, len, h);
                sodium_bin2hex(s, sizeof(s), h, 32);
                crypto_generichash(h, 32, data, len, NULL, 0);
                sodium_bin2hex(b, sizeof(b), h, 32);
                sha_hex = s;
                b2_hex = b;
                size = len;
        }
        return json_pack("{s:s, s:I, s:s, s:s}", "name", name, "size", (json_int_t)size, "sha256",
                         sha_hex, "blake2b_256", b2_hex);
}

/* Appends len bytes to the head (it was sized for all of it) and pads it to a block. */
static void export_head_put(struct export_job *j, const void *data, size_t len)
{
        size_t pad;

        memcpy(j->head + j->head_len, data, len);
        j->head_len += len;
        pad = (size_t)export_pad(j->head_len);
        memset(j->head + j->head_len, 0, pad);
        j->head_len += pad;
}

/* The head: manifest = fleetd's record + the export's own fields. */
static int export_build_head(struct export_job *j, json_t *record, const char *note,
                             uint64_t mtime_s)
{
        char sha_hex[65], b2_hex[65], *text;
        uint8_t blk[EXPORT_BLOCK];
        json_t *m;
        size_t nlen = strlen(note);
        int r = export_hash_disk(j, sha_hex, b2_hex);

        if (r < 0)
                return r;
        m = json_deep_copy(record);
        if (!m)
                return -ENOMEM;
        json_object_set_new(m, "format", json_string("totebox-export/1"));
        json_object_set_new(m, "vm_id", json_string(j->vm_id));
        json_object_set_new(m, "exported_by_node", json_string(j->vh->cfg.node_id));
        json_object_set_new(m, "vault_disk_mtime_s", json_integer((json_int_t)mtime_s));
        json_object_set_new(
            m, "members",
            json_pack("[o, o]", export_member("checkpoint", note, nlen, NULL, NULL, 0),
                      export_member("vault.img", NULL, 0, sha_hex, b2_hex, j->disk_size)));
        json_object_set_new(m, "vault_disk_format", json_string("raw"));
        text = json_dumps(m, JSON_SORT_KEYS | JSON_INDENT(2));
        json_decref(m);
        if (!text)
                return -ENOMEM;
        j->head = malloc(5 * EXPORT_BLOCK + nlen + strlen(text) + 2);
        if (!j->head) {
                free(text);
                return -ENOMEM;
        }
        export_header(blk, "checkpoint", nlen, mtime_s);
        export_head_put(j, blk, EXPORT_BLOCK);
        export_head_put(j, note, nlen);
        export_header(blk, "manifest.json", strlen(text) + 1, mtime_s);
        export_head_put(j, blk, EXPORT_BLOCK);
        memcpy(j->head + j->head_len, text, strlen(text));
        j->head_len += strlen(text);
        export_head_put(j, "\n", 1);
        free(text);
        export_header(blk, "vault.img", j->disk_size, mtime_s);
        export_head_put(j, blk, EXPORT_BLOCK);
        j->total = j->head_len + j->disk_size + export_pad(j->disk_size) + 2 * EXPORT_BLOCK;
        return 0;
}

/* Emits len bytes of the archive at j->pos: the first `keep` bytes are compared with what the
 * partial file holds (kept when equal, the file cut at the first difference), the rest written. */
static int export_emit(struct export_job *j, const uint8_t *data, size_t len)
{
        while (len > 0 && j->pos < j->keep) {
                size_t n = len < EXPORT_BUF ? len : EXPORT_BUF;
                ssize_t got;

                if (n > j->keep - j->pos)
                        n = (size_t)(j->keep - j->pos);
                got = pread(j->out_fd, j->cmp, n, (off_t)j->pos);
                if (got != (ssize_t)n || memcmp(j->cmp, data, n) != 0) {
                        j->keep = j->pos; /* differs from here: rewritten */
                        if (ftruncate(j->out_fd, (off_t)j->pos) < 0)
                                return -errno;
                        break;
                }
                sha256_update(&j->sha, data, n);
                crypto_generichash_update(&j->b2, data, n);
                j->pos += n;
                j->resumed = j->pos;
                data += n;
                len -= n;
        }
        if (len == 0)
                return 0;
        if (pwrite(j->out_fd, data, len, (off_t)j->pos) != (ssize_t)len)
                return errno ? -errno : -ENOSPC;
        sha256_update(&j->sha, data, len);
        crypto_generichash_update(&j->b2, data, len);
        j->pos += len;
        return 0;
}

static int export_stream(struct export_job *j)
{
        uint64_t done = 0;
        ssize_t n;
        int r = export_emit(j, j->head, j->head_len);

        while (r == 0 && done < j->disk_size) {
                n = pread(j->disk_fd, j->buf, EXPORT_BUF, (off_t)done);
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                r = export_emit(j, j->buf, (size_t)n);
                done += (uint64_t)n;
                atomic_fetch_add(&j->vh->export_done, (uint64_t)n);
        }
        memset(j->buf, 0, export_pad(j->disk_size) + 2 * EXPORT_BLOCK);
        r = r ?: export_emit(j, j->buf, export_pad(j->disk_size) + 2 * EXPORT_BLOCK);
        return r ?: fsync(j->out_fd) < 0 ? -errno : 0;
}

/* The VM must be a Totebox of this node that is suspended or archived and not running. */
static int export_check_vm(struct vmhost *vh, const char *id, struct vm_problem *p)
{
        json_t *vm = ident_valid(IDENT_VM, id) ? inventory_get(vh, id) : NULL;
        const char *state = json_string_value(json_object_get(vm, "state"));
        const char *lc = json_string_value(json_object_get(vm, "lifecycle"));
        int r = 0;

        if (!vm)
                r = vms_problem(p, -ENOENT, "not-found", "no Totebox VM '%s' on node '%s'", id,
                                vh->cfg.node_id);
        else if (!lc || (strcmp(lc, "suspended") != 0 && strcmp(lc, "archived") != 0) || !state ||
                 (strcmp(state, "shutoff") != 0 && strcmp(state, "saved") != 0))
                r = vms_problem(p, -EBUSY, "vm-not-stopped",
                                "VM '%s' is '%s' and '%s': only a suspended or archived Totebox "
                                "that is not running is exported",
                                id, lc ? lc : "?", state ? state : "?");
        json_decref(vm);
        return r;
}

static int export_open(struct export_job *j, struct vm_problem *p)
{
        struct stat st;

        snprintf(j->disk, sizeof(j->disk), "%s/vms/%s-vault.img", j->vh->cfg.state_dir, j->vm_id);
        snprintf(j->dir, sizeof(j->dir), "%s/exports", j->vh->cfg.state_dir);
        snprintf(j->part, sizeof(j->part), "%s/%s.tar.part", j->dir, j->vm_id);
        snprintf(j->final, sizeof(j->final), "%s/%s.tar", j->dir, j->vm_id);
        /* vms/ is the helper's: it opens the disk and passes the descriptor up */
        if (vmh_file(j->vh, VMH_FILE_VAULT, j->vm_id, false, &j->disk_fd) < 0)
                j->disk_fd = -1;
        if (j->disk_fd < 0 || fstat(j->disk_fd, &st) < 0 || !S_ISREG(st.st_mode))
                return vms_problem(p, -EIO, "no-vault-disk", "the vault disk '%s' cannot be read",
                                   j->disk);
        j->disk_size = (uint64_t)st.st_size;
        j->mtime_s = (uint64_t)st.st_mtime;
        if (mkdir(j->dir, 0750) < 0 && errno != EEXIST)
                return vms_problem(p, -EIO, "export-failed", "cannot make '%s': %s", j->dir,
                                   strerror(errno));
        /* a finished export of the same bytes is re-checked as a partial one, then kept */
        if (access(j->final, F_OK) == 0 && rename(j->final, j->part) < 0)
                return vms_problem(p, -EIO, "export-failed", "cannot reopen '%s'", j->final);
        j->out_fd = open(j->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (j->out_fd < 0 || fstat(j->out_fd, &st) < 0)
                return vms_problem(p, -EIO, "export-failed", "cannot open '%s': %s", j->part,
                                   strerror(errno));
        j->keep = (uint64_t)st.st_size;
        j->buf = malloc(EXPORT_BUF);
        j->cmp = malloc(EXPORT_BUF);
        return j->buf && j->cmp ? 0 : vms_problem(p, -EAGAIN, "out-of-memory", "no buffer");
}

static void export_close(struct export_job *j)
{
        if (j->disk_fd >= 0)
                close(j->disk_fd);
        if (j->out_fd >= 0)
                close(j->out_fd);
        free(j->head);
        free(j->buf);
        free(j->cmp);
}

/* {id}.tar.sha256 and the answer. */
static int export_finish(struct export_job *j, json_t **ret, struct vm_problem *p)
{
        char sha_hex[65], b2_hex[65], line[200];
        uint8_t h[32];
        int n;

        if (j->keep > j->total && ftruncate(j->out_fd, (off_t)j->total) < 0)
                return vms_problem(p, -EIO, "export-failed", "cannot cut '%s'", j->part);
        sha256_final(&j->sha, h);
        sodium_bin2hex(sha_hex, sizeof(sha_hex), h, 32);
        crypto_generichash_final(&j->b2, h, 32);
        sodium_bin2hex(b2_hex, sizeof(b2_hex), h, 32);
        if (rename(j->part, j->final) < 0)
                return vms_problem(p, -EIO, "export-failed", "cannot rename '%s'", j->part);
        n = snprintf(line, sizeof(line), "%s  %s.tar\n", sha_hex, j->vm_id);
        snprintf(j->sums, sizeof(j->sums), "%s.sha256", j->final);
        if (small_file_write(j->sums, line, (size_t)n, 0640) < 0)
                return vms_problem(p, -EIO, "export-failed", "cannot write '%s'", j->sums);
        *ret = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I}", "vm_id", j->vm_id, "file", j->final,
                         "sha256_file", j->sums, "size", (json_int_t)j->total, "sha256", sha_hex,
                         "blake2b_256", b2_hex, "resumed_bytes", (json_int_t)j->resumed);
        return *ret ? 0 : vms_problem(p, -EAGAIN, "out-of-memory", "no answer");
}

/* The export of j's VM is shown as running (disk known) or as ended (vm NULL). */
static void export_show(struct export_job *j, const char *vm)
{
        pthread_mutex_lock(&j->vh->state_lock);
        snprintf(j->vh->export_vm, sizeof(j->vh->export_vm), "%s", vm ? vm : "");
        atomic_store(&j->vh->export_done, 0);
        atomic_store(&j->vh->export_total, vm ? 2 * j->disk_size : 0);
        pthread_mutex_unlock(&j->vh->state_lock);
}

int export_progress(struct vmhost *vh, const char *id, json_t **ret, struct vm_problem *p)
{
        bool now;

        pthread_mutex_lock(&vh->state_lock);
        now = strcmp(vh->export_vm, id) == 0;
        *ret = now ? json_pack("{s:s, s:I, s:I}", "vm_id", id, "done_bytes",
                               (json_int_t)atomic_load(&vh->export_done), "total_bytes",
                               (json_int_t)atomic_load(&vh->export_total))
                   : NULL;
        pthread_mutex_unlock(&vh->state_lock);
        if (!now)
                return vms_problem(p, -ENOENT, "no-export", "no export of VM '%s' is being written",
                                   id);
        return *ret ? 0 : vms_problem(p, -EAGAIN, "out-of-memory", "no answer");
}

static int export_parse(const char *body, size_t len, json_t **ret_o, json_t **ret_record,
                        const char **ret_note, struct vm_problem *p)
{
        static const char *const fields[] = {"v", "manifest", "checkpoint", NULL};
        struct json_input_error jerr = {{0}};
        json_t *o = json_input_parse(body, len, EXPORT_MANIFEST, EXPORT_BODY_DEPTH, &jerr);
        int r = o ? 0 : -EINVAL;

        r = r ?: json_input_check_keys(o, fields, &jerr);
        r = r ?: json_input_get_string(o, "checkpoint", true, EXPORT_NOTE_MAX, ret_note, &jerr);
        if (r == 0 && !json_is_object(json_object_get(o, "manifest"))) {
                snprintf(jerr.text, sizeof(jerr.text), "'manifest' must be an object");
                r = -EINVAL;
        }
        if (r < 0) {
                json_decref(o);
                return vms_problem(p, -EINVAL, "bad-request", "%s", jerr.text);
        }
        *ret_o = o;
        *ret_record = json_object_get(o, "manifest");
        return 0;
}

int export_write(struct vmhost *vh, const char *id, const char *body, size_t len, json_t **ret,
                 struct vm_problem *p)
{
        struct export_job *j; /* 17 KiB of paths: on the heap */
        json_t *o = NULL, *record = NULL;
        const char *note = NULL;
        int r = export_parse(body, len, &o, &record, &note, p);

        if (r < 0)
                return r;
        j = malloc(sizeof(*j));
        if (!j) {
                json_decref(o);
                return vms_problem(p, -ENOMEM, "internal", "out of memory");
        }
        *j = (struct export_job){.vh = vh, .disk_fd = -1, .out_fd = -1};
        snprintf(j->vm_id, sizeof(j->vm_id), "%s", id);
        pthread_mutex_lock(&vh->ops_lock);
        r = export_check_vm(vh, id, p);
        r = r ?: export_open(j, p);
        if (r == 0)
                export_show(j, id);
        if (r == 0 && export_build_head(j, record, note, j->mtime_s) < 0)
                r = vms_problem(p, -EIO, "export-failed", "cannot read the vault disk '%s'",
                                j->disk);
        if (r == 0) {
                sha256_init(&j->sha);
                crypto_generichash_init(&j->b2, NULL, 0, 32);
                if ((r = export_stream(j)) < 0)
                        r = vms_problem(p, -ENOSPC, "export-failed", "cannot write '%s': %s",
                                        j->part, strerror(-r));
        }
        r = r ?: export_finish(j, ret, p);
        export_show(j, NULL);
        pthread_mutex_unlock(&vh->ops_lock);
        if (r == 0)
                log_info("VM '%s': exported to '%s' (%" PRIu64 " bytes, %" PRIu64 " kept from a "
                         "partial file)",
                         id, j->final, j->total, j->resumed);
        else
                log_warn("VM '%s': export refused: %s: %s", id, p->type, p->detail);
        export_close(j);
        free(j);
        json_decref(o);
        return r;
}

int export_sign(struct vmhost *vh, const char *id, const char *body, size_t len, json_t **ret,
                struct vm_problem *p)
{
        static const char *const fields[] = {"v", "signature", NULL};
        struct json_input_error jerr = {{0}};
        json_t *o = json_input_parse(body, len, 4096, 2, &jerr);
        const char *b64 = NULL;
        char *path = malloc(EXPORT_PATH_MAX), fleet_id[NODE_ID_MAX + 1], *line = NULL;
        uint8_t sig[crypto_sign_BYTES], pk[32];
        size_t n = 0, llen = 0;
        int r = o ? 0 : -EINVAL;

        if (!path) {
                r = vms_problem(p, -EAGAIN, "out-of-memory", "no path");
                goto cleanup;
        }
        r = r ?: json_input_check_keys(o, fields, &jerr);
        r = r ?: json_input_get_string(o, "signature", true, 200, &b64, &jerr);
        if (r < 0 || !ident_valid(IDENT_VM, id) ||
            sodium_base642bin(sig, sizeof(sig), b64, strlen(b64), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(sig)) {
                r = vms_problem(p, -EINVAL, "bad-request", "%s",
                                r < 0 ? jerr.text : "'signature' is not 64 bytes of base64");
                goto cleanup;
        }
        snprintf(path, EXPORT_PATH_MAX, "%s/exports/%s.tar.sha256", vh->cfg.state_dir, id);
        if (small_file_read(path, 256, false, &line, &llen) < 0) {
                r = vms_problem(p, -ENOENT, "no-export", "VM '%s' has no export on node '%s'", id,
                                vh->cfg.node_id);
                goto cleanup;
        }
        if (roster_pin_key(vh, pk, fleet_id) < 0 ||
            crypto_sign_verify_detached(sig, (const uint8_t *)line, llen, pk) != 0) {
                r = vms_problem(p, -EBADMSG, "bad-signature",
                                "the signature of '%s' does not verify under the roster's "
                                "controller key",
                                path);
                goto cleanup;
        }
        snprintf(path, EXPORT_PATH_MAX, "%s/exports/%s.tar.sig", vh->cfg.state_dir, id);
        if (small_file_write(path, (const char *)sig, sizeof(sig), 0640) < 0) {
                r = vms_problem(p, -EIO, "export-failed", "cannot write '%s'", path);
                goto cleanup;
        }
        *ret = json_pack("{s:s, s:s}", "vm_id", id, "signature_file", path);
        r = *ret ? 0 : vms_problem(p, -EAGAIN, "out-of-memory", "no answer");
cleanup:
        free(path);
        free(line);
        json_decref(o);
        return r;
}

/* ---- import: an export already on this node (exports/NAME), checked, then created here ---- */

struct import_info {
        char *path; /* malloc'd */
        uint64_t size;
        char sha256[65];
        char *note; /* the checkpoint member (malloc'd) */
        json_t *manifest;
        uint64_t disk_off, disk_size;
        char disk_sha256[65];
};

static void import_info_done(struct import_info *ii)
{
        free(ii->note);
        free(ii->path);
        json_decref(ii->manifest);
}

/* One ustar header: its name and size; -EBADMSG when it is not one of ours. */
static int import_header(const uint8_t blk[EXPORT_BLOCK], const char *want, uint64_t *ret_size)
{
        char size[13];
        uint64_t v = 0;

        if (strncmp((const char *)blk, want, 100) != 0 || memcmp(blk + 257, "ustar", 5) != 0 ||
            blk[156] != '0')
                return -EBADMSG;
        memcpy(size, blk + 124, 12);
        size[12] = '\0';
        for (const char *c = size; *c >= '0' && *c <= '7'; c++)
                v = v * 8 + (uint64_t)(*c - '0');
        *ret_size = v;
        return 0;
}

/* Reads a small member at *off (header included) into a malloc'd NUL-terminated buffer. */
static int import_small(int fd, uint64_t *off, const char *name, size_t max, char **ret)
{
        uint8_t blk[EXPORT_BLOCK];
        uint64_t size;
        char *buf;

        if (pread(fd, blk, sizeof(blk), (off_t)*off) != EXPORT_BLOCK ||
            import_header(blk, name, &size) < 0 || size > max)
                return -EBADMSG;
        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        if (pread(fd, buf, size, (off_t)(*off + EXPORT_BLOCK)) != (ssize_t)size) {
                free(buf);
                return -EBADMSG;
        }
        buf[size] = '\0';
        *off += EXPORT_BLOCK + size + export_pad(size);
        *ret = buf;
        return 0;
}

/* The archive's layout: checkpoint, manifest.json, vault.img (where its bytes are). */
static int import_layout(int fd, struct import_info *ii)
{
        uint8_t blk[EXPORT_BLOCK];
        uint64_t off = 0;
        char *text = NULL;
        int r = import_small(fd, &off, "checkpoint", EXPORT_NOTE_MAX, &ii->note);

        r = r ?: import_small(fd, &off, "manifest.json", EXPORT_MANIFEST, &text);
        if (r == 0) {
                ii->manifest = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
                r = json_is_object(ii->manifest) ? 0 : -EBADMSG;
        }
        free(text);
        if (r == 0 && (pread(fd, blk, sizeof(blk), (off_t)off) != EXPORT_BLOCK ||
                       import_header(blk, "vault.img", &ii->disk_size) < 0))
                r = -EBADMSG;
        ii->disk_off = off + EXPORT_BLOCK;
        if (r == 0 && ii->disk_off + ii->disk_size > ii->size)
                r = -EBADMSG;
        return r;
}

/* Hashes the whole archive and the disk member; copies the member to out_fd when >= 0. */
static int import_hash(int fd, struct import_info *ii, int out_fd, uint8_t *buf)
{
        struct sha256 all, disk;
        uint8_t h[32];
        uint64_t off = 0;
        ssize_t n;

        sha256_init(&all);
        sha256_init(&disk);
        while ((n = pread(fd, buf, EXPORT_BUF, (off_t)off)) > 0) {
                uint64_t lo = off > ii->disk_off ? off : ii->disk_off;
                uint64_t hi = off + (uint64_t)n < ii->disk_off + ii->disk_size
                                  ? off + (uint64_t)n
                                  : ii->disk_off + ii->disk_size;

                sha256_update(&all, buf, (size_t)n);
                if (lo < hi) {
                        sha256_update(&disk, buf + (lo - off), (size_t)(hi - lo));
                        if (out_fd >= 0 && pwrite(out_fd, buf + (lo - off), (size_t)(hi - lo),
                                                  (off_t)(lo - ii->disk_off)) != (ssize_t)(hi - lo))
                                return -EIO;
                }
                off += (uint64_t)n;
        }
        if (n < 0)
                return -errno;
        sha256_final(&all, h);
        sodium_bin2hex(ii->sha256, sizeof(ii->sha256), h, 32);
        sha256_final(&disk, h);
        sodium_bin2hex(ii->disk_sha256, sizeof(ii->disk_sha256), h, 32);
        return 0;
}

/* The fleet's signature over the archive's sha256sum line, the line against the bytes, the
 * layout, and the disk member against the manifest; the member copied to out_fd when >= 0. */
static int import_check(struct vmhost *vh, const char *name, struct import_info *ii, int out_fd,
                        struct vm_problem *p)
{
        char *path = NULL, *line = NULL, *sig = NULL, fleet_id[NODE_ID_MAX + 1];
        size_t llen = 0, slen = 0;
        uint8_t pk[32], *buf = NULL;
        struct stat st;
        const char *want;
        json_t *m;
        int fd = -1, r = 0;

        if (asprintf(&ii->path, "%s/exports/%s", vh->cfg.state_dir, name) < 0)
                ii->path = NULL; /* asprintf leaves it undefined on failure */
        if (!ii->path || asprintf(&path, "%s.sha256", ii->path) < 0) {
                path = NULL; /* ii->path, if any, goes with import_info_done */
                r = vms_problem(p, -ENOMEM, "internal", "out of memory");
                goto cleanup;
        }
        fd = open(ii->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = vms_problem(p, -ENOENT, "no-export-file",
                                "no export '%s' on node '%s' (it must be put in %s/exports by "
                                "hand: fleetd never transfers it)",
                                name, vh->cfg.node_id, vh->cfg.state_dir);
                goto cleanup;
        }
        ii->size = (uint64_t)st.st_size;
        if (small_file_read(path, 256, false, &line, &llen) < 0) {
                r = vms_problem(p, -EINVAL, "no-checksum", "no '%s.sha256' beside the export",
                                name);
                goto cleanup;
        }
        free(path);
        if (asprintf(&path, "%s.sig", ii->path) < 0)
                path = NULL;
        if (!path || small_file_read(path, 128, false, &sig, &slen) < 0 ||
            slen != crypto_sign_BYTES || roster_pin_key(vh, pk, fleet_id) < 0 ||
            crypto_sign_verify_detached((const uint8_t *)sig, (const uint8_t *)line, llen, pk) !=
                0) {
                r = vms_problem(p, -EBADMSG, "bad-signature",
                                "'%s.sig' is not the fleet's signature of '%s.sha256' (the "
                                "roster's controller key)",
                                name, name);
                goto cleanup;
        }
        if (import_layout(fd, ii) < 0) {
                r = vms_problem(p, -EINVAL, "not-an-export", "'%s' is not a Totebox export", name);
                goto cleanup;
        }
        buf = malloc(EXPORT_BUF);
        if (!buf || import_hash(fd, ii, out_fd, buf) < 0) {
                r = vms_problem(p, -EIO, "import-failed", "cannot read '%s'", name);
                goto cleanup;
        }
        m = json_array_get(json_object_get(ii->manifest, "members"), 1);
        want = json_string_value(json_object_get(m, "sha256"));
        if (llen < 64 || strncmp(line, ii->sha256, 64) != 0 || !want ||
            strcmp(want, ii->disk_sha256) != 0)
                r = vms_problem(p, -EBADMSG, "tampered-export",
                                "'%s' does not hold the bytes the fleet signed (SHA-256 '%s')",
                                name, ii->sha256);
cleanup:
        if (fd >= 0)
                close(fd);
        free(path);
        free(line);
        free(sig);
        free(buf);
        return r;
}

static int import_parse(const char *body, size_t len, char *name, size_t nsize, json_t **ret_create,
                        struct vm_problem *p)
{
        static const char *const fields[] = {"v", "file", "create", NULL};
        struct json_input_error jerr = {{0}};
        json_t *o = json_input_parse(body, len, 65536, 4, &jerr);
        const char *file = NULL;
        int r = o ? 0 : -EINVAL;

        r = r ?: json_input_check_keys(o, fields, &jerr);
        r = r ?: json_input_get_string(o, "file", true, 200, &file, &jerr);
        if (r == 0 && (!file[0] || file[0] == '.' || strchr(file, '/') || strlen(file) < 5 ||
                       strcmp(file + strlen(file) - 4, ".tar") != 0))
                r = json_input_fail(&jerr, "'file' must be the name of a .tar under exports/");
        if (r < 0) {
                json_decref(o);
                return vms_problem(p, -EINVAL, "bad-request", "%s", jerr.text);
        }
        snprintf(name, nsize, "%s", file);
        if (ret_create)
                *ret_create = json_incref(json_object_get(o, "create"));
        json_decref(o);
        return 0;
}

int export_inspect(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                   struct vm_problem *p)
{
        struct import_info ii = {0};
        char name[256];
        int r = import_parse(body, len, name, sizeof(name), NULL, p);

        r = r ?: import_check(vh, name, &ii, -1, p);
        if (r == 0) {
                *ret = json_pack("{s:s, s:I, s:s, s:O, s:s}", "file", ii.path, "size",
                                 (json_int_t)ii.size, "sha256", ii.sha256, "manifest", ii.manifest,
                                 "checkpoint", ii.note);
                r = *ret ? 0 : vms_problem(p, -EAGAIN, "out-of-memory", "no answer");
        }
        import_info_done(&ii);
        return r;
}

/* The disk member into vms/{id}-vault.img (never over an existing disk), then the domain. The
 * helper creates vms/{id}-vault.img.import (vms/ is its directory) and passes the descriptor up;
 * the copy is renamed into place by the helper, never over a disk. */
static int import_disk(struct vmhost *vh, const char *name, const struct vm_create_req *q,
                       struct import_info *ii, struct vm_problem *p)
{
        int fd = -1, r = vmh_file(vh, VMH_FILE_VAULT_NEW, q->vm_id, false, &fd), unused;

        if (r == -EEXIST)
                return vms_problem(p, -EEXIST, "vault-disk-exists",
                                   "node '%s' already holds a vault disk for VM '%s'; it is never "
                                   "overwritten",
                                   vh->cfg.node_id, q->vm_id);
        if (r < 0)
                return vms_problem(p, -EIO, "import-failed",
                                   "cannot create the vault disk of '%s': %s", q->vm_id,
                                   strerror(-r));
        r = import_check(vh, name, ii, fd, p);
        if (r == 0 &&
            (fsync(fd) < 0 || json_string_value(json_object_get(ii->manifest, "vm_id")) == NULL ||
             strcmp(json_string_value(json_object_get(ii->manifest, "vm_id")), q->vm_id) != 0))
                r = vms_problem(p, -EINVAL, "not-this-vm", "'%s' is not an export of VM '%s'", name,
                                q->vm_id);
        close(fd);
        if (r == 0 && (r = vmh_file(vh, VMH_FILE_VAULT_COMMIT, q->vm_id, false, &unused)) < 0)
                r = r == -EEXIST ? vms_problem(p, -EEXIST, "vault-disk-exists",
                                               "node '%s' already holds a vault disk for VM '%s'; "
                                               "it is never overwritten",
                                               vh->cfg.node_id, q->vm_id)
                                 : vms_problem(p, -EIO, "import-failed",
                                               "cannot rename the vault disk of '%s': %s", q->vm_id,
                                               strerror(-r));
        if (r < 0)
                vmh_file(vh, VMH_FILE_VAULT_DROP, q->vm_id, false, &unused);
        return r;
}

int export_import(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                  struct vm_problem *p)
{
        struct import_info ii = {0};
        struct vm_create_req q;
        char name[256], *text = NULL;
        json_t *create = NULL;
        int r = import_parse(body, len, name, sizeof(name), &create, p);

        if (r == 0) {
                text = json_is_object(create) ? json_dumps(create, JSON_COMPACT) : NULL;
                r = text ? vm_create_req_parse(text, strlen(text), &q, p)
                         : vms_problem(p, -EINVAL, "bad-request", "'create' must be an object");
        }
        free(text);
        json_decref(create);
        if (r < 0)
                return r;
        pthread_mutex_lock(&vh->ops_lock);
        r = pin_gate_check(vh, q.vm_id, q.has_pin ? &q.pin : NULL, false, q.entity, q.image,
                           -EACCES, p);
        r = r ?: import_disk(vh, name, &q, &ii, p);
        pthread_mutex_unlock(&vh->ops_lock);
        import_info_done(&ii);
        if (r < 0) {
                log_warn("import of '%s' refused: %s: %s", name, p->type, p->detail);
                return r;
        }
        log_info("VM '%s': vault disk imported from '%s'", q.vm_id, name);
        r = vms_create(vh, &q, ret, p);
        return r < 0 ? r : VMS_CREATED;
}
