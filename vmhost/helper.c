/* vmhost's privileged helper (vmhost/helper.h): the messages, the helper's WireGuard side and
 * vmhost's calls to it. The helper is forked and executed (vmhost-helper, helper_main.c) before
 * vmhost starts any thread, keeps only its ends of the two socketpairs and stderr, and serves one
 * request at a time until vmhost closes its end or dies (PR_SET_PDEATHSIG). */
#include "vmhost/helper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/log.h"
#include "common/mesh.h"
#include "common/small_file.h"
#include "vmhost/vmhost.h"

#define VMH_CALL_TIMEOUT_MS 10000

#define VMH_FIXED(t, s, n)                                                                         \
        {                                                                                          \
                t, sizeof(s), sizeof(s), n                                                         \
        }

static const struct imsg_type vmh_types[] = {
    VMH_FIXED(VMH_APPLY_PEERS, struct vmh_apply_peers, "apply-peers"),
    VMH_FIXED(VMH_APPLIED, struct vmh_result, "applied"),
    VMH_FIXED(VMH_WG_KEY, struct vmh_wg_key_req, "wg-key"),
    VMH_FIXED(VMH_WG_KEY_IS, struct vmh_wg_key, "wg-key-is"),
    VMH_FIXED(VMH_CONFIG, struct vmh_config, "config"),
    VMH_FIXED(VMH_LIST, struct vmh_list_req, "list"),
    VMH_FIXED(VMH_LOOKUP, struct vmh_name, "lookup"),
    VMH_FIXED(VMH_MAKE_DISKS, struct vmh_disks_req, "make-disks"),
    VMH_FIXED(VMH_DEFINE, struct vmh_define, "define"),
    VMH_FIXED(VMH_START, struct vmh_name, "start"),
    VMH_FIXED(VMH_RESUME, struct vmh_name, "resume"),
    VMH_FIXED(VMH_MANAGED_SAVE, struct vmh_name, "managed-save"),
    VMH_FIXED(VMH_SHUTDOWN, struct vmh_name, "shutdown"),
    VMH_FIXED(VMH_DESTROY, struct vmh_name, "destroy"),
    VMH_FIXED(VMH_SET_META, struct vmh_set_meta, "set-meta"),
    VMH_FIXED(VMH_POOL_REFRESH, struct vmh_list_req, "pool-refresh"),
    VMH_FIXED(VMH_DOMAIN, struct vmh_domain, "domain"),
    VMH_FIXED(VMH_LIST_END, struct vmh_result, "list-end"),
    VMH_FIXED(VMH_DONE, struct vmh_done, "done"),
    VMH_FIXED(VMH_EVENT, struct vmh_event, "event"),
    VMH_FIXED(VMH_FILE, struct vmh_file, "file"),
    VMH_FIXED(VMH_FILE_IS, struct vmh_result, "file-is"),
};

const struct imsg_proto vmh_proto = {
    .name = "vmhost helper",
    .version = VMH_VERSION,
    .types = vmh_types,
    .n_types = sizeof(vmh_types) / sizeof(vmh_types[0]),
};

#define VMH_STR_OK(f) imsg_string_ok((f), sizeof(f))

static bool vmh_name_ok(const char *name, size_t size)
{
        return imsg_string_ok(name, size) && ident_valid(IDENT_VM, name);
}

/* A byte of a received struct that is a bool: 0 or 1, read as a byte (another value would be
 * undefined as a bool). */
static bool vmh_bool_ok(const void *field)
{
        uint8_t b;

        memcpy(&b, field, 1);
        return b <= 1;
}

bool vmh_vm_meta_ok(const struct vm_meta *m)
{
        const struct pin *p = &m->pin;
        int lc;

        memcpy(&lc, &m->lifecycle, sizeof(lc));
        /* retired is fleetd's word, never a node's (as vm_meta_parse) */
        if (lc < VM_LC_ACTIVE || lc > VM_LC_ARCHIVED || !vmh_bool_ok(&m->has_vault_key) ||
            !vmh_bool_ok(&m->has_sth) || !vmh_bool_ok(&m->has_pin) || !vmh_bool_ok(&m->pin_bad) ||
            !vmh_bool_ok(&p->signed_))
                return false;
        if (!VMH_STR_OK(m->fleet_id) || !VMH_STR_OK(m->node_id) || !VMH_STR_OK(m->entity) ||
            !VMH_STR_OK(m->request_id) || !VMH_STR_OK(m->image) || !VMH_STR_OK(m->vault_id) ||
            !VMH_STR_OK(p->fleet_id) || !VMH_STR_OK(p->vm_id) || !VMH_STR_OK(p->node_id) ||
            !VMH_STR_OK(p->node_wg_key) || !VMH_STR_OK(p->entity) || !VMH_STR_OK(p->image) ||
            !VMH_STR_OK(p->request_id))
                return false;
        return ident_valid(IDENT_NODE, m->node_id) && ident_valid(IDENT_NODE, m->fleet_id) &&
               ident_valid(IDENT_ENTITY, m->entity);
}

static bool vmh_image_ok(const struct vmh_image *i)
{
        return VMH_STR_OK(i->disk_path) && VMH_STR_OK(i->kernel_path) &&
               VMH_STR_OK(i->initrd_path) && VMH_STR_OK(i->cmdline) && i->disk_path[0];
}

static bool vmh_config_ok(const struct vmhost_config *c)
{
        return VMH_STR_OK(c->node_id) && VMH_STR_OK(c->fleet_id) && VMH_STR_OK(c->libvirt_uri) &&
               VMH_STR_OK(c->virt_type) && VMH_STR_OK(c->state_dir) &&
               VMH_STR_OK(c->wg_interface) && VMH_STR_OK(c->mesh_state_dir) &&
               VMH_STR_OK(c->genesis_public_key) && VMH_STR_OK(c->log_level);
}

static bool vmh_domain_ok(const struct vmh_domain *d)
{
        static const char *const states[] = {"running", "paused", "crashed", "saved", "shutoff"};
        bool state = false;

        if (d->result > 0)
                return false;
        if (d->result < 0)
                return true;
        if ((d->flags & VMH_DOM_META) && !vmh_vm_meta_ok(&d->meta))
                return false;
        if (!VMH_STR_OK(d->state) || !VMH_STR_OK(d->uuid) ||
            !vmh_name_ok(d->name, sizeof(d->name)) ||
            (d->flags & ~(VMH_DOM_ACTIVE | VMH_DOM_META | VMH_DOM_SETTLING)))
                return false;
        for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
                state = state || strcmp(d->state, states[i]) == 0;
        return state;
}

/* The fields of one message, beyond its framing. */
static bool vmh_fields_ok(uint16_t type, const union vmh_msg *m)
{
        uint8_t k[WG_KEY_LEN];

        switch ((enum vmh_type)type) {
        case VMH_APPLY_PEERS:
                return m->apply_peers.version != 0;
        case VMH_APPLIED:
        case VMH_LIST_END:
        case VMH_FILE_IS:
                return m->result.result <= 0;
        case VMH_FILE:
                return m->file.op >= VMH_FILE_CHANNEL && m->file.op < VMH_FILE_OP_COUNT &&
                       vmh_name_ok(m->file.name, sizeof(m->file.name));
        case VMH_WG_KEY:
                return m->wg_key_req.reserved == 0;
        case VMH_WG_KEY_IS:
                return m->wg_key.result < 0 ||
                       (m->wg_key.result == 0 && VMH_STR_OK(m->wg_key.key) &&
                        wg_key_from_base64(k, m->wg_key.key) == 0);
        case VMH_CONFIG:
                return vmh_config_ok(&m->config.cfg);
        case VMH_LIST:
                return (m->list_req.flags & ~VMH_LIST_CONTROL) == 0;
        case VMH_POOL_REFRESH:
                return m->list_req.flags == 0;
        case VMH_LOOKUP:
        case VMH_START:
        case VMH_RESUME:
        case VMH_MANAGED_SAVE:
        case VMH_SHUTDOWN:
        case VMH_DESTROY:
                return vmh_name_ok(m->name.name, sizeof(m->name.name));
        case VMH_MAKE_DISKS:
                return vmh_name_ok(m->disks.name, sizeof(m->disks.name)) &&
                       m->disks.vault_mib >= 16 && m->disks.vault_mib <= 16777216 &&
                       vmh_image_ok(&m->disks.image) && vmh_vm_meta_ok(&m->disks.meta);
        case VMH_DEFINE:
                return vmh_name_ok(m->define.name, sizeof(m->define.name)) &&
                       m->define.memory_mib >= 64 && m->define.memory_mib <= 1048576 &&
                       m->define.vcpus >= 1 && m->define.vcpus <= 64 &&
                       vmh_vm_meta_ok(&m->define.meta) && vmh_image_ok(&m->define.image);
        case VMH_SET_META:
                return vmh_name_ok(m->set_meta.name, sizeof(m->set_meta.name)) &&
                       vmh_vm_meta_ok(&m->set_meta.meta);
        case VMH_DOMAIN:
                return vmh_domain_ok(&m->domain);
        case VMH_DONE:
                return m->done.result <= 0 && VMH_STR_OK(m->done.detail);
        case VMH_EVENT:
                return vmh_name_ok(m->event.name, sizeof(m->event.name)) && m->event.event >= 0 &&
                       m->event.event < VMH_EV_COUNT;
        }
        return false;
}

int vmh_decode(const void *buf, size_t n, uint16_t *ret_type, union vmh_msg *ret, char *err,
               size_t errsize)
{
        const void *p;
        struct imsg_hdr h;
        int r = imsg_check(&vmh_proto, buf, n, &h, &p, err, errsize);

        if (r < 0)
                return r;
        /* the payload has exactly its struct's size (the table): no zeroing of the rest */
        memcpy(ret, p, h.len);
        if (!vmh_fields_ok(h.type, ret)) {
                snprintf(err, errsize, "%s message '%s': a field is out of range", vmh_proto.name,
                         imsg_type_find(&vmh_proto, h.type)->name);
                return -EBADMSG;
        }
        *ret_type = h.type;
        return 0;
}

int vmh_check_image(const struct vmhost_config *cfg, const struct vmh_image *img)
{
        const char *const paths[] = {img->disk_path, img->kernel_path, img->initrd_path};
        size_t n = strlen(cfg->state_dir);

        for (size_t i = 0; i < 3; i++) {
                const char *p = paths[i], *rest = p + n + sizeof("/images/") - 1;

                if (i > 0 && !p[0])
                        continue;
                /* state_dir/images/VOLUME: one name, no way out of the store */
                if (strncmp(p, cfg->state_dir, n) != 0 || strncmp(p + n, "/images/", 8) != 0 ||
                    !rest[0] || strchr(rest, '/') || strcmp(rest, "..") == 0 ||
                    strcmp(rest, ".") == 0)
                        return -EPERM;
        }
        return 0;
}

int vmh_image_files_real(const struct vmh_image *img)
{
        const char *const paths[] = {img->disk_path, img->kernel_path, img->initrd_path};
        struct stat st;

        /* images/ is vmhost's user's: a link there could name any file of root's to QEMU (and
         * to libvirt's relabelling); checked again at each use, so what is left is the window
         * between this lstat and libvirt's open */
        for (size_t i = 0; i < 3; i++)
                if (paths[i][0] && (lstat(paths[i], &st) < 0 || !S_ISREG(st.st_mode)))
                        return -EPERM;
        return 0;
}

/* --- the helper --- */

static int vmh_on_apply(struct vmh_helper *h, const struct vmh_apply_peers *a)
{
        const struct vmhost_config *cfg = &h->vh->cfg;
        char *path = NULL, err[256];
        struct roster *r;
        int ret;

        if (!cfg->wg_interface[0] && !cfg->mesh_state_dir[0])
                return 0;
        if (!h->have_genesis)
                return -ENOKEY;
        if (a->version < h->applied_version)
                return -ESTALE;
        if (asprintf(&path, "%s/roster.json", cfg->state_dir) < 0)
                return -ENOMEM;
        r = roster_load_file(path, err, sizeof(err));
        free(path);
        if (!r)
                return -ENOENT;
        if (r->version != a->version)
                ret = -ESTALE;
        else if (roster_verify(r, h->genesis_pk) < 0)
                ret = -EBADMSG;
        else
                ret = cfg->wg_interface[0] ? mesh_apply_roster(cfg->wg_interface, r, cfg->node_id)
                                           : 0;
        /* the mesh tool's copy too (root's directory), so that 'totebox-pair up' restores this
         * version */
        if (ret == 0 && cfg->mesh_state_dir[0] && mesh_roster_store(cfg->mesh_state_dir, r) < 0)
                log_warn("helper: roster version %llu not written to the mesh state '%s'",
                         (unsigned long long)r->version, cfg->mesh_state_dir);
        if (ret == 0)
                h->applied_version = r->version;
        roster_free(r);
        return ret;
}

/* state_dir/sub, opened without following a link and only when the helper's user owns it: the
 * state directory itself is vmhost's user's, which may put anything in it but cannot make a
 * directory of root's. */
static int vmh_dir_open(const struct vmhost_config *cfg, const char *sub)
{
        char *path = small_file_path(cfg->state_dir, sub); /* on the heap */
        struct stat st;
        int fd = -ENOMEM;

        if (path && strlen(path) >= PATH_MAX)
                fd = -ENAMETOOLONG; /* as with the PATH_MAX buffer this replaced */
        else if (path && (fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
                fd = -errno;
        free(path);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

/* A connected socket to QEMU's end of the agent channel, through the pinned directory. */
static int vmh_channel_connect(int dfd, const char *name)
{
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

        if (snprintf(path, sizeof(path), "/proc/self/fd/%d/%s.sock", dfd, name) >=
            (int)sizeof(path))
                return -ENAMETOOLONG;
        return daemon_unix_connect(path, SOCK_NONBLOCK);
}

static int vmh_vault_open(int dfd, const char *name, bool create)
{
        char disk[IDENT_VM_MAX + 32], tmp[IDENT_VM_MAX + 40];
        struct stat st;
        int fd;

        snprintf(disk, sizeof(disk), "%s-vault.img", name);
        snprintf(tmp, sizeof(tmp), "%s.import", disk);
        if (!create) {
                fd = openat(dfd, disk, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
                        close(fd);
                        return -EINVAL;
                }
                return fd < 0 ? -errno : fd;
        }
        if (faccessat(dfd, disk, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                return -EEXIST;
        unlinkat(dfd, tmp, 0); /* a copy an earlier attempt left: never a disk in use */
        fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        return fd < 0 ? -errno : fd;
}

int vmh_file_do(const struct vmhost_config *cfg, const struct vmh_file *f, int *ret_fd)
{
        char disk[IDENT_VM_MAX + 32], tmp[IDENT_VM_MAX + 40];
        int dfd = vmh_dir_open(cfg, f->op == VMH_FILE_CHANNEL ? "channels" : "vms"), r;

        *ret_fd = -1;
        if (dfd < 0)
                return dfd;
        snprintf(disk, sizeof(disk), "%s-vault.img", f->name);
        snprintf(tmp, sizeof(tmp), "%s.import", disk);
        switch ((enum vmh_file_op)f->op) {
        case VMH_FILE_CHANNEL:
                r = vmh_channel_connect(dfd, f->name);
                break;
        case VMH_FILE_VAULT:
        case VMH_FILE_VAULT_NEW:
                r = vmh_vault_open(dfd, f->name, f->op == VMH_FILE_VAULT_NEW);
                break;
        case VMH_FILE_VAULT_COMMIT:
                r = renameat2(dfd, tmp, dfd, disk, RENAME_NOREPLACE) < 0 ? -errno : 0;
                break;
        case VMH_FILE_VAULT_DROP:
                r = unlinkat(dfd, tmp, 0) < 0 && errno != ENOENT ? -errno : 0;
                break;
        case VMH_FILE_OP_COUNT:
        default:
                r = -EINVAL;
                break;
        }
        close(dfd);
        if (r > 0) {
                *ret_fd = r;
                r = 0;
        }
        return r;
}

static int vmh_on_file(int fd, const struct vmh_file *f, const struct vmhost_config *cfg)
{
        struct vmh_result res = {0};
        int got = -1, r;

        res.result = vmh_file_do(cfg, f, &got);
        if (res.result < 0 && res.result != -ENOENT && res.result != -ECONNREFUSED)
                log_warn("helper: file '%s' of VM '%s' refused: %s",
                         f->op == VMH_FILE_CHANNEL ? "channel" : "vault", f->name,
                         strerror(-res.result));
        r = imsg_send_fd(fd, &vmh_proto, VMH_FILE_IS, &res, sizeof(res), got);
        if (got >= 0)
                close(got);
        return r;
}

static void vmh_on_wg_key(struct vmh_helper *h, struct vmh_wg_key *out)
{
        const struct vmhost_config *cfg = &h->vh->cfg;
        uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
        char *path = NULL;
        struct wg_device *d = NULL;

        out->result = -ENOKEY;
        if (cfg->wg_interface[0]) {
                if (wg_device_get(cfg->wg_interface, &d) == 0 && d->has_public_key) {
                        memcpy(pub, d->public_key, sizeof(pub));
                        out->result = 0;
                }
                wg_device_free(d);
        } else if (cfg->mesh_state_dir[0] &&
                   (path = small_file_path(cfg->mesh_state_dir, "wg.key")) &&
                   wg_key_load(path, priv) == 0) {
                wg_key_public_from_private(pub, priv);
                sodium_memzero(priv, sizeof(priv));
                out->result = 0;
        }
        free(path);
        if (out->result == 0)
                wg_key_to_base64(out->key, pub);
}

/* A libvirt message with no libvirt side (a helper without libvirt_uri, the fuzz target). */
static int vmh_no_virt(int fd, uint16_t type)
{
        struct vmh_domain d = {.result = -ENOTSUP};
        struct vmh_done done = {.result = -ENOTSUP};
        struct vmh_result res = {.result = -ENOTSUP};

        snprintf(done.detail, sizeof(done.detail), "this helper has no libvirt connection");
        if (type == VMH_LOOKUP)
                return imsg_send(fd, &vmh_proto, VMH_DOMAIN, &d, sizeof(d));
        if (type == VMH_LIST)
                return imsg_send(fd, &vmh_proto, VMH_LIST_END, &res, sizeof(res));
        return imsg_send(fd, &vmh_proto, VMH_DONE, &done, sizeof(done));
}

int vmh_handle(struct vmh_helper *h, int fd, const void *buf, size_t n, char *err, size_t errsize)
{
        struct vmh_result res = {0};
        struct vmh_wg_key key;
        static union vmh_msg m; /* one request at a time; too large for the stack */
        uint16_t type;

        if (vmh_decode(buf, n, &type, &m, err, errsize) < 0)
                return -EPROTO;
        switch ((enum vmh_type)type) {
        case VMH_APPLY_PEERS:
                res.result = vmh_on_apply(h, &m.apply_peers);
                return imsg_send(fd, &vmh_proto, VMH_APPLIED, &res, sizeof(res));
        case VMH_WG_KEY:
                memset(&key, 0, sizeof(key));
                vmh_on_wg_key(h, &key);
                return imsg_send(fd, &vmh_proto, VMH_WG_KEY_IS, &key, sizeof(key));
        case VMH_FILE:
                return vmh_on_file(fd, &m.file, &h->vh->cfg);
        case VMH_LIST:
        case VMH_LOOKUP:
        case VMH_MAKE_DISKS:
        case VMH_DEFINE:
        case VMH_START:
        case VMH_RESUME:
        case VMH_MANAGED_SAVE:
        case VMH_SHUTDOWN:
        case VMH_DESTROY:
        case VMH_SET_META:
        case VMH_POOL_REFRESH:
                return h->virt ? h->virt(h, fd, type, &m) : vmh_no_virt(fd, type);
        case VMH_CONFIG:
                snprintf(err, errsize, "%s message 'config' comes once, first", vmh_proto.name);
                return -EPROTO;
        case VMH_APPLIED:
        case VMH_WG_KEY_IS:
        case VMH_DOMAIN:
        case VMH_LIST_END:
        case VMH_DONE:
        case VMH_EVENT:
        case VMH_FILE_IS:
                break;
        }
        snprintf(err, errsize, "%s message '%s' goes from the helper, not to it", vmh_proto.name,
                 imsg_type_find(&vmh_proto, type)->name);
        return -EPROTO;
}

#define VMH_BUF (sizeof(struct imsg_hdr) + sizeof(union vmh_msg))

int vmh_serve(struct vmh_helper *h, int fd)
{
        static char buf[VMH_BUF];
        char err[256] = "";
        ssize_t n;
        int r = 0;

        while (r == 0 && (n = imsg_recv(fd, buf, sizeof(buf), -1)) != 0)
                r = n < 0 ? (int)n : vmh_handle(h, fd, buf, (size_t)n, err, sizeof(err));
        if (r < 0)
                log_error("helper: ending: %s", err[0] ? err : strerror(-r));
        return r;
}

int vmh_program(char *buf, size_t size)
{
        static const char name[] = "/vmhost-helper";
        const char *env = getenv("VMHOST_HELPER");
        ssize_t n;
        char *slash;

        if (env && env[0])
                return snprintf(buf, size, "%s", env) < (int)size ? 0 : -ENAMETOOLONG;
        if (size < sizeof(name))
                return -ENAMETOOLONG;
        /* read straight into buf: no second PATH_MAX buffer on the stack */
        n = readlink("/proc/self/exe", buf, size - 1);
        if (n <= 0)
                return -errno;
        if ((size_t)n == size - 1)
                return -ENAMETOOLONG; /* perhaps cut short */
        buf[n] = '\0';
        slash = strrchr(buf, '/');
        if (!slash)
                return -ENOENT;
        if ((size_t)(slash - buf) + sizeof(name) > size)
                return -ENAMETOOLONG;
        memcpy(slash, name, sizeof(name));
        return 0;
}

/* In the child: the two sockets become fds 3 and 4, nothing else of vmhost's stays open. */
static void vmh_child(const char *program, int fd, int efd, pid_t parent)
{
        char *const argv[] = {"vmhost-helper", NULL};
        int a = fcntl(fd, F_DUPFD_CLOEXEC, 10), b = fcntl(efd, F_DUPFD_CLOEXEC, 10);

        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent || a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0)
                _exit(1);
        close_range(5, ~0U, 0);
        execv(program, argv);
        fprintf(stderr, "vmhost: cannot run the helper '%s': %s\n", program, strerror(errno));
        _exit(127);
}

static int vmh_call(struct vmhost *vh, uint16_t type, const void *req, size_t len, uint16_t want,
                    union vmh_msg *ret);

int vmh_start(struct vmhost *vh)
{
        pid_t parent = getpid(), pid;
        static char program[PATH_MAX]; /* as c: vmh_start runs once, from main */
        static struct vmh_config c;
        union vmh_msg *m;
        int fds[2], efds[2] = {-1, -1}, r = vmh_program(program, sizeof(program));

        r = r ?: imsg_socketpair(fds);
        if (r < 0)
                return r;
        r = imsg_socketpair(efds);
        if (r < 0) {
                close(fds[0]);
                close(fds[1]);
                return r;
        }
        fflush(stderr);
        pid = fork();
        if (pid == 0)
                vmh_child(program, fds[1], efds[1], parent);
        close(fds[1]);
        close(efds[1]);
        if (pid < 0) {
                close(fds[0]);
                close(efds[0]);
                return -errno;
        }
        vh->helper_fd = fds[0];
        vh->helper_event_fd = efds[0];
        vh->helper_pid = pid;
        vh->helper_up = true;
        /* the configuration first: the helper does nothing before it has it */
        c.cfg = vh->cfg;
        m = malloc(sizeof(*m));
        r = m ? vmh_call(vh, VMH_CONFIG, &c, sizeof(c), VMH_APPLIED, m) : -ENOMEM;
        if (r == 0)
                r = m->result.result;
        free(m);
        if (r < 0) {
                vmh_stop(vh);
                return r;
        }
        log_info("helper: process %d (%s) calls libvirt and applies WireGuard peers", (int)pid,
                 program);
        return 0;
}

void vmh_stop(struct vmhost *vh)
{
        if (!vh->helper_up)
                return;
        close(vh->helper_fd);
        close(vh->helper_event_fd);
        vh->helper_fd = -1;
        vh->helper_event_fd = -1;
        vh->helper_up = false;
        while (waitpid(vh->helper_pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

/* libvirt calls may take long (a managed save of a large guest under TCG). */
#define VMH_LONG_TIMEOUT_MS 600000

/* Sends one request and receives its answers until one of type want; other answers (a domain of
 * a listing) go to each_fn. A late answer to a call that timed out is dropped first. */
/* Sends one request and receives its answers until one of type want; other answers (a domain of
 * a listing) go to each_fn. A late answer to a call that timed out is dropped first. Only
 * VMH_FILE_IS brings a descriptor (to *ret_fd); one on any other answer is closed. */
static int vmh_exchange(struct vmhost *vh, uint16_t type, const void *req, size_t len,
                        uint16_t want, union vmh_msg *ret,
                        void (*each_fn)(void *ctx, const struct vmh_domain *d), void *ctx,
                        int *ret_fd)
{
        static char buf[VMH_BUF];
        char err[256];
        uint16_t got = 0;
        ssize_t n;
        int r, fd = -1,
               timeout = type == VMH_APPLY_PEERS || type == VMH_WG_KEY || type == VMH_CONFIG ||
                                 type == VMH_FILE
                             ? VMH_CALL_TIMEOUT_MS
                             : VMH_LONG_TIMEOUT_MS;

        while (imsg_recv(vh->helper_fd, buf, sizeof(buf), 0) > 0)
                log_warn("helper: a late answer dropped");
        r = imsg_send(vh->helper_fd, &vmh_proto, type, req, len);
        for (;;) {
                if (fd >= 0)
                        close(fd);
                n = r == 0 ? imsg_recv_fd(vh->helper_fd, buf, sizeof(buf), timeout, &fd) : r;
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : (int)n;
                r = vmh_decode(buf, (size_t)n, &got, ret, err, sizeof(err));
                if (r == 0 && got == VMH_DOMAIN && want == VMH_LIST_END && each_fn) {
                        each_fn(ctx, &ret->domain);
                        continue;
                }
                if (r == 0 && got != want)
                        r = -EBADMSG;
                if (r < 0)
                        log_error("helper: bad answer: %s", r == -EBADMSG ? "unexpected" : err);
                if (r == 0 && got == VMH_FILE_IS && ret_fd) {
                        *ret_fd = fd;
                        fd = -1;
                }
                if (fd >= 0)
                        close(fd);
                return r;
        }
}

static int vmh_call_each(struct vmhost *vh, uint16_t type, const void *req, size_t len,
                         uint16_t want, union vmh_msg *ret,
                         void (*each_fn)(void *ctx, const struct vmh_domain *d), void *ctx)
{
        int r;

        if (!vh->helper_up)
                return -ENOTCONN;
        pthread_mutex_lock(&vh->helper_lock);
        r = vmh_exchange(vh, type, req, len, want, ret, each_fn, ctx, NULL);
        pthread_mutex_unlock(&vh->helper_lock);
        return r;
}

static int vmh_call(struct vmhost *vh, uint16_t type, const void *req, size_t len, uint16_t want,
                    union vmh_msg *ret)
{
        return vmh_call_each(vh, type, req, len, want, ret, NULL, NULL);
}

int vmh_file(struct vmhost *vh, enum vmh_file_op op, const char *name, bool try, int *ret_fd)
{
        struct vmh_file q = {.op = (uint32_t)op};
        union vmh_msg *m;
        int fd = -1, r;

        if (!vh->helper_up)
                return -ENOTCONN;
        if (snprintf(q.name, sizeof(q.name), "%s", name) >= (int)sizeof(q.name))
                return -ENAMETOOLONG;
        m = malloc(sizeof(*m)); /* 14 KiB: as vmh_call_done's */
        if (!m)
                return -ENOMEM;
        if (try) {
                if (pthread_mutex_trylock(&vh->helper_lock) != 0) {
                        free(m);
                        return -EBUSY;
                }
        } else {
                pthread_mutex_lock(&vh->helper_lock);
        }
        r = vmh_exchange(vh, VMH_FILE, &q, sizeof(q), VMH_FILE_IS, m, NULL, NULL, &fd);
        pthread_mutex_unlock(&vh->helper_lock);
        r = r ?: m->result.result;
        free(m);
        /* an open answered without its descriptor, or a commit with one, is the helper's fault */
        if (r == 0 && (fd >= 0) != (op <= VMH_FILE_VAULT_NEW))
                r = -EBADMSG;
        if (r < 0 && fd >= 0)
                close(fd);
        if (r == 0)
                *ret_fd = fd;
        return r;
}

int vmh_apply_peers(struct vmhost *vh, uint64_t version)
{
        struct vmh_apply_peers a = {.version = version};
        union vmh_msg *m = malloc(sizeof(*m)); /* 14 KiB: as vmh_call_done's */
        int r = m ? vmh_call(vh, VMH_APPLY_PEERS, &a, sizeof(a), VMH_APPLIED, m) : -ENOMEM;

        r = r < 0 ? r : m->result.result;
        free(m);
        return r;
}

int vmh_wg_public_key(struct vmhost *vh, char ret[WG_KEY_B64_LEN + 1])
{
        struct vmh_wg_key_req q = {0};
        union vmh_msg *m = malloc(sizeof(*m));
        int r = m ? vmh_call(vh, VMH_WG_KEY, &q, sizeof(q), VMH_WG_KEY_IS, m) : -ENOMEM;

        if (r == 0 && m->wg_key.result < 0)
                r = m->wg_key.result;
        if (r == 0)
                memcpy(ret, m->wg_key.key, WG_KEY_B64_LEN + 1);
        free(m);
        return r;
}

/* A call answered by VMH_DONE. */
static int vmh_call_done(struct vmhost *vh, uint16_t type, const void *req, size_t len,
                         char *detail, size_t size)
{
        union vmh_msg *m = malloc(sizeof(*m));
        int r = m ? vmh_call(vh, type, req, len, VMH_DONE, m) : -ENOMEM;
        bool answered = r == 0;

        if (r == 0)
                r = m->done.result;
        if (detail && size)
                snprintf(detail, size, "%s",
                         r == 0     ? ""
                         : answered ? m->done.detail
                                    : strerror(-r));
        free(m);
        if (r == 0)
                virt_touch(vh);
        return r;
}

int vmh_domain_op(struct vmhost *vh, uint16_t type, const char *name, char *detail, size_t size)
{
        struct vmh_name q = {{0}};

        if (snprintf(q.name, sizeof(q.name), "%s", name) >= (int)sizeof(q.name))
                return -ENAMETOOLONG;
        return vmh_call_done(vh, type, &q, sizeof(q), detail, size);
}

int vmh_lookup(struct vmhost *vh, const char *name, struct vmh_domain *ret)
{
        struct vmh_name q = {{0}};
        union vmh_msg *m = malloc(sizeof(*m));
        int r = m ? 0 : -ENOMEM;

        if (snprintf(q.name, sizeof(q.name), "%s", name) >= (int)sizeof(q.name))
                r = -ENOENT;
        r = r ?: vmh_call(vh, VMH_LOOKUP, &q, sizeof(q), VMH_DOMAIN, m);
        r = r ?: m->domain.result;
        if (r == 0) {
                *ret = m->domain;
                virt_touch(vh);
        }
        free(m);
        return r;
}

int vmh_list(struct vmhost *vh, uint32_t flags, void (*fn)(void *ctx, const struct vmh_domain *d),
             void *ctx)
{
        struct vmh_list_req q = {.flags = flags};
        union vmh_msg *m = malloc(sizeof(*m));
        int r = m ? vmh_call_each(vh, VMH_LIST, &q, sizeof(q), VMH_LIST_END, m, fn, ctx) : -ENOMEM;

        r = r ?: m->result.result;
        free(m);
        return r;
}

static int vmh_image_copy(const struct image_info *img, struct vmh_image *ret)
{
        memset(ret, 0, sizeof(*ret));
        if (snprintf(ret->disk_path, sizeof(ret->disk_path), "%s", img->disk_path) >=
                (int)sizeof(ret->disk_path) ||
            snprintf(ret->kernel_path, sizeof(ret->kernel_path), "%s", img->kernel_path) >=
                (int)sizeof(ret->kernel_path) ||
            snprintf(ret->initrd_path, sizeof(ret->initrd_path), "%s", img->initrd_path) >=
                (int)sizeof(ret->initrd_path) ||
            snprintf(ret->cmdline, sizeof(ret->cmdline), "%s", img->cmdline) >=
                (int)sizeof(ret->cmdline))
                return -ENAMETOOLONG;
        ret->virtual_size = img->virtual_size;
        return 0;
}

int vmh_make_disks(struct vmhost *vh, const char *name, const struct image_info *img,
                   uint64_t vault_mib, const struct vm_meta *meta, char *detail, size_t size)
{
        struct vmh_disks_req *q = calloc(1, sizeof(*q));
        int r = q ? vmh_image_copy(img, &q->image) : -ENOMEM;

        if (r == 0 && snprintf(q->name, sizeof(q->name), "%s", name) >= (int)sizeof(q->name))
                r = -ENAMETOOLONG;
        if (q) {
                q->vault_mib = vault_mib;
                q->meta = *meta;
        }
        r = r ?: vmh_call_done(vh, VMH_MAKE_DISKS, q, sizeof(*q), detail, size);
        if (r < 0 && !q)
                snprintf(detail, size, "%s", strerror(-r));
        free(q);
        return r;
}

int vmh_define(struct vmhost *vh, const char *name, uint64_t memory_mib, uint64_t vcpus,
               const struct vm_meta *meta, const struct image_info *img, char *detail, size_t size)
{
        struct vmh_define *q = calloc(1, sizeof(*q));
        int r = q ? vmh_image_copy(img, &q->image) : -ENOMEM;

        if (r == 0 && snprintf(q->name, sizeof(q->name), "%s", name) >= (int)sizeof(q->name))
                r = -ENAMETOOLONG;
        if (q) {
                q->memory_mib = memory_mib;
                q->vcpus = vcpus;
                q->meta = *meta;
        }
        if (r < 0)
                snprintf(detail, size, "%s", strerror(-r));
        r = r ?: vmh_call_done(vh, VMH_DEFINE, q, sizeof(*q), detail, size);
        free(q);
        return r;
}

int vmh_set_meta(struct vmhost *vh, const char *name, const struct vm_meta *meta)
{
        struct vmh_set_meta *q = calloc(1, sizeof(*q));
        int r = q ? 0 : -ENOMEM;

        if (r == 0 && snprintf(q->name, sizeof(q->name), "%s", name) >= (int)sizeof(q->name))
                r = -ENAMETOOLONG;
        if (q)
                q->meta = *meta;
        r = r ?: vmh_call_done(vh, VMH_SET_META, q, sizeof(*q), NULL, 0);
        free(q);
        return r;
}

int vmh_pool_refresh(struct vmhost *vh)
{
        struct vmh_list_req q = {0};

        return vmh_call_done(vh, VMH_POOL_REFRESH, &q, sizeof(q), NULL, 0);
}

int vmh_next_event(struct vmhost *vh, int timeout_ms, struct vmh_event *ret)
{
        char buf[sizeof(struct imsg_hdr) + sizeof(struct vmh_event)], err[256];
        union vmh_msg *m;
        uint16_t type = 0;
        ssize_t n;
        int r;

        if (!vh->helper_up)
                return -ECONNRESET;
        n = imsg_recv(vh->helper_event_fd, buf, sizeof(buf), timeout_ms);
        if (n == -ETIMEDOUT || n == -EAGAIN)
                return 0;
        if (n <= 0)
                return n == 0 ? -ECONNRESET : (int)n;
        m = malloc(sizeof(*m));
        r = m ? vmh_decode(buf, (size_t)n, &type, m, err, sizeof(err)) : -ENOMEM;
        if (r == 0 && type != VMH_EVENT)
                r = -EBADMSG;
        if (r == 0)
                *ret = m->event;
        else
                log_error("helper: bad event: %s", err);
        free(m);
        return r < 0 ? -ECONNRESET : 1;
}
