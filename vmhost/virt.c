/* The one libvirt connection: libvirt's default event loop on its own thread (qemu:///embed
 * needs it, and it carries keepalives, lifecycle events and the agent channels), keepalive,
 * a close callback, and a refresher thread that reconnects and rebuilds the inventory. The age
 * of the last successful libvirt call goes into every heartbeat, so a wedged connection shows. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vmhost/vmhost.h"

#define VIRT_REFRESH_MS   5000
#define VIRT_RECONNECT_MS 2000

const char *virt_resolve_type(const char *configured)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        bool usable = fd >= 0;

        if (fd >= 0)
                close(fd);
        return policy_virt_type(configured, usable, access("/sys/module/kvm_pvm", F_OK) == 0);
}

static int virt_mkdirs(char *path)
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

int virt_embed_prepare(const char *uri)
{
        static const char prefix[] = "qemu:///embed?root=";
        struct passwd *pw = getpwuid(getuid());
        struct group *gr = getgrgid(getgid());
        char path[4200];
        FILE *f;

        if (strncmp(uri, prefix, sizeof(prefix) - 1) != 0 || !pw || !gr)
                return 0;
        snprintf(path, sizeof(path), "%s/etc/qemu.conf", uri + sizeof(prefix) - 1);
        if (access(path, F_OK) == 0)
                return 0;
        if (virt_mkdirs(path) < 0 || !(f = fopen(path, "wxe")))
                return -errno;
        fprintf(f,
                "# written by vmhost for an embedded driver: QEMU runs as vmhost's user\n"
                "user = \"%s\"\ngroup = \"%s\"\nstdio_handler = \"file\"\n",
                pw->pw_name, gr->gr_name);
        return fclose(f) == 0 ? 0 : -EIO;
}

void virt_touch(struct vmhost *vh)
{
        atomic_store(&vh->last_ok_ms, (int_fast64_t)clock_monotonic_ms());
}

int64_t virt_age_ms(struct vmhost *vh)
{
        int_fast64_t t = atomic_load(&vh->last_ok_ms);

        return t <= 0 ? -1 : (int64_t)(clock_monotonic_ms() - (uint64_t)t);
}

void *virt_conn_ref(struct vmhost *vh)
{
        virConnectPtr c;

        pthread_mutex_lock(&vh->conn_lock);
        c = vh->conn;
        if (c && virConnectRef(c) < 0)
                c = NULL;
        pthread_mutex_unlock(&vh->conn_lock);
        return c;
}

void virt_request_refresh(struct vmhost *vh)
{
        pthread_mutex_lock(&vh->state_lock);
        vh->refresh_wanted = true;
        pthread_cond_signal(&vh->refresh_cond);
        pthread_mutex_unlock(&vh->state_lock);
}

static void *virt_loop_main(void *arg)
{
        struct vmhost *vh = arg;

        while (!atomic_load(&vh->stopping))
                if (virEventRunDefaultImpl() < 0)
                        log_warn("libvirt event loop: %s", virGetLastErrorMessage());
        return NULL;
}

static int virt_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        static const char *const names[] = {"defined",   "undefined",   "started",
                                            "suspended", "resumed",     "stopped",
                                            "shutdown",  "pmsuspended", "crashed"};
        struct vmhost *vh = opaque;
        const char *id = virDomainGetName(dom);

        log_info("domain '%s' %s (detail %d)", id,
                 event >= 0 && event < 9 ? names[event] : "changed", detail);
        if (event == VIR_DOMAIN_EVENT_STARTED || event == VIR_DOMAIN_EVENT_RESUMED)
                agent_chan_domain_started(vh, id);
        else if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED)
                agent_chan_domain_stopped(vh, id);
        virt_request_refresh(vh);
        return 0;
}

static void virt_closed(virConnectPtr conn, int reason, void *opaque)
{
        struct vmhost *vh = opaque;

        log_warn("libvirt connection closed (reason %d); reconnecting", reason);
        atomic_store(&vh->conn_closed, true);
        virt_request_refresh(vh);
}

static void virt_disconnect(struct vmhost *vh)
{
        virConnectPtr c;

        pthread_mutex_lock(&vh->conn_lock);
        c = vh->conn;
        vh->conn = NULL;
        pthread_mutex_unlock(&vh->conn_lock);
        if (!c)
                return;
        if (vh->lifecycle_cb >= 0)
                virConnectDomainEventDeregisterAny(c, vh->lifecycle_cb);
        vh->lifecycle_cb = -1;
        virConnectUnregisterCloseCallback(c, virt_closed);
        virConnectClose(c);
}

static int virt_connect(struct vmhost *vh)
{
        virConnectPtr c = virConnectOpen(vh->cfg.libvirt_uri);

        if (!c) {
                log_warn("cannot connect to libvirt '%s': %s", vh->cfg.libvirt_uri,
                         virGetLastErrorMessage());
                return -ECONNREFUSED;
        }
        /* 1 means the driver has no keepalive (local/embedded): fine. */
        if (virConnectSetKeepAlive(c, 5, 3) < 0)
                log_debug("libvirt keepalive not set: %s", virGetLastErrorMessage());
        virConnectRegisterCloseCallback(c, virt_closed, vh, NULL);
        vh->lifecycle_cb =
            virConnectDomainEventRegisterAny(c, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                             VIR_DOMAIN_EVENT_CALLBACK(virt_lifecycle), vh, NULL);
        if (vh->lifecycle_cb < 0)
                log_warn("no libvirt lifecycle events: %s", virGetLastErrorMessage());
        pthread_mutex_lock(&vh->conn_lock);
        vh->conn = c;
        pthread_mutex_unlock(&vh->conn_lock);
        atomic_store(&vh->conn_closed, false);
        virt_touch(vh);
        if (images_start(vh) < 0)
                log_warn("the storage pools '%s' and '%s' are not ready", VMHOST_POOL_VMS,
                         VMHOST_POOL_IMAGES);
        log_info("connected to libvirt '%s' (virt_type '%s')", vh->cfg.libvirt_uri, vh->virt_type);
        return 0;
}

/* Reconnects when needed; returns 0 with a live connection. */
static int virt_ensure(struct vmhost *vh)
{
        virConnectPtr c = virt_conn_ref(vh);
        bool alive = c && !atomic_load(&vh->conn_closed) && virConnectIsAlive(c) == 1;

        if (c)
                virConnectClose(c);
        if (alive)
                return 0;
        virt_disconnect(vh);
        return virt_connect(vh);
}

static void *virt_refresh_main(void *arg)
{
        struct vmhost *vh = arg;
        bool autostarted = false;

        while (!atomic_load(&vh->stopping)) {
                struct timespec ts;
                int r = virt_ensure(vh);

                /* once, at the first connection: the VMs that should run (vms_autostart) */
                if (r == 0 && !autostarted) {
                        autostarted = true;
                        vms_autostart(vh);
                }
                if (r == 0 && inventory_refresh(vh) == 0)
                        virt_touch(vh);
                if (r == 0)
                        vms_archive_timers(vh);
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (r == 0 ? VIRT_REFRESH_MS : VIRT_RECONNECT_MS) / 1000;
                pthread_mutex_lock(&vh->state_lock);
                while (!vh->refresh_wanted && !atomic_load(&vh->stopping))
                        if (pthread_cond_timedwait(&vh->refresh_cond, &vh->state_lock, &ts) != 0)
                                break;
                vh->refresh_wanted = false;
                pthread_mutex_unlock(&vh->state_lock);
        }
        return NULL;
}

static void virt_silence(void *opaque, virErrorPtr err)
{
        /* libvirt's default handler prints every error; vmhost logs where it decides. */
}

int virt_start(struct vmhost *vh)
{
        int r;

        vh->lifecycle_cb = -1;
        virSetErrorFunc(NULL, virt_silence);
        if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0)
                return -EIO;
        r = pthread_create(&vh->loop_thread, NULL, virt_loop_main, vh);
        if (r != 0)
                return -r;
        /* Without libvirt at start vmhost still runs: the refresher keeps reconnecting and the
         * heartbeat shows libvirt_age_ms -1 meanwhile. */
        if (virt_connect(vh) == 0 && inventory_refresh(vh) == 0)
                virt_touch(vh);
        return -pthread_create(&vh->refresh_thread, NULL, virt_refresh_main, vh);
}

static void virt_wake(int timer, void *opaque)
{
}

void virt_stop(struct vmhost *vh)
{
        int t;

        atomic_store(&vh->stopping, true);
        virt_request_refresh(vh);
        if (vh->refresh_thread)
                pthread_join(vh->refresh_thread, NULL);
        vh->refresh_thread = 0;
        virt_disconnect(vh);
        /* A timer that fires at once wakes the loop so the thread sees "stopping". */
        t = virEventAddTimeout(0, virt_wake, NULL, NULL);
        if (vh->loop_thread)
                pthread_join(vh->loop_thread, NULL);
        if (t >= 0)
                virEventRemoveTimeout(t);
        vh->loop_thread = 0;
}
