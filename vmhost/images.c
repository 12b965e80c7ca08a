/* The base-image store: the libvirt dir pool "totebox-images" under state_dir/images holds each
 * image's volumes (NAME.disk.qcow2 or .raw, and for a direct-kernel-boot image NAME.vmlinuz and
 * NAME.initrd), and state_dir/manifests/NAME.json its manifest. Import copies the files in while
 * hashing them and refuses any checksum mismatch; a name is never reused (a new version is a new
 * image), and an image a VM uses cannot be removed. The helper (helper_virt.c) ensures both
 * storage pools. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json_input.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/small_file.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

#define IMAGE_MANIFEST_MAX (64 * 1024)
#define IMAGE_FILE_MAX     (64ULL << 30)

static const char *const image_roles[] = {"disk", "kernel", "initrd"};

static int images_mkdir(const char *state, const char *sub, mode_t mode)
{
        char *p = NULL;
        int r = 0;

        if (asprintf(&p, "%s%s%s", state, sub[0] ? "/" : "", sub) < 0)
                return -ENOMEM;
        if ((mkdir(p, mode) < 0 && errno != EEXIST) || chmod(p, mode) < 0)
                r = -errno;
        free(p);
        return r;
}

int images_prepare_dirs(struct vmhost *vh)
{
        static const char *const dirs[] = {"",        "vms",   "images",    "manifests", "channels",
                                           "console", "seeds", "integrity", NULL};
        int r = 0;

        for (const char *const *d = dirs; *d && r == 0; d++)
                r = images_mkdir(vh->cfg.state_dir, *d,
                                 policy_state_dir_mode(vh->cfg.libvirt_uri, *d));
        if (r < 0)
                log_error("cannot create the directories under '%s': %s", vh->cfg.state_dir,
                          strerror(-r));
        return r;
}

int images_copy_hash(const char *src, const char *dst, uint64_t max_bytes,
                     char hex[DIGEST_HEX_LEN + 1])
{
        struct sha256 st;
        uint8_t d[SHA256_LEN];
        /* the call's own buffer: a __thread array is zeroed into every thread vmhost starts
         * (one per node API connection), 64 KiB each, used or not */
        char *buf = malloc(1 << 16);
        uint64_t total = 0;
        struct stat sb;
        int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW), out = -1, r = 0;
        ssize_t n;

        if (in < 0 || fstat(in, &sb) < 0)
                r = -errno;
        else if (!S_ISREG(sb.st_mode))
                r = -EINVAL;
        else if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
                r = -errno;
        if (r == 0 && !buf)
                r = -ENOMEM;
        sha256_init(&st);
        while (r == 0 && (n = read(in, buf, 1 << 16)) != 0) {
                if (n < 0 || (total += (uint64_t)n) > max_bytes) {
                        r = n < 0 ? -errno : -EFBIG;
                        break;
                }
                sha256_update(&st, buf, (size_t)n);
                if (write(out, buf, (size_t)n) != n)
                        r = -EIO;
        }
        if (r == 0 && fsync(out) < 0)
                r = -errno;
        if (in >= 0)
                close(in);
        if (out >= 0)
                close(out);
        free(buf);
        if (r < 0) {
                if (out >= 0)
                        unlink(dst);
                return r;
        }
        sha256_final(&st, d);
        sodium_bin2hex(hex, DIGEST_HEX_LEN + 1, d, sizeof(d));
        return 0;
}

static char *images_manifest_path(struct vmhost *vh, const char *name)
{
        char *p = NULL;

        return asprintf(&p, "%s/manifests/%s.json", vh->cfg.state_dir, name) < 0 ? NULL : p;
}

/* state_dir/images/PREFIX VOLUME (malloc'd): paths go to the heap, not into 4 KiB frames. */
static char *images_volume_path(struct vmhost *vh, const char *prefix, const char *volume)
{
        char *p = NULL;

        return asprintf(&p, "%s/images/%s%s", vh->cfg.state_dir, prefix, volume) < 0 ? NULL : p;
}

static json_t *images_manifest_load(struct vmhost *vh, const char *name)
{
        char *p = images_manifest_path(vh, name);
        json_t *m = p ? json_load_file(p, JSON_REJECT_DUPLICATES, NULL) : NULL;

        free(p);
        return m;
}

int images_lookup(struct vmhost *vh, const char *name, struct image_info *ret)
{
        struct image_info *ii; /* 25 KiB: not on the stack; ret untouched on failure */
        json_t *m, *files;
        const char *v;
        int r = 0;

        if (!ident_valid(IDENT_IMAGE, name) || !(m = images_manifest_load(vh, name)))
                return -ENOENT;
        ii = calloc(1, sizeof(*ii));
        if (!ii) {
                json_decref(m);
                return -ENOMEM;
        }
        files = json_object_get(m, "files");
        snprintf(ii->name, sizeof(ii->name), "%s", name);
        snprintf(ii->kind, sizeof(ii->kind), "%s",
                 json_string_value(json_object_get(m, "kind")) ?: "disk");
        snprintf(ii->cmdline, sizeof(ii->cmdline), "%s",
                 json_string_value(json_object_get(m, "cmdline")) ?: "");
        ii->virtual_size = (uint64_t)json_integer_value(json_object_get(m, "virtual_size"));
        for (unsigned i = 0; i < 3; i++) {
                char *dst = i == 0 ? ii->disk_path : i == 1 ? ii->kernel_path : ii->initrd_path;

                v = json_string_value(
                    json_object_get(json_object_get(files, image_roles[i]), "volume"));
                if (v)
                        snprintf(dst, sizeof(ii->disk_path), "%s/images/%s", vh->cfg.state_dir, v);
        }
        json_decref(m);
        if (!ii->disk_path[0])
                r = -ENOENT;
        else
                *ret = *ii;
        free(ii);
        return r;
}

static bool images_in_use(struct vmhost *vh, const char *name)
{
        bool used = false;
        json_t *v;
        size_t i;

        pthread_mutex_lock(&vh->state_lock);
        json_array_foreach(vh->vms, i,
                           v) if (strcmp(json_string_value(json_object_get(v, "image")) ?: "",
                                         name) == 0) used = true;
        pthread_mutex_unlock(&vh->state_lock);
        return used;
}

/* The manifests of the store, by name, each through fn (which may return NULL to skip it). */
static json_t *images_scan(struct vmhost *vh,
                           json_t *(*fn)(struct vmhost *vh, const char *name, json_t *m))
{
        char *dir = NULL;
        json_t *list = json_array();
        struct dirent **ents = NULL;
        int n = -1;

        if (asprintf(&dir, "%s/manifests", vh->cfg.state_dir) >= 0) {
                n = scandir(dir, &ents, NULL, alphasort);
                free(dir);
        }
        for (int i = 0; i < n; i++) {
                char name[IMAGE_NAME_MAX + 1];
                size_t len = strlen(ents[i]->d_name);
                json_t *m = NULL;

                if (len > 5 && len - 5 <= IMAGE_NAME_MAX &&
                    strcmp(ents[i]->d_name + len - 5, ".json") == 0) {
                        snprintf(name, sizeof(name), "%.*s", (int)(len - 5), ents[i]->d_name);
                        m = images_manifest_load(vh, name);
                }
                if (m && (m = fn(vh, name, m)))
                        json_array_append_new(list, m);
                free(ents[i]);
        }
        free(ents);
        return list;
}

static json_t *images_with_use(struct vmhost *vh, const char *name, json_t *m)
{
        json_object_set_new(m, "in_use", json_boolean(images_in_use(vh, name)));
        return m;
}

json_t *images_list(struct vmhost *vh)
{
        inventory_refresh(vh);
        return images_scan(vh, images_with_use);
}

static json_t *images_brief(struct vmhost *vh, const char *name, json_t *m)
{
        json_t *size =
            json_object_get(json_object_get(json_object_get(m, "files"), "disk"), "size");
        json_t *o = json_pack("{s:s, s:s, s:I}", "name", name, "sha256",
                              json_string_value(json_object_get(m, "source_sha256")) ?: "", "size",
                              json_integer_value(size));

        (void)vh;
        json_decref(m);
        return o;
}

json_t *images_summary(struct vmhost *vh)
{
        return images_scan(vh, images_brief);
}

/* One file of an import: copied into the pool as NAME.<suffix> and checked against want. */
struct image_file {
        const char *role;
        char src[4096];
        char want[DIGEST_HEX_LEN + 1];
        char volume[IMAGE_NAME_MAX + 32];
        char format[8];
        uint64_t size;
};

static int images_fetch_to(struct image_file *f, const char *tmp, const char *dst,
                           struct vm_problem *p)
{
        char got[DIGEST_HEX_LEN + 1];
        struct stat st;
        int r;

        unlink(tmp);
        r = images_copy_hash(f->src, tmp, IMAGE_FILE_MAX, got);
        if (r < 0)
                return vms_problem(p, -EINVAL, "image-unreadable", "cannot read %s '%s': %s",
                                   f->role, f->src, strerror(-r));
        if (sodium_memcmp(got, f->want, DIGEST_HEX_LEN) != 0) {
                unlink(tmp);
                return vms_problem(p, -EBADMSG, "checksum-mismatch",
                                   "%s '%s' has SHA-256 %s, expected %s; refused", f->role, f->src,
                                   got, f->want);
        }
        if (stat(tmp, &st) < 0)
                st.st_size = 0;
        if (link(tmp, dst) < 0) { /* never replaces an existing volume */
                r = -errno;
                unlink(tmp);
                return vms_problem(p, -EEXIST, "image-exists", "volume '%s' exists: %s", f->volume,
                                   strerror(-r));
        }
        unlink(tmp);
        f->size = (uint64_t)st.st_size; /* from now on, a failed import removes it */
        return 0;
}

static int images_fetch(struct vmhost *vh, struct image_file *f, struct vm_problem *p)
{
        char *tmp = images_volume_path(vh, ".import-", f->volume);
        char *dst = images_volume_path(vh, "", f->volume);
        int r = tmp && dst ? images_fetch_to(f, tmp, dst, p)
                           : vms_problem(p, -ENOMEM, "internal", "out of memory");

        free(tmp);
        free(dst);
        return r;
}

static int images_read_small(const char *path, char **ret, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
        char *buf = NULL;
        struct stat st;
        ssize_t n = -1;

        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_size <= IMAGE_MANIFEST_MAX && (buf = malloc((size_t)st.st_size + 1)))
                n = read(fd, buf, (size_t)st.st_size);
        if (fd >= 0)
                close(fd);
        if (n < 0 || !buf || n != st.st_size) {
                free(buf);
                return -EINVAL;
        }
        buf[n] = '\0';
        *ret = buf;
        *ret_len = (size_t)n;
        return 0;
}

static void images_disk_format(const char *path, char *fmt, size_t size)
{
        uint8_t magic[4] = {0};
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

        if (fd >= 0 && read(fd, magic, 4) == 4 && memcmp(magic, "QFI\xfb", 4) == 0)
                snprintf(fmt, size, "qcow2");
        else
                snprintf(fmt, size, "raw");
        if (fd >= 0)
                close(fd);
}

/* Fills the files of a manifest import; paths in a manifest are plain names beside it. */
static int images_from_manifest(const char *path, const char *text, size_t len,
                                struct image_file *files, char *cmdline, size_t cmdsize,
                                struct vm_problem *p)
{
        struct json_input_error jerr = {{0}};
        const char *dir_end = strrchr(path, '/');
        json_t *m = json_input_parse(text, len, IMAGE_MANIFEST_MAX, 4, &jerr), *fs = NULL;
        int r = 0;

        if (!m || !json_is_object(fs = json_object_get(m, "files")))
                r = vms_problem(p, -EINVAL, "bad-manifest", "manifest '%s': %s", path,
                                m ? "no 'files' object" : jerr.text);
        for (unsigned i = 0; r == 0 && i < 3; i++) {
                json_t *f = json_object_get(fs, image_roles[i]);
                const char *fp = json_string_value(json_object_get(f, "path"));
                const char *sum = json_string_value(json_object_get(f, "sha256"));

                files[i].role = image_roles[i];
                if (!f && i > 0)
                        continue;
                if (!fp || !sum || strchr(fp, '/') || strcmp(fp, "..") == 0 ||
                    !ident_hex_valid(sum, 64) || (size_t)(dir_end - path) + strlen(fp) + 2 > 4096)
                        r = vms_problem(p, -EINVAL, "bad-manifest",
                                        "manifest '%s': files.%s needs a plain 'path' and a hex "
                                        "'sha256'",
                                        path, image_roles[i]);
                else {
                        snprintf(files[i].src, sizeof(files[i].src), "%.*s/%s",
                                 (int)(dir_end - path), path, fp);
                        snprintf(files[i].want, sizeof(files[i].want), "%s", sum);
                }
        }
        if (r == 0 && json_string_value(json_object_get(m, "cmdline")))
                snprintf(cmdline, cmdsize, "%s", json_string_value(json_object_get(m, "cmdline")));
        json_decref(m);
        return r;
}

int images_manifest_check(const char *path, const char *text, size_t len, struct vm_problem *p)
{
        struct image_file *files; /* 12 KiB: on the heap */
        char cmdline[512];
        int r;

        if (path[0] != '/')
                return vms_problem(p, -EINVAL, "bad-request", "the manifest path must be absolute");
        files = calloc(3, sizeof(*files));
        r = files ? images_from_manifest(path, text, len, files, cmdline, sizeof(cmdline), p)
                  : vms_problem(p, -ENOMEM, "internal", "out of memory");
        free(files);
        return r;
}

static int images_write_manifest(struct vmhost *vh, const char *name, json_t *m)
{
        char *path = images_manifest_path(vh, name), *tmp = NULL;
        int r = -ENOMEM;

        if (path && asprintf(&tmp, "%s.tmp", path) >= 0) {
                r = json_dump_file(m, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 &&
                            rename(tmp, path) == 0
                        ? 0
                        : -EIO;
                free(tmp);
        }
        free(path);
        return r;
}

static json_t *images_manifest_new(const char *name, const char *src, const char *sum,
                                   const char *cmdline, struct image_file *files, uint64_t vsize)
{
        json_t *fs = json_object();
        bool kernel = files[1].src[0] != 0;

        for (unsigned i = 0; i < 3; i++)
                if (files[i].src[0])
                        json_object_set_new(fs, image_roles[i],
                                            json_pack("{s:s, s:s, s:I, s:s}", "volume",
                                                      files[i].volume, "sha256", files[i].want,
                                                      "size", (json_int_t)files[i].size, "format",
                                                      files[i].format));
        return json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o}", "v", 1, "name", name,
                         "kind", kernel ? "direct-kernel" : "disk", "source", src, "source_sha256",
                         sum, "cmdline", cmdline, "virtual_size", (json_int_t)vsize,
                         "imported_at_ms", (json_int_t)clock_realtime_ms(), "files", fs);
}

/* The virtual size of a disk: the qcow2 header's size field (big-endian u64 at offset 24), or
 * the file size of a raw disk. */
static uint64_t images_virtual_size(struct vmhost *vh, const char *volume)
{
        char *path = images_volume_path(vh, "", volume);
        uint8_t h[32];
        struct stat st;
        uint64_t v = 0;
        int fd;

        fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        free(path);
        if (fd < 0)
                return 0;
        if (read(fd, h, sizeof(h)) == (ssize_t)sizeof(h) && memcmp(h, "QFI\xfb", 4) == 0)
                for (int i = 24; i < 32; i++)
                        v = v << 8 | h[i];
        else if (fstat(fd, &st) == 0)
                v = (uint64_t)st.st_size;
        close(fd);
        return v;
}

/* Tells libvirt's storage driver (when there is one, through the helper) that volumes came or
 * went. */
static void images_pool_refresh(struct vmhost *vh)
{
        vmh_pool_refresh(vh);
}

int images_parse_import(const char *body, size_t len, char *name, char *path, char *sum,
                        struct vm_problem *p)
{
        static const char *const fields[] = {"name", "path", "sha256", NULL};
        struct json_input_error jerr = {{0}};
        json_t *o = json_input_parse(body, len, 65536, 2, &jerr);
        int r = o && json_is_object(o) ? 0 : -EINVAL;

        if (o && r < 0)
                json_input_fail(&jerr, "the body must be a JSON object");
        r = r ?: json_input_check_keys(o, fields, &jerr);
        r = r ?: json_input_copy_string(o, "name", true, name, IMAGE_NAME_MAX + 1, &jerr);
        r = r ?: json_input_copy_string(o, "path", true, path, 4000, &jerr);
        r = r ?: json_input_copy_string(o, "sha256", true, sum, DIGEST_HEX_LEN + 1, &jerr);
        json_decref(o);
        if (r < 0)
                return vms_problem(p, -EINVAL, "bad-request", "%s", jerr.text);
        if (!ident_valid(IDENT_IMAGE, name) || path[0] != '/' || !ident_hex_valid(sum, 64))
                return vms_problem(p, -EINVAL, "bad-request",
                                   "need a valid image name, an absolute path and a lowercase hex "
                                   "sha256");
        return 0;
}

static void images_unlink_volumes(struct vmhost *vh, struct image_file *files)
{
        for (unsigned i = 0; i < 3; i++) {
                char *dst;

                if (!files[i].volume[0] || !files[i].size)
                        continue;
                dst = images_volume_path(vh, "", files[i].volume);
                if (dst)
                        unlink(dst);
                free(dst);
        }
}

static int images_import_files(struct vmhost *vh, const char *name, const char *path,
                               const char *sum, struct image_file *files, json_t **ret,
                               struct vm_problem *p)
{
        static const char *const suffix[] = {"disk", "vmlinuz", "initrd"};
        char cmdline[512] = "", *text = NULL, got[DIGEST_HEX_LEN + 1];
        size_t len = strlen(path), tlen = 0;
        json_t *man = NULL;
        int r = 0;

        if ((man = images_manifest_load(vh, name))) {
                json_decref(man);
                return vms_problem(p, -EEXIST, "image-exists",
                                   "image '%s' exists and is never replaced in place; import the "
                                   "new version under a new name",
                                   name);
        }
        if (len > 5 && strcmp(path + len - 5, ".json") == 0) {
                uint8_t d[SHA256_LEN];

                if (images_read_small(path, &text, &tlen) < 0)
                        return vms_problem(p, -EINVAL, "image-unreadable",
                                           "cannot read manifest '%s'", path);
                sha256_digest((const uint8_t *)text, tlen, d);
                sodium_bin2hex(got, sizeof(got), d, sizeof(d));
                if (strcmp(got, sum) != 0)
                        r = vms_problem(p, -EBADMSG, "checksum-mismatch",
                                        "manifest '%s' has SHA-256 %s, expected %s; refused", path,
                                        got, sum);
                r = r ?: images_from_manifest(path, text, tlen, files, cmdline, sizeof(cmdline), p);
                free(text);
        } else {
                files[0].role = "disk";
                snprintf(files[0].src, sizeof(files[0].src), "%s", path);
                snprintf(files[0].want, sizeof(files[0].want), "%s", sum);
        }
        for (unsigned i = 0; r == 0 && i < 3; i++) {
                if (!files[i].src[0])
                        continue;
                if (i == 0)
                        images_disk_format(files[i].src, files[i].format, sizeof(files[i].format));
                else
                        snprintf(files[i].format, sizeof(files[i].format), "raw");
                if (strlen(name) > IMAGE_NAME_MAX) {
                        r = vms_problem(p, -EINVAL, "bad-request", "image name too long");
                        break;
                }
                snprintf(files[i].volume, sizeof(files[i].volume), "%.63s.%s%s%.7s", name,
                         suffix[i], i == 0 ? "." : "", i == 0 ? files[i].format : "");
                r = images_fetch(vh, &files[i], p);
        }
        if (r == 0) {
                man = images_manifest_new(name, path, sum, cmdline, files,
                                          images_virtual_size(vh, files[0].volume));
                if (!man || images_write_manifest(vh, name, man) < 0)
                        r = vms_problem(p, -EIO, "internal", "cannot write the manifest of '%s'",
                                        name);
        }
        if (r < 0) {
                images_unlink_volumes(vh, files);
                json_decref(man);
                return r;
        }
        *ret = man;
        return 0;
}

/* The three files' descriptions (12 KiB of paths) on the heap. */
static int images_import_locked(struct vmhost *vh, const char *name, const char *path,
                                const char *sum, json_t **ret, struct vm_problem *p)
{
        struct image_file *files = calloc(3, sizeof(*files));
        int r = files ? images_import_files(vh, name, path, sum, files, ret, p)
                      : vms_problem(p, -ENOMEM, "internal", "out of memory");

        free(files);
        return r;
}

int images_import(struct vmhost *vh, const char *body, size_t len, json_t **ret,
                  struct vm_problem *p)
{
        /* path: the 4000 bytes images_parse_import takes, on the heap */
        char name[IMAGE_NAME_MAX + 1], *path = malloc(4000), sum[DIGEST_HEX_LEN + 1];
        int r = path ? images_parse_import(body, len, name, path, sum, p)
                     : vms_problem(p, -ENOMEM, "internal", "out of memory");

        if (r < 0) {
                free(path);
                return r;
        }
        pthread_mutex_lock(&vh->ops_lock);
        r = images_import_locked(vh, name, path, sum, ret, p);
        pthread_mutex_unlock(&vh->ops_lock);
        images_pool_refresh(vh);
        if (r == 0) /* the digest covers the images: the next heartbeat carries it */
                inventory_refresh(vh);
        if (r == 0)
                log_info("image '%s' imported from '%s' (sha256 %s)", name, path, sum);
        else
                log_warn("image '%s' import from '%s' refused: %s", name, path, p->detail);
        free(path);
        return r;
}

int images_remove(struct vmhost *vh, const char *name, struct vm_problem *p)
{
        json_t *m, *f;
        const char *k;
        char *mp = NULL;
        int r = 0;

        pthread_mutex_lock(&vh->ops_lock);
        inventory_refresh(vh);
        m = ident_valid(IDENT_IMAGE, name) ? images_manifest_load(vh, name) : NULL;
        if (!m)
                r = vms_problem(p, -ENOENT, "not-found", "no image '%s'", name);
        else if (images_in_use(vh, name))
                r = vms_problem(p, -EBUSY, "image-in-use",
                                "image '%s' is the base of at least one VM and cannot be removed",
                                name);
        if (r == 0) {
                json_object_foreach(json_object_get(m, "files"), k, f)
                {
                        char *path = images_volume_path(
                            vh, "", json_string_value(json_object_get(f, "volume")) ?: ".none");

                        if (path)
                                unlink(path);
                        free(path);
                }
                mp = images_manifest_path(vh, name);
                if (mp)
                        unlink(mp);
        }
        pthread_mutex_unlock(&vh->ops_lock);
        images_pool_refresh(vh);
        json_decref(m);
        free(mp);
        if (r == 0)
                inventory_refresh(vh);
        if (r == 0)
                log_info("image '%s' removed", name);
        else
                log_warn("image '%s' not removed: %s", name, p->detail);
        return r;
}

/* Uploads (PUT /v1/images/{name}/upload, fleetd's push): the bytes go into a partial file keyed
 * by name and checksum under images/, which a later upload resumes at the offset it holds; once
 * every byte is there the file is hashed from disk, and only a match is linked into the pool as
 * the image's disk volume with its manifest. A name already held with other content is 409. */
static int images_upload_check(struct vmhost *vh, const char *name, const char *hex,
                               json_t **ret_existing, struct vm_problem *p)
{
        json_t *m;
        const char *have;

        *ret_existing = NULL;
        if (!ident_valid(IDENT_IMAGE, name))
                return vms_problem(p, -EINVAL, "bad-request",
                                   "image name '%.80s' must match ^[a-z0-9][a-z0-9._-]{0,62}$",
                                   name);
        if (!hex || !ident_hex_valid(hex, IMAGE_TRANSFER_HEX_LEN))
                return vms_problem(p, -EINVAL, "bad-request",
                                   "query 'sha256' must be 64 lowercase hex digits");
        m = images_manifest_load(vh, name);
        if (!m)
                return 0;
        have = json_string_value(json_object_get(m, "source_sha256")) ?: "";
        if (strcmp(have, hex) != 0) {
                vms_problem(p, -EEXIST, "image-exists",
                            "image '%s' exists with SHA-256 %s; this upload has SHA-256 %s; a "
                            "name is never reused for other content",
                            name, have, hex);
                json_decref(m);
                return -EEXIST;
        }
        *ret_existing = m;
        return 0;
}

int images_upload_status(struct vmhost *vh, const char *name, const char *hex, json_t **ret,
                         struct vm_problem *p)
{
        char *dir;
        json_t *m = NULL;
        int r = images_upload_check(vh, name, hex, &m, p);

        if (r < 0)
                return r;
        if (m) {
                json_int_t size = json_integer_value(
                    json_object_get(json_object_get(json_object_get(m, "files"), "disk"), "size"));

                *ret = json_pack("{s:s, s:s, s:I, s:b}", "name", name, "sha256", hex, "offset",
                                 size, "complete", 1);
                json_decref(m);
        } else {
                dir = small_file_path(vh->cfg.state_dir, "images");
                if (!dir)
                        return vms_problem(p, -ENOMEM, "internal", "out of memory");
                *ret = json_pack("{s:s, s:s, s:I, s:b}", "name", name, "sha256", hex, "offset",
                                 (json_int_t)image_partial_held(dir, name, hex), "complete", 0);
                free(dir);
        }
        return 0;
}

int images_upload_begin(struct vmhost *vh, const char *name, const char *hex, uint64_t size,
                        uint64_t offset, struct image_partial *part, json_t **ret_done,
                        struct vm_problem *p)
{
        char *dir;
        uint64_t held = 0;
        json_t *m = NULL;
        int r = images_upload_check(vh, name, hex, &m, p);

        part->fd = -1;
        *ret_done = m;
        if (r < 0 || m)
                return r;
        if (size == 0 || size > IMAGE_FILE_MAX)
                return vms_problem(p, -EFBIG, "image-too-large",
                                   "an image is 1..%llu bytes; this one says %llu",
                                   (unsigned long long)IMAGE_FILE_MAX, (unsigned long long)size);
        dir = small_file_path(vh->cfg.state_dir, "images");
        r = dir ? image_partial_open(part, dir, name, hex, size, offset, &held) : -ENOMEM;
        free(dir);
        if (r == -ERANGE)
                return vms_problem(p, -ERANGE, "offset-mismatch",
                                   "image '%s': this node holds %llu bytes of it, the upload "
                                   "starts at %llu",
                                   name, (unsigned long long)held, (unsigned long long)offset);
        if (r == -EBUSY)
                return vms_problem(p, -EBUSY, "upload-in-progress",
                                   "image '%s' is being uploaded by another connection", name);
        if (r < 0)
                return vms_problem(p, r == -EFBIG ? r : -EIO, "bad-request",
                                   "cannot take an upload of image '%s' at offset %llu: %s", name,
                                   (unsigned long long)offset, strerror(-r));
        return 0;
}

/* images_upload_adopt: the link into the pool, then the manifest. */
static int images_upload_link(struct vmhost *vh, const char *name, struct image_partial *part,
                              struct image_file *files, json_t **ret, struct vm_problem *p)
{
        char *dst;
        json_t *man;
        int r = 0;

        files[0].role = "disk";
        snprintf(files[0].src, sizeof(files[0].src), "upload");
        snprintf(files[0].want, sizeof(files[0].want), "%s", part->want);
        images_disk_format(part->path, files[0].format, sizeof(files[0].format));
        snprintf(files[0].volume, sizeof(files[0].volume), "%.63s.disk.%.7s", name,
                 files[0].format);
        if ((man = images_manifest_load(vh, name))) {
                json_decref(man);
                return vms_problem(p, -EEXIST, "image-exists", "image '%s' appeared meanwhile",
                                   name);
        }
        dst = images_volume_path(vh, "", files[0].volume);
        if (!dst)
                return vms_problem(p, -ENOMEM, "internal", "out of memory");
        if (link(part->path, dst) < 0) {
                r = vms_problem(p, -EEXIST, "image-exists", "volume '%s' exists: %s",
                                files[0].volume, strerror(errno));
                free(dst);
                return r;
        }
        files[0].size = part->size;
        man = images_manifest_new(name, "upload", part->want, "", files,
                                  images_virtual_size(vh, files[0].volume));
        if (!man || images_write_manifest(vh, name, man) < 0) {
                unlink(dst);
                json_decref(man);
                r = vms_problem(p, -EIO, "internal", "cannot write the manifest of '%s'", name);
        } else {
                *ret = man;
        }
        free(dst);
        return r;
}

/* Links the checked partial file into the pool and writes the manifest (under ops_lock); the
 * files' descriptions on the heap. */
static int images_upload_adopt(struct vmhost *vh, const char *name, struct image_partial *part,
                               json_t **ret, struct vm_problem *p)
{
        struct image_file *files = calloc(3, sizeof(*files));
        int r = files ? images_upload_link(vh, name, part, files, ret, p)
                      : vms_problem(p, -ENOMEM, "internal", "out of memory");

        free(files);
        return r;
}

int images_upload_complete(struct vmhost *vh, const char *name, struct image_partial *part,
                           json_t **ret, struct vm_problem *p)
{
        char got[IMAGE_TRANSFER_HEX_LEN + 1] = "";
        int r = image_partial_finish(part, got);

        if (r == -EBADMSG) {
                log_warn("image '%s' upload refused: its %llu bytes have SHA-256 %s, expected %s",
                         name, (unsigned long long)part->size, got, part->want);
                return vms_problem(p, -EBADMSG, "checksum-mismatch",
                                   "image '%s': the %llu bytes received have SHA-256 %s, "
                                   "expected %s; refused, nothing kept",
                                   name, (unsigned long long)part->size, got, part->want);
        }
        if (r < 0)
                return vms_problem(p, -EIO, "internal", "cannot check image '%s': %s", name,
                                   strerror(-r));
        pthread_mutex_lock(&vh->ops_lock);
        r = images_upload_adopt(vh, name, part, ret, p);
        pthread_mutex_unlock(&vh->ops_lock);
        image_partial_discard(part);
        images_pool_refresh(vh);
        if (r == 0) {
                inventory_refresh(vh);
                log_info("image '%s' uploaded (%llu bytes, sha256 %s)", name,
                         (unsigned long long)part->size, part->want);
        }
        return r;
}
