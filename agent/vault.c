/* The vault on disk: the three-directory skeleton (app-console-input/, assets/, ledger/), the
 * agent's state directory (.totebox-agent/: the Ed25519 key seed, the public key, vault.json and
 * the last signed tree head), file flags (FS_IMMUTABLE_FL, FS_APPEND_FL) and opening the ledger
 * for appending. Read-only mode (the offline verifier) creates and writes nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/clock.h"
#include "common/json_input.h"

#define VAULT_INBOX  "app-console-input"
#define VAULT_ASSETS "assets"
#define VAULT_LEDGER "ledger"

int vault_get_flags(int fd, int *ret_flags)
{
        int flags = 0;

        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
                return -errno;
        *ret_flags = flags;
        return 0;
}

int vault_set_flag(int fd, int flag)
{
        int flags = 0;

        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
                return -errno;
        flags |= flag;
        if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
                return -errno;
        return 0;
}

static int vault_subdir(int parent, const char *name, bool create, int *ret_fd)
{
        int fd;

        if (create && mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int vault_write_state(int state_fd, const char *name, const void *data, size_t len, mode_t mode)
{
        char tmp[64];
        int fd, r = 0;

        snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
        /* whatever is left under the temporary name (a FIFO would block the open) goes first */
        if (unlinkat(state_fd, tmp, 0) < 0 && errno != ENOENT)
                return -errno;
        fd = openat(state_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
                r = errno ? -errno : -EIO;
        close(fd);
        agent_fault_point("state-tmp");
        if (r == 0 && renameat(state_fd, tmp, state_fd, name) < 0)
                r = -errno;
        if (r == 0 && fsync(state_fd) < 0)
                r = -errno;
        return r;
}

int vault_open_regular(int dir_fd, const char *name, int flags)
{
        struct stat st;
        int fd = openat(dir_fd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0)
                return errno == ELOOP || errno == ENXIO ? -AGENT_ENOTREG : -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return -AGENT_ENOTREG;
        }
        return fd;
}

const char *agent_strerror(int r)
{
        return r == -AGENT_ENOTREG ? "not a regular file" : strerror(-r);
}

static ssize_t vault_read_small(int dir_fd, const char *name, char *buf, size_t size)
{
        int fd = vault_open_regular(dir_fd, name, O_RDONLY);
        ssize_t n;

        if (fd < 0)
                return fd;
        n = read(fd, buf, size - 1);
        if (n < 0)
                n = -errno;
        else
                buf[n] = '\0';
        close(fd);
        return n;
}

static int vault_key_create(struct vault *v, const char *path)
{
        uint8_t seed[crypto_sign_SEEDBYTES];
        int fd, r = 0;

        randombytes_buf(seed, sizeof(seed));
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (write(fd, seed, sizeof(seed)) != (ssize_t)sizeof(seed) || fsync(fd) < 0)
                r = errno ? -errno : -EIO;
        close(fd);
        if (r == 0)
                crypto_sign_seed_keypair(v->pk, v->sk, seed);
        sodium_memzero(seed, sizeof(seed));
        return r;
}

static int vault_key_load(struct vault *v, const char *path, char *err, size_t errlen)
{
        uint8_t seed[crypto_sign_SEEDBYTES + 1];
        struct stat st;
        ssize_t n;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
            st.st_uid != geteuid()) {
                snprintf(err, errlen,
                         "key file '%s' must be a regular file of ours with mode 0600; refused",
                         path);
                r = -EPERM;
                goto cleanup;
        }
        n = read(fd, seed, sizeof(seed));
        if (n != crypto_sign_SEEDBYTES) {
                snprintf(err, errlen, "key file '%s' does not hold a %d-byte seed", path,
                         crypto_sign_SEEDBYTES);
                r = -EINVAL;
                goto cleanup;
        }
        crypto_sign_seed_keypair(v->pk, v->sk, seed);
cleanup:
        sodium_memzero(seed, sizeof(seed));
        close(fd);
        return r;
}

static int vault_pub_store(struct vault *v)
{
        char b64[sodium_base64_ENCODED_LEN(STH_PUBLIC_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
        char line[sizeof(b64) + 1];

        sodium_bin2base64(b64, sizeof(b64), v->pk, STH_PUBLIC_KEY_LEN,
                          sodium_base64_VARIANT_ORIGINAL);
        snprintf(line, sizeof(line), "%s\n", b64);
        return vault_write_state(v->state_fd, "vault.pub", line, strlen(line), 0644);
}

static int vault_pub_load(struct vault *v)
{
        char buf[128];
        size_t len = 0;
        ssize_t n = vault_read_small(v->state_fd, "vault.pub", buf, sizeof(buf));

        if (n < 0)
                return (int)n;
        if (sodium_base642bin(v->pk, sizeof(v->pk), buf, (size_t)n, "\n", &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            len != STH_PUBLIC_KEY_LEN)
                return -EINVAL;
        return 0;
}

static int vault_keys(struct vault *v, const char *key_file, char *err, size_t errlen)
{
        char *path = NULL;
        int r;

        if (v->read_only) {
                v->have_key = vault_pub_load(v) == 0;
                return 0;
        }
        r = key_file && key_file[0] ? asprintf(&path, "%s", key_file)
                                    : asprintf(&path, "%s/" AGENT_STATE_DIR "/vault.key", v->dir);
        if (r < 0) {
                snprintf(err, errlen, "vault key: %s", strerror(ENOMEM));
                return -ENOMEM;
        }
        r = vault_key_load(v, path, err, errlen);
        if (r == -ENOENT)
                r = vault_key_create(v, path);
        if (r < 0) {
                if (!err[0])
                        snprintf(err, errlen, "vault key '%s': %s", path, strerror(-r));
                goto cleanup;
        }
        v->have_key = true;
        r = vault_pub_store(v);
cleanup:
        free(path);
        return r;
}

int sth_to_json_fields(const struct sth *s, char *root_hex, char *sig_b64)
{
        sodium_bin2hex(root_hex, 2 * MERKLE_HASH_LEN + 1, s->root, MERKLE_HASH_LEN);
        sodium_bin2base64(
            sig_b64, sodium_base64_ENCODED_LEN(STH_SIGNATURE_LEN, sodium_base64_VARIANT_ORIGINAL),
            s->signature, STH_SIGNATURE_LEN, sodium_base64_VARIANT_ORIGINAL);
        return 0;
}

int vault_sth_format(const struct sth *s, char *buf, size_t size)
{
        char root[65], sig[96];
        int n;

        sth_to_json_fields(s, root, sig);
        n = snprintf(buf, size,
                     "{\"size\":%" PRIu64 ",\"root\":\"%s\",\"time_ms\":%" PRIu64
                     ",\"signature\":\"%s\"}\n",
                     s->size, root, s->time_ms, sig);
        return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}

static int vault_sth_store(struct vault *v, const struct sth *s)
{
        char buf[512];
        int n = vault_sth_format(s, buf, sizeof(buf));

        if (n < 0)
                return n;
        return vault_write_state(v->state_fd, "sth.json", buf, (size_t)n, 0644);
}

int vault_sth_parse(const char *buf, size_t n, struct sth *ret)
{
        static const char *const keys[] = {"size", "root", "time_ms", "signature", NULL};
        struct json_input_error jerr;
        const char *root = NULL, *sig = NULL;
        struct sth s;
        size_t len = 0;
        json_t *o;
        int r = -EINVAL;

        memset(&s, 0, sizeof(s));
        o = json_input_parse(buf, n, 1023, 2, &jerr);
        if (!o || !json_is_object(o) || json_input_check_keys(o, keys, &jerr) < 0 ||
            json_input_get_uint(o, "size", true, 0, INT64_MAX, &s.size, &jerr) < 0 ||
            json_input_get_uint(o, "time_ms", true, 0, INT64_MAX, &s.time_ms, &jerr) < 0 ||
            json_input_get_string(o, "root", true, 64, &root, &jerr) < 0 ||
            json_input_get_string(o, "signature", true, 88, &sig, &jerr) < 0)
                goto cleanup;
        if (strlen(root) != 2 * MERKLE_HASH_LEN ||
            sodium_hex2bin(s.root, MERKLE_HASH_LEN, root, strlen(root), NULL, &len, NULL) != 0 ||
            len != MERKLE_HASH_LEN)
                goto cleanup;
        if (sodium_base642bin(s.signature, STH_SIGNATURE_LEN, sig, strlen(sig), NULL, &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            len != STH_SIGNATURE_LEN)
                goto cleanup;
        *ret = s;
        r = 0;
cleanup:
        json_decref(o);
        return r;
}

int vault_sth_load(int state_fd, struct sth *s)
{
        char buf[1024];
        ssize_t n = vault_read_small(state_fd, "sth.json", buf, sizeof(buf));

        if (n < 0)
                return (int)n;
        return vault_sth_parse(buf, (size_t)n, s);
}

static void vault_meta_store(struct vault *v)
{
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "{\"v\":1,\"ledger_append_only\":%s}\n",
                         v->ledger_append_only ? "true" : "false");

        vault_write_state(v->state_fd, "vault.json", buf, (size_t)n, 0644);
}

/* Creates an empty ledger (first start) and makes it append-only where the file system lets us. */
static int vault_ledger_create(struct vault *v)
{
        int fd = openat(v->ledger_dir_fd, LEDGER_FILE,
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);

        if (fd < 0)
                return -errno;
        fsync(fd);
        v->ledger_append_only = vault_set_flag(fd, FS_APPEND_FL) == 0;
        close(fd);
        fsync(v->ledger_dir_fd);
        vault_meta_store(v);
        return 0;
}

static bool vault_dir_empty(int dir_fd)
{
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        bool empty = true;

        if (!d) {
                if (fd >= 0)
                        close(fd);
                return true;
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        empty = false;
        closedir(d);
        return empty;
}

/* Read-only mode: only whether the ledger can be read at all; a FIFO or a device is left for
 * verification to name (it is a mismatch, not an unreadable vault). */
static int vault_ledger_readable(const char *path)
{
        int fd = vault_open_regular(AT_FDCWD, path, O_RDONLY);

        if (fd == -AGENT_ENOTREG)
                return 0;
        if (fd < 0)
                return fd;
        close(fd);
        return 0;
}

/* Writable mode: the O_APPEND writer, and FS_APPEND_FL set again where allowed (best effort,
 * idempotent), so an agent that can make assets immutable has an append-only ledger too. */
static int vault_ledger_writer(struct vault *v)
{
        int fd = vault_open_regular(v->ledger_dir_fd, LEDGER_FILE, O_WRONLY | O_APPEND), flags = 0;

        if (fd < 0)
                return fd;
        if (vault_get_flags(fd, &flags) == 0 && !(flags & FS_APPEND_FL))
                vault_set_flag(fd, FS_APPEND_FL);
        v->ledger_append_only = vault_get_flags(fd, &flags) == 0 && (flags & FS_APPEND_FL);
        v->ledger_fd = fd;
        return 0;
}

static int vault_ledger_open(struct vault *v, struct mismatch_list *mm, char *err, size_t errlen)
{
        char *path = NULL;
        int r;

        if (asprintf(&path, "%s/" VAULT_LEDGER "/" LEDGER_FILE, v->dir) < 0) {
                snprintf(err, errlen, "cannot read the ledger: %s", strerror(ENOMEM));
                return -ENOMEM;
        }
        /* the daemon keeps leaves up to one seal (SEAL_BATCH_MAX lines) past a head that
         * verifies: nothing after that can ever be signed or proven (vault_check_head refuses
         * it) */
        if (v->have_sth)
                v->ledger.keep_max = v->have_key && sth_verify(&v->last_sth, v->pk) == 0
                                         ? v->last_sth.size + SEAL_BATCH_MAX
                                         : 0;
        else
                v->ledger.keep_max = SEAL_BATCH_MAX;
        /* read-only (the offline verifier): verify_vault reads the ledger once, itself */
        r = v->read_only ? vault_ledger_readable(path) : ledger_load(&v->ledger, path, mm);
        v->ledger.keep_max = UINT64_MAX; /* own appends are kept while nothing was dropped */
        if (r == -ENOENT) {
                bool fresh = vault_dir_empty(v->assets_fd) && (!v->have_sth || !v->last_sth.size);

                if (v->read_only || !fresh) {
                        mismatch_add(mm, "ledger-deleted", "ledger/" LEDGER_FILE,
                                     "the ledger file is missing");
                        r = 0;
                        goto cleanup;
                }
                r = vault_ledger_create(v);
                if (r == 0)
                        v->ledger.exists = true;
        }
        if (r < 0) {
                snprintf(err, errlen, "cannot read the ledger '%s': %s", path, agent_strerror(r));
                goto cleanup;
        }
        if (!v->read_only) {
                r = vault_ledger_writer(v);
                if (r < 0) {
                        snprintf(err, errlen, "cannot open the ledger '%s' for appending: %s", path,
                                 agent_strerror(r));
                        goto cleanup;
                }
                vault_check_head(v);
        }
cleanup:
        free(path);
        return r;
}

static int vault_layout(struct vault *v, char *err, size_t errlen)
{
        bool create = !v->read_only;
        int r;

        if (create && mkdir(v->dir, 0755) < 0 && errno != EEXIST)
                goto fail;
        v->dir_fd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (v->dir_fd < 0)
                goto fail;
        if ((r = vault_subdir(v->dir_fd, VAULT_ASSETS, create, &v->assets_fd)) < 0 ||
            (r = vault_subdir(v->dir_fd, VAULT_LEDGER, create, &v->ledger_dir_fd)) < 0) {
                errno = -r;
                goto fail;
        }
        if (create && mkdirat(v->dir_fd, AGENT_STATE_DIR, 0700) < 0 && errno != EEXIST)
                goto fail;
        v->state_fd =
            openat(v->dir_fd, AGENT_STATE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (v->state_fd < 0 && (create || errno != ENOENT))
                goto fail;
        r = vault_subdir(v->dir_fd, VAULT_INBOX, create, &v->inbox_fd);
        if (r < 0 && create) {
                errno = -r;
                goto fail;
        }
        /* the skeleton must survive a power cut right after the first start: the new
         * directory entries are durable only once the vault directory itself is synced */
        if (create && fsync(v->dir_fd) < 0)
                goto fail;
        return 0;
fail:
        r = -errno;
        snprintf(err, errlen,
                 "vault '%s' has no readable layout (app-console-input/, assets/, "
                 "ledger/): %s",
                 v->dir, strerror(errno));
        return r;
}

/* Everything in a vault belongs to the agent: the owner of its state directory (or, on a copy
 * without one, of the vault directory). Sealing gives each asset to it. */
static void vault_owner(struct vault *v)
{
        struct stat st;

        if (fstat(v->state_fd >= 0 ? v->state_fd : v->dir_fd, &st) == 0) {
                v->owner_uid = st.st_uid;
                v->owner_gid = st.st_gid;
        }
}

int vault_open(struct vault *v, const char *dir, const char *key_file, bool read_only,
               struct mismatch_list *mm, char *err, size_t errlen)
{
        int r;

        memset(v, 0, sizeof(*v));
        v->dir_fd = v->inbox_fd = v->assets_fd = v->ledger_dir_fd = v->state_fd = -1;
        v->ledger_fd = -1;
        v->read_only = read_only;
        v->seal_batch = SEAL_BATCH_MAX;
        ledger_init(&v->ledger);
        v->ledger.seq_only = !read_only; /* the daemon re-reads entries when it verifies */
        err[0] = '\0';
        snprintf(v->dir, sizeof(v->dir), "%s", dir);
        r = vault_layout(v, err, errlen);
        if (r < 0)
                return r;
        vault_owner(v);
        if (v->state_fd >= 0) {
                v->have_sth = vault_sth_load(v->state_fd, &v->last_sth) == 0;
                if (!v->have_sth && faccessat(v->state_fd, "sth.json", F_OK, 0) == 0)
                        mismatch_add(mm, "forged-tree-head", AGENT_STATE_DIR "/sth.json",
                                     "the stored signed tree head is not readable");
                r = vault_keys(v, key_file, err, errlen);
                if (r < 0)
                        return r;
        }
        r = vault_ledger_open(v, mm, err, errlen);
        /* Everything the first start made (skeleton, keys, ledger) is synced file by file, but on
         * a file system without a journal (ext2) the new inodes' allocation bitmaps only reach
         * the disk with the file system: without this a power cut leaves entries naming inodes
         * the disk calls free, which fsck drops and the next allocation reuses. Once per start. */
        if (r == 0 && !read_only && syncfs(v->dir_fd) < 0)
                r = -errno;
        return r;
}

void vault_close(struct vault *v)
{
        int *fds[] = {&v->dir_fd,        &v->inbox_fd, &v->assets_fd,
                      &v->ledger_dir_fd, &v->state_fd, &v->ledger_fd};

        if (!v)
                return;
        for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
                if (*fds[i] >= 0)
                        close(*fds[i]);
                *fds[i] = -1;
        }
        sodium_memzero(v->sk, sizeof(v->sk));
        ledger_done(&v->ledger);
}

int vault_sign_sth(struct vault *v, uint64_t time_ms, bool store, struct sth *ret)
{
        struct sth s;
        int r = 0;

        if (!v->have_key || v->read_only)
                return -ENOKEY;
        if (store && !v->head_ok)
                return -ENOTRECOVERABLE;
        memset(&s, 0, sizeof(s));
        s.size = v->ledger.n;
        ledger_root(&v->ledger, s.size, s.root);
        s.time_ms = time_ms;
        sth_sign(&s, v->sk);
        if (store) {
                r = vault_sth_store(v, &s);
                if (r == 0) {
                        v->last_sth = s;
                        v->have_sth = true;
                }
        }
        *ret = s;
        return r;
}

int vault_report_sth(struct vault *v, uint64_t time_ms, struct sth *ret)
{
        struct sth s;

        if (v->head_ok)
                return vault_sign_sth(v, time_ms, true, ret);
        if (v->have_sth && v->have_key && sth_verify(&v->last_sth, v->pk) == 0) {
                *ret = v->last_sth;
                return 0;
        }
        if (!v->have_key)
                return -ENOKEY;
        memset(&s, 0, sizeof(s));
        merkle_root(NULL, 0, s.root);
        s.time_ms = time_ms;
        sth_sign(&s, v->sk);
        *ret = s;
        return 0;
}

static void vault_head_refuse(struct vault *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void vault_head_refuse(struct vault *v, const char *fmt, ...)
{
        va_list ap;

        v->head_ok = false;
        va_start(ap, fmt);
        vsnprintf(v->head_why, sizeof(v->head_why), fmt, ap);
        va_end(ap);
}

void vault_check_head(struct vault *v)
{
        const struct sth *h = &v->last_sth;
        uint64_t size = 0;
        merkle_hash root;

        v->head_ok = true;
        v->head_past = 0;
        v->head_why[0] = '\0';
        if (v->have_sth) {
                if (!v->have_key || sth_verify(h, v->pk) < 0)
                        return vault_head_refuse(v, "the stored head's signature is not the "
                                                    "vault key's");
                size = h->size;
        } else if (faccessat(v->state_fd, "sth.json", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
                return vault_head_refuse(v, "the stored head is not readable");
        }
        if (v->ledger.n < size)
                return vault_head_refuse(v,
                                         "the ledger holds %zu entries but the head covers "
                                         "%" PRIu64,
                                         v->ledger.n, size);
        if (ledger_root(&v->ledger, size, root) < 0 ||
            (v->have_sth && sodium_memcmp(root, h->root, MERKLE_HASH_LEN) != 0))
                return vault_head_refuse(v, "the first %" PRIu64 " entries differ from the head",
                                         size);
        if (v->ledger.n == size)
                return;
        v->head_past = v->ledger.n - size;
        vault_head_refuse(v, "%" PRIu64 " entries past the head were not appended by the agent",
                          v->ledger.n - size);
}
