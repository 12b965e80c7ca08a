/* The helper's libvirt side (vmhost-helper only; vmhost itself does not link libvirt): the one
 * connection with libvirt's default event loop on its own thread (qemu:///embed runs the QEMU
 * driver inside this process and needs it), keepalive, a close callback, the storage pools, and
 * one handler per message of vmhost/helper.h. Domain lifecycle events go up to vmhost on the
 * event socket; nothing comes down that way. The helper writes every domain XML itself, from a
 * spec it checked (helper.c), with paths it derives from state_dir and the VM id. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdatomic.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmhost/helper.h"
#include "vmhost/helper_virt.h"
#include "vmhost/vmhost.h"

struct hv {
        struct vmhost *vh;
        int event_fd;
        pthread_mutex_t lock; /* conn */
        virConnectPtr conn;
        int lifecycle_cb;
        atomic_bool closed, stopping;
        pthread_t loop;
        const char *virt_type; /* resolved: kvm or qemu */
        bool fallback_logged;  /* auto: KVM could not start a guest; TCG from then on */
        bool kvm_proven;       /* auto: a KVM guest showed progress; later ones are not watched */
};

#define HV_KVM_GRACE_MS   20000
#define HV_KVM_GRACE_TEXT "20 s"

static struct hv hv_state = {.lock = PTHREAD_MUTEX_INITIALIZER, .lifecycle_cb = -1};

static int hv_mkdirs(char *path)
{
        for (char *p = path + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(path, 0700) < 0 && errno != EEXIST) {
                        *p = '/';
                        return -errno;
                }
                *p = '/';
        }
        return 0;
}

/* For qemu:///embed?root=DIR: DIR/etc/qemu.conf (QEMU runs as the helper's own user, console
 * logs straight to files) unless the operator wrote one. */
static int hv_embed_prepare(const char *uri)
{
        static const char prefix[] = "qemu:///embed?root=";
        struct passwd *pw = getpwuid(getuid());
        struct group *gr = getgrgid(getgid());
        char *path = NULL;
        FILE *f = NULL;
        int r = 0;

        if (strncmp(uri, prefix, sizeof(prefix) - 1) != 0 || !pw || !gr)
                return 0;
        if (asprintf(&path, "%s/etc/qemu.conf", uri + sizeof(prefix) - 1) < 0)
                return -ENOMEM;
        if (access(path, F_OK) != 0 && (hv_mkdirs(path) < 0 || !(f = fopen(path, "wxe"))))
                r = -errno;
        free(path);
        if (!f)
                return r;
        fprintf(f,
                "# written by vmhost for an embedded driver: QEMU runs as vmhost's user\n"
                "user = \"%s\"\ngroup = \"%s\"\nstdio_handler = \"file\"\n",
                pw->pw_name, gr->gr_name);
        return fclose(f) == 0 ? 0 : -EIO;
}

/* auto: KVM when /dev/kvm opens (a start that fails on it falls back to TCG, hv_start). */
static const char *hv_resolve_type(const char *configured)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        bool usable = fd >= 0;

        if (fd >= 0)
                close(fd);
        return policy_virt_type(configured, usable, false);
}

static void *hv_loop_main(void *arg)
{
        struct hv *h = arg;

        while (!atomic_load(&h->stopping))
                if (virEventRunDefaultImpl() < 0)
                        log_warn("libvirt event loop: %s", virGetLastErrorMessage());
        return NULL;
}

static int hv_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct hv *h = opaque;
        struct vmh_event e = {.event = event, .detail = detail};
        const char *id = virDomainGetName(dom);

        /* only Totebox names go up (a domain made by hand is not vmhost's) */
        if (!id || !ident_valid(IDENT_VM, id) || event < 0 || event >= VMH_EV_COUNT)
                return 0;
        snprintf(e.name, sizeof(e.name), "%s", id);
        if (imsg_send(h->event_fd, &vmh_proto, VMH_EVENT, &e, sizeof(e)) < 0)
                log_warn("helper: event of '%s' not passed up", id);
        return 0;
}

static void hv_closed(virConnectPtr conn, int reason, void *opaque)
{
        struct hv *h = opaque;

        log_warn("libvirt connection closed (reason %d); reconnecting", reason);
        atomic_store(&h->closed, true);
}

static int hv_pool(virConnectPtr c, const char *name, const char *path)
{
        virStoragePoolPtr p = virStoragePoolLookupByName(c, name);
        int r = 0;

        if (!p) {
                char *xml = storage_pool_xml(name, path);

                if (!xml)
                        return -EINVAL;
                p = virStoragePoolDefineXML(c, xml, 0);
                free(xml);
                if (!p)
                        return -EIO;
                virStoragePoolSetAutostart(p, 1);
        }
        if (virStoragePoolIsActive(p) != 1 && virStoragePoolCreate(p, 0) < 0)
                r = -EIO;
        virStoragePoolFree(p);
        return r;
}

/* The storage pools, on every (re)connect; a driver without storage (embed) makes the same
 * files with qemu-img (storage.c). */
static void hv_pools(struct hv *h, virConnectPtr c)
{
        char *vms = NULL, *images = NULL;
        int r = -ENOMEM;

        if (asprintf(&vms, "%s/vms", h->vh->cfg.state_dir) < 0)
                vms = NULL;
        if (asprintf(&images, "%s/images", h->vh->cfg.state_dir) < 0)
                images = NULL;
        if (vms && images) {
                r = hv_pool(c, VMHOST_POOL_VMS, vms);
                r = r ?: hv_pool(c, VMHOST_POOL_IMAGES, images);
        }
        free(vms);
        free(images);
        if (r < 0 && virGetLastErrorCode() == VIR_ERR_NO_SUPPORT)
                log_info("libvirt '%s' has no storage driver: disks are made with qemu-img in "
                         "the same layout",
                         h->vh->cfg.libvirt_uri);
        else if (r < 0)
                log_error("cannot set up the storage pools: %s", virGetLastErrorMessage());
}

static void hv_disconnect(struct hv *h)
{
        virConnectPtr c = h->conn;

        h->conn = NULL;
        if (!c)
                return;
        if (h->lifecycle_cb >= 0)
                virConnectDomainEventDeregisterAny(c, h->lifecycle_cb);
        h->lifecycle_cb = -1;
        virConnectUnregisterCloseCallback(c, hv_closed);
        virConnectClose(c);
}

static int hv_connect(struct hv *h)
{
        virConnectPtr c = virConnectOpen(h->vh->cfg.libvirt_uri);

        if (!c) {
                log_warn("cannot connect to libvirt '%s': %s", h->vh->cfg.libvirt_uri,
                         virGetLastErrorMessage());
                return -ENOTCONN;
        }
        /* 1 means the driver has no keepalive (local/embedded): fine. */
        if (virConnectSetKeepAlive(c, 5, 3) < 0)
                log_debug("libvirt keepalive not set: %s", virGetLastErrorMessage());
        virConnectRegisterCloseCallback(c, hv_closed, h, NULL);
        h->lifecycle_cb =
            virConnectDomainEventRegisterAny(c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                             VIR_DOMAIN_EVENT_CALLBACK(hv_lifecycle), h, NULL);
        if (h->lifecycle_cb < 0)
                log_warn("no libvirt lifecycle events: %s", virGetLastErrorMessage());
        h->conn = c;
        atomic_store(&h->closed, false);
        hv_pools(h, c);
        log_info("connected to libvirt '%s' (virt_type '%s')", h->vh->cfg.libvirt_uri,
                 h->virt_type);
        return 0;
}

/* The connection, reconnected when needed (under h->lock); NULL when libvirt is not there. */
static virConnectPtr hv_conn(struct hv *h)
{
        if (h->conn && !atomic_load(&h->closed) && virConnectIsAlive(h->conn) == 1)
                return h->conn;
        hv_disconnect(h);
        return hv_connect(h) == 0 ? h->conn : NULL;
}

static const char *hv_state_name(virDomainPtr dom, int state)
{
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
                return "running";
        case VIR_DOMAIN_PAUSED:
        case VIR_DOMAIN_PMSUSPENDED:
                return "paused";
        case VIR_DOMAIN_SHUTDOWN:
                return "running"; /* shutting down: still holds its RAM */
        case VIR_DOMAIN_CRASHED:
                return "crashed";
        default:
                return virDomainHasManagedSaveImage(dom, 0) == 1 ? "saved" : "shutoff";
        }
}

static int hv_describe(virDomainPtr dom, struct vmh_domain *d, bool control)
{
        virDomainInfo info = {0};
        int state = VIR_DOMAIN_NOSTATE, reason = 0;
        const char *name = virDomainGetName(dom);
        char *meta;

        memset(d, 0, sizeof(*d));
        if (!name || !ident_valid(IDENT_VM, name) || virDomainGetUUIDString(dom, d->uuid) < 0 ||
            virDomainGetInfo(dom, &info) < 0 || virDomainGetState(dom, &state, &reason, 0) < 0)
                return -EIO;
        snprintf(d->name, sizeof(d->name), "%s", name);
        snprintf(d->state, sizeof(d->state), "%s", hv_state_name(dom, state));
        d->max_mem_kib = info.maxMem;
        d->vcpus = info.nrVirtCpu;
        if (virDomainIsActive(dom) == 1) {
                virDomainControlInfo ctl = {0};

                d->flags |= VMH_DOM_ACTIVE;
                if (control && (virDomainGetControlInfo(dom, &ctl, 0) < 0 ||
                                ctl.state != VIR_DOMAIN_CONTROL_OK)) {
                        d->flags |= VMH_DOM_SETTLING;
                        virResetLastError();
                }
        }
        meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, VMHOST_XMLNS, 0);
        if (!meta)
                virResetLastError();
        /* parsed here, strictly: vmhost gets the struct, never XML */
        if (meta && vm_meta_parse(meta, strlen(meta), &d->meta) == 0)
                d->flags |= VMH_DOM_META;
        else
                memset(&d->meta, 0, sizeof(d->meta));
        free(meta);
        return 0;
}

static int hv_list(struct hv *h, int fd, uint32_t flags)
{
        virConnectPtr c = hv_conn(h);
        virDomainPtr *doms = NULL;
        struct vmh_result end = {0};
        static struct vmh_domain d;
        int n = c ? virConnectListAllDomains(c, &doms, 0) : -1, r = 0;

        if (n < 0)
                end.result = c ? -EIO : -ENOTCONN;
        for (int i = 0; i < n; i++) {
                if (r == 0 && hv_describe(doms[i], &d, flags & VMH_LIST_CONTROL) == 0)
                        r = imsg_send(fd, &vmh_proto, VMH_DOMAIN, &d, sizeof(d));
                virDomainFree(doms[i]);
        }
        free(doms);
        return r ?: imsg_send(fd, &vmh_proto, VMH_LIST_END, &end, sizeof(end));
}

static int hv_lookup(struct hv *h, int fd, const char *name)
{
        virConnectPtr c = hv_conn(h);
        virDomainPtr dom = c ? virDomainLookupByName(c, name) : NULL;
        static struct vmh_domain d;

        memset(&d, 0, sizeof(d));
        if (!dom)
                d.result = c ? -ENOENT : -ENOTCONN;
        else if (hv_describe(dom, &d, false) < 0)
                d = (struct vmh_domain){.result = -EIO};
        if (dom)
                virDomainFree(dom);
        return imsg_send(fd, &vmh_proto, VMH_DOMAIN, &d, sizeof(d));
}

static int hv_fail(struct vmh_done *done, int r, const char *what)
{
        done->result = r;
        snprintf(done->detail, sizeof(done->detail), "%s: %s", what,
                 virGetLastErrorMessage() ?: "unknown error");
        return r;
}

static void hv_image_info(const struct vmh_image *i, struct image_info *ret)
{
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->disk_path, sizeof(ret->disk_path), "%s", i->disk_path);
        snprintf(ret->kernel_path, sizeof(ret->kernel_path), "%s", i->kernel_path);
        snprintf(ret->initrd_path, sizeof(ret->initrd_path), "%s", i->initrd_path);
        snprintf(ret->cmdline, sizeof(ret->cmdline), "%s", i->cmdline);
        ret->virtual_size = i->virtual_size;
}

static char *hv_path(struct hv *h, const char *dir, const char *id, const char *ext);

/* The disks while the seed is built (genisoimage, the helper's: vmhost may not exec). */
static void hv_make_disks(struct hv *h, virConnectPtr c, const struct vmh_disks_req *q,
                          struct vmh_done *done)
{
        static struct image_info img;
        static struct vm_disks d; /* 8 KiB; the helper serves one request at a time */
        char err[VMH_DETAIL_MAX - sizeof(VMH_SEED_FAILED ": ")] = "", *seed = NULL;
        pid_t pid;
        int r;

        if (vmh_check_image(&h->vh->cfg, &q->image) < 0 || vmh_image_files_real(&q->image) < 0) {
                done->result = -EPERM;
                snprintf(done->detail, sizeof(done->detail),
                         "the image's files are not in the "
                         "image store");
                return;
        }
        seed = hv_path(h, "seeds", q->name, ".iso");
        r = seed ? seed_start(seed, q->name, &q->meta, &pid, err, sizeof(err)) : -ENOMEM;
        free(seed);
        if (r < 0) {
                done->result = r;
                snprintf(done->detail, sizeof(done->detail), VMH_SEED_FAILED ": %s", err);
                return;
        }
        hv_image_info(&q->image, &img);
        done->result = storage_make_disks(h->vh, c, q->name, &img, q->vault_mib, &d, done->detail,
                                          sizeof(done->detail));
        r = seed_wait(pid, err, sizeof(err)); /* always reaped */
        if (done->result == 0 && r < 0) {
                done->result = r;
                snprintf(done->detail, sizeof(done->detail), VMH_SEED_FAILED ": %s", err);
        }
}

static char *hv_path(struct hv *h, const char *dir, const char *id, const char *ext)
{
        char *p = NULL;

        return asprintf(&p, "%s/%s/%s%s", h->vh->cfg.state_dir, dir, id, ext) < 0 ? NULL : p;
}

/* The domain XML from the checked spec: the disks of storage.c's layout (pool volumes when the
 * pool is there), the seed, channel and console under state_dir. */
static char *hv_domain_xml(struct hv *h, virConnectPtr c, const struct vmh_define *q,
                           const struct vm_meta *m)
{
        virStoragePoolPtr pool = virStoragePoolLookupByName(c, VMHOST_POOL_VMS);
        char os[VM_ID_MAX + 16], vault[VM_ID_MAX + 16];
        char *seed = hv_path(h, "seeds", q->name, ".iso"), *chan, *con, *osp, *vaultp, *xml;
        struct vm_spec s;

        if (!pool)
                virResetLastError();
        virStoragePoolFree(pool);
        snprintf(os, sizeof(os), "%s-os.qcow2", q->name);
        snprintf(vault, sizeof(vault), "%s-vault.img", q->name);
        chan = hv_path(h, "channels", q->name, ".sock");
        con = hv_path(h, "console", q->name, ".log");
        osp = hv_path(h, "vms", os, "");
        vaultp = hv_path(h, "vms", vault, "");
        s = (struct vm_spec){.name = q->name,
                             .virt_type = h->virt_type,
                             .memory_mib = q->memory_mib,
                             .vcpus = q->vcpus,
                             .meta = m,
                             .in_pool = pool != NULL,
                             .os_volume = pool ? os : osp,
                             .vault_volume = pool ? vault : vaultp,
                             .seed_path = seed,
                             .channel_path = chan,
                             .console_log = con};
        if (q->image.kernel_path[0]) {
                s.kernel_path = q->image.kernel_path;
                s.initrd_path = q->image.initrd_path[0] ? q->image.initrd_path : NULL;
                s.cmdline = q->image.cmdline;
        }
        xml = seed && chan && con && osp && vaultp ? domain_xml_build(&s) : NULL;
        free(seed), free(chan), free(con), free(osp), free(vaultp);
        return xml;
}

/* The metadata vmhost sent, as the helper writes it, parses back strictly (the same checks as
 * for what libvirt holds). */
static bool hv_meta_round_trip(const struct vm_meta *m)
{
        static struct vm_meta back;
        char *xml = vm_meta_format(m);
        bool ok = xml && vm_meta_parse(xml, strlen(xml), &back) == 0;

        free(xml);
        return ok;
}

static void hv_define(struct hv *h, virConnectPtr c, const struct vmh_define *q,
                      struct vmh_done *done)
{
        const struct vm_meta *m = &q->meta;
        virDomainPtr dom;
        char *xml;

        if (vmh_check_image(&h->vh->cfg, &q->image) < 0 || vmh_image_files_real(&q->image) < 0 ||
            !hv_meta_round_trip(m)) {
                done->result = -EPERM;
                snprintf(done->detail, sizeof(done->detail), "the spec is refused");
                return;
        }
        xml = hv_domain_xml(h, c, q, m);
        dom = xml ? virDomainDefineXML(c, xml) : NULL;
        if (!xml) {
                done->result = -EINVAL;
                snprintf(done->detail, sizeof(done->detail), "invalid domain XML");
        } else if (!dom) {
                hv_fail(done, -EIO, "define");
        }
        if (dom)
                virDomainFree(dom);
        free(xml);
}

/* virt_type auto: a domain that KVM cannot start is defined again for TCG and started; from then
 * on every domain is defined for TCG. Said once. */
static int hv_fallback(struct hv *h, virDomainPtr dom, const char *why)
{
        static const char kvm[] = "<domain type='kvm'";
        char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
        char *t = xml ? strstr(xml, kvm) : NULL, *tcg = NULL;
        virDomainPtr again = NULL;
        int r = -EIO;

        if (t && asprintf(&tcg, "%.*s<domain type='qemu'%s", (int)(t - xml), xml,
                          t + sizeof(kvm) - 1) < 0)
                tcg = NULL;
        free(xml);
        if (!tcg)
                return -EIO;
        if (!h->fallback_logged)
                log_warn("KVM cannot start a guest here (%s); falling back to TCG "
                         "(virt_type qemu) for this and every later VM",
                         why);
        h->fallback_logged = true;
        h->virt_type = "qemu";
        again = virDomainDefineXML(virDomainGetConnect(dom), tcg);
        if (again) {
                r = virDomainCreate(again) < 0 ? -EIO : 0;
                virDomainFree(again);
        }
        free(tcg);
        return r;
}

static bool hv_is_kvm(virDomainPtr dom, bool *ret_direct_kernel)
{
        char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
        bool kvm = xml && strstr(xml, "<domain type='kvm'");

        *ret_direct_kernel = xml && strstr(xml, "<kernel>");
        free(xml);
        return kvm;
}

/* What file f holds past offset (at most size - 1 bytes, NUL-terminated); its size goes to
 * *ret_end. An absent file is empty. */
static void hv_read_from(const char *path, long offset, char *buf, size_t size, long *ret_end)
{
        FILE *f = fopen(path, "re");
        size_t n = 0;

        buf[0] = '\0';
        *ret_end = 0;
        if (!f)
                return;
        if (fseek(f, 0, SEEK_END) == 0)
                *ret_end = ftell(f);
        if (*ret_end > offset && fseek(f, offset, SEEK_SET) == 0)
                n = fread(buf, 1, size - 1, f);
        buf[n] = '\0';
        fclose(f);
}

/* QEMU's own log of the domain: an embedded driver's root/log/qemu, else the system one. */
static void hv_qemu_log(struct hv *h, const char *name, char *buf, size_t size)
{
        static const char prefix[] = "qemu:///embed?root=";
        const char *uri = h->vh->cfg.libvirt_uri;

        if (strncmp(uri, prefix, sizeof(prefix) - 1) == 0)
                snprintf(buf, size, "%s/log/qemu/%s.log", uri + sizeof(prefix) - 1, name);
        else
                snprintf(buf, size, "/var/log/libvirt/qemu/%s.log", name);
}

/* KVM on some hosts starts QEMU and then hangs the guest, or fails inside it without QEMU
 * exiting (docs/vmhost.md): the first KVM guest is watched, as the image builder watches its
 * boots, until it shows progress on its console (any output of a direct-kernel guest, which has
 * no bootloader; a kernel's or systemd's line otherwise). NULL: KVM works; else why not. */
/* The two log paths and what was read of them: 16 KiB, on the heap. */
struct hv_logs {
        char console[4200], qlog[4200], text[8192];
};

static struct hv_logs *hv_logs_new(struct hv *h, virDomainPtr dom)
{
        struct hv_logs *b = malloc(sizeof(*b));

        if (!b)
                return NULL;
        snprintf(b->console, sizeof(b->console), "%s/console/%s.log", h->vh->cfg.state_dir,
                 virDomainGetName(dom));
        hv_qemu_log(h, virDomainGetName(dom), b->qlog, sizeof(b->qlog));
        return b;
}

static const char *hv_kvm_watch_logs(struct hv_logs *b, virDomainPtr dom, bool direct,
                                     long console0, long qemu0)
{
        char *text = b->text;
        size_t tsize = sizeof(b->text);
        long end;

        for (int i = 0; i < HV_KVM_GRACE_MS / 250; i++) {
                if (virDomainIsActive(dom) != 1)
                        return NULL; /* it stopped: not a hang; the caller sees the state */
                hv_read_from(b->qlog, qemu0, text, tsize, &end);
                if (strstr(text, "KVM internal error") || strstr(text, "failed to set MSR"))
                        return "QEMU reported a KVM error";
                hv_read_from(b->console, console0, text, tsize, &end);
                if ((direct && text[0]) || strstr(text, "Linux version") ||
                    strstr(text, "systemd") || strstr(text, "Welcome"))
                        return NULL;
                usleep(250 * 1000);
        }
        return "no guest output within " HV_KVM_GRACE_TEXT;
}

static const char *hv_kvm_watch(struct hv *h, virDomainPtr dom, bool direct, long console0,
                                long qemu0)
{
        struct hv_logs *b = hv_logs_new(h, dom);
        const char *hang = b ? hv_kvm_watch_logs(b, dom, direct, console0, qemu0)
                             : "out of memory watching the first KVM guest";

        free(b);
        return hang;
}

static long hv_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static int hv_start(struct hv *h, virDomainPtr dom, struct vmh_done *done)
{
        bool auto_kvm, direct = false;
        char why[VMH_DETAIL_MAX];
        struct hv_logs *b = hv_logs_new(h, dom);
        const char *hang;
        long console0 = b ? hv_size(b->console) : 0, qemu0 = b ? hv_size(b->qlog) : 0;

        free(b);
        auto_kvm = strcmp(h->vh->cfg.virt_type, "auto") == 0 && hv_is_kvm(dom, &direct);
        if (virDomainCreate(dom) == 0) {
                if (!auto_kvm || h->kvm_proven)
                        return 0;
                hang = hv_kvm_watch(h, dom, direct, console0, qemu0);
                if (!hang) {
                        h->kvm_proven = true;
                        return 0;
                }
                virDomainDestroy(dom);
                snprintf(why, sizeof(why), "%s", hang);
        } else {
                snprintf(why, sizeof(why), "%s", virGetLastErrorMessage());
        }
        if (auto_kvm && hv_fallback(h, dom, why) == 0)
                return 0;
        done->result = -EIO;
        snprintf(done->detail, sizeof(done->detail), "start: %.240s", why);
        return -EIO;
}

static void hv_set_meta(virDomainPtr dom, const struct vm_meta *m, struct vmh_done *done)
{
        unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
        char *xml = hv_meta_round_trip(m) ? vm_meta_format(m) : NULL;

        if (!xml) {
                done->result = -EPERM;
                snprintf(done->detail, sizeof(done->detail), "the metadata is refused");
                return;
        }
        if (virDomainIsActive(dom) == 1)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, VMHOST_XMLNS_PREFIX,
                                 VMHOST_XMLNS, flags) < 0)
                hv_fail(done, -EIO, "metadata");
        free(xml);
}

static int hv_managed_save(virDomainPtr dom)
{
        return virDomainManagedSave(dom, 0);
}

/* The operations on one existing domain that take nothing but the domain. */
static const struct hv_op {
        uint16_t type;
        int (*call)(virDomainPtr dom);
        const char *what;
} hv_ops[] = {
    {VMH_RESUME, virDomainResume, "resume"},
    {VMH_MANAGED_SAVE, hv_managed_save, "managed save"},
    {VMH_SHUTDOWN, virDomainShutdown, "shutdown"},
    {VMH_DESTROY, virDomainDestroy, "destroy"},
};

static void hv_domain_op(struct hv *h, virConnectPtr c, uint16_t type, const union vmh_msg *m,
                         struct vmh_done *done)
{
        const char *name = type == VMH_SET_META ? m->set_meta.name : m->name.name;
        virDomainPtr dom = virDomainLookupByName(c, name);

        if (!dom) {
                hv_fail(done, -ENOENT, "lookup");
                return;
        }
        if (type == VMH_START)
                hv_start(h, dom, done);
        else if (type == VMH_SET_META)
                hv_set_meta(dom, &m->set_meta.meta, done);
        for (size_t i = 0; i < sizeof(hv_ops) / sizeof(hv_ops[0]); i++)
                if (hv_ops[i].type == type && hv_ops[i].call(dom) < 0)
                        hv_fail(done, -EIO, hv_ops[i].what);
        virDomainFree(dom);
}

static void hv_pool_refresh(virConnectPtr c)
{
        virStoragePoolPtr pool = virStoragePoolLookupByName(c, VMHOST_POOL_IMAGES);

        if (pool) {
                virStoragePoolRefresh(pool, 0);
                virStoragePoolFree(pool);
        } else {
                virResetLastError();
        }
}

static int hv_handle(struct vmh_helper *hh, int fd, uint16_t type, const union vmh_msg *m)
{
        struct hv *h = hh->virt_state;
        static struct vmh_done done;
        virConnectPtr c;
        int r;

        pthread_mutex_lock(&h->lock);
        if (type == VMH_LIST || type == VMH_LOOKUP) {
                r = type == VMH_LIST ? hv_list(h, fd, m->list_req.flags)
                                     : hv_lookup(h, fd, m->name.name);
                pthread_mutex_unlock(&h->lock);
                return r;
        }
        memset(&done, 0, sizeof(done));
        c = hv_conn(h);
        if (!c) {
                done.result = -ENOTCONN;
                snprintf(done.detail, sizeof(done.detail), "no libvirt connection");
        } else if (type == VMH_MAKE_DISKS) {
                hv_make_disks(h, c, &m->disks, &done);
        } else if (type == VMH_DEFINE) {
                hv_define(h, c, &m->define, &done);
        } else if (type == VMH_POOL_REFRESH) {
                hv_pool_refresh(c);
        } else {
                hv_domain_op(h, c, type, m, &done);
        }
        pthread_mutex_unlock(&h->lock);
        if (done.result < 0)
                log_debug("helper: %s refused: %s", imsg_type_find(&vmh_proto, type)->name,
                          done.detail);
        return imsg_send(fd, &vmh_proto, VMH_DONE, &done, sizeof(done));
}

static void hv_silence(void *opaque, virErrorPtr err)
{
        /* libvirt's default handler prints every error; the helper says what it decides. */
}

int hv_start_virt(struct vmh_helper *hh, struct vmhost *vh, int event_fd)
{
        struct hv *h = &hv_state;
        int r;

        h->vh = vh;
        h->event_fd = event_fd;
        h->virt_type = hv_resolve_type(vh->cfg.virt_type);
        if (!h->virt_type)
                return -EINVAL;
        if (hv_embed_prepare(vh->cfg.libvirt_uri) < 0)
                log_warn("cannot write the qemu.conf of '%s'", vh->cfg.libvirt_uri);
        virSetErrorFunc(NULL, hv_silence);
        if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0)
                return -EIO;
        r = pthread_create(&h->loop, NULL, hv_loop_main, h);
        if (r != 0)
                return -r;
        /* Without libvirt at start the helper still serves: every call tries to reconnect. */
        pthread_mutex_lock(&h->lock);
        hv_connect(h);
        pthread_mutex_unlock(&h->lock);
        hh->virt = hv_handle;
        hh->virt_state = h;
        return 0;
}

static void hv_wake(int timer, void *opaque)
{
}

void hv_stop_virt(void)
{
        struct hv *h = &hv_state;
        int t;

        if (!h->vh)
                return;
        atomic_store(&h->stopping, true);
        pthread_mutex_lock(&h->lock);
        hv_disconnect(h);
        pthread_mutex_unlock(&h->lock);
        /* A timer that fires at once wakes the loop so the thread sees "stopping". */
        t = virEventAddTimeout(0, hv_wake, NULL, NULL);
        pthread_join(h->loop, NULL);
        if (t >= 0)
                virEventRemoveTimeout(t);
}
