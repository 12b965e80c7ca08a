/* vmhost's own privilege drop (issue 18), with common/privsep.c: once the helper runs (root, the
 * only process with libvirt and WireGuard netlink) and vmhost has read what only root may read
 * (the mesh state's genesis key and roster), vmhost becomes cfg.user (when started as root),
 * holds no capability in any set, sets no_new_privs and installs privsep's seccomp filter. It
 * still opens files in its state directory and makes sockets (node API, heartbeats), so the
 * filter refuses only what vmhost never needs: exec, ptrace, mount, namespaces, bpf, modules,
 * keyrings and the like. What the user cannot open (the helper's directories: the agent
 * channels, the vault disks) the helper opens and passes up (VMH_FILE).
 *
 * The state directory, as root, before the drop: state_dir itself, the files at its top level and
 * vmhost's directories (images, manifests, integrity, exports, diode, audit-evidence) become the
 * user's; the helper's directories (vms, channels, console, seeds) are root's, and the helper
 * refuses one that is not (vmh_dir_open); vms is 0755 so that vmhost can count the room its
 * sparse disks may still take (the disks themselves are 0600). Anything else (a libvirt root a
 * deployment put inside) is left as it is. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/privsep.h"
#include "common/small_file.h"
#include "vmhost/vmhost.h"

static const char *const privdrop_helper_dirs[] = {"vms", "channels", "console", "seeds", NULL};
static const char *const privdrop_own_dirs[] = {"images", "manifests",      "integrity", "exports",
                                                "diode",  "audit-evidence", NULL};

static bool privdrop_listed(const char *const *list, const char *name)
{
        for (; *list; list++)
                if (strcmp(*list, name) == 0)
                        return true;
        return false;
}

/* nftw passes no context: the owner for one walk, set before it (start-up, one thread) */
static uid_t privdrop_uid;
static gid_t privdrop_gid;

static int privdrop_chown_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
        (void)flag;
        (void)f;
        if ((st->st_uid != privdrop_uid || st->st_gid != privdrop_gid) &&
            lchown(path, privdrop_uid, privdrop_gid) < 0)
                return -errno;
        return 0;
}

static int privdrop_give(const char *path, uid_t uid, gid_t gid, bool tree)
{
        struct stat st;

        privdrop_uid = uid;
        privdrop_gid = gid;
        if (tree)
                return nftw(path, privdrop_chown_one, 16, FTW_PHYS) < 0 ? -errno : 0;
        if (lstat(path, &st) < 0)
                return -errno;
        return privdrop_chown_one(path, &st, 0, NULL);
}

/* One entry of state_dir (name, at path, for libvirt at uri): whose it becomes. */
static int privdrop_entry_at(const char *path, const char *name, const char *uri,
                             const struct privsep_drop *d)
{
        struct stat st;
        mode_t mode;

        if (lstat(path, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode) && privdrop_listed(privdrop_helper_dirs, name)) {
                if (lchown(path, 0, 0) < 0)
                        return -errno;
                mode = strcmp(name, "vms") == 0 ? 0755 : policy_state_dir_mode(uri, name);
                return chmod(path, mode) < 0 ? -errno : 0;
        }
        if (S_ISDIR(st.st_mode) && privdrop_listed(privdrop_own_dirs, name))
                return privdrop_give(path, d->uid, d->gid, true);
        if (S_ISREG(st.st_mode))
                return privdrop_give(path, d->uid, d->gid, false);
        return 0;
}

static int privdrop_entry(const struct vmhost *vh, const struct dirent *e,
                          const struct privsep_drop *d)
{
        /* On the heap. The 4400-byte buffer it replaces was never too short (state_dir is under
         * 4096 bytes, a name under 256), so there is no -ENAMETOOLONG to keep. */
        char *path = small_file_path(vh->cfg.state_dir, e->d_name);
        int r = path ? privdrop_entry_at(path, e->d_name, vh->cfg.libvirt_uri, d) : -ENOMEM;

        free(path);
        return r;
}

static int privdrop_state_dir(const struct vmhost *vh, const struct privsep_drop *d)
{
        const char *state = vh->cfg.state_dir;
        DIR *dir = opendir(state);
        struct dirent *e;
        int r = 0;

        if (!dir)
                return -errno;
        while (r == 0 && (e = readdir(dir)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        r = privdrop_entry(vh, e, d);
        closedir(dir);
        r = r ?: privdrop_give(state, d->uid, d->gid, false);
        if (r == 0 && chmod(state, policy_state_dir_mode(vh->cfg.libvirt_uri, "")) < 0)
                r = -errno;
        return r;
}

/* cfg.user, else nobody (with a warning: a user other daemons share). */
static int privdrop_user(const struct vmhost *vh, struct privsep_drop *d)
{
        if (privsep_user_find(vh->cfg.user, d) == 0)
                return 0;
        if (privsep_user_find(PRIVSEP_USER, d) < 0) {
                log_error("no user '%s' nor '%s' to run vmhost as", vh->cfg.user, PRIVSEP_USER);
                return -ENOENT;
        }
        log_warn("no user '%s': vmhost runs as '%s' (the totebox-node package makes '%s')",
                 vh->cfg.user, PRIVSEP_USER, VMHOST_USER);
        return 0;
}

int vmhost_privdrop(struct vmhost *vh)
{
        struct privsep_drop d = {.no_files = false, .no_sockets = false};
        char err[256];
        uid_t was = geteuid(); /* the helper's */
        int r;

        if (was == 0) {
                r = privdrop_user(vh, &d);
                if (r < 0)
                        return r;
                if (d.uid == 0) {
                        log_error("user '%s' is root: vmhost does not run as root", vh->cfg.user);
                        return -EPERM;
                }
                r = privdrop_state_dir(vh, &d);
                if (r < 0) {
                        log_error("cannot give the state directory '%s' to uid %u: %s",
                                  vh->cfg.state_dir, (unsigned)d.uid, strerror(-r));
                        return r;
                }
        }
        r = privsep_drop_now(&d, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                return r;
        }
        /* the state directory is the user's now, but a directory above it may be closed to it
         * (a root-only 0700 parent): say so at start, not as missing figures later */
        if (access(vh->cfg.state_dir, R_OK | W_OK | X_OK) < 0 &&
            (errno == EACCES || errno == EPERM)) {
                r = -errno;
                log_error("vmhost (uid %u) cannot use its state directory '%s': %s; every "
                          "directory above it must be searchable by that user",
                          (unsigned)getuid(), vh->cfg.state_dir, strerror(-r));
                return r;
        }
        log_info("vmhost runs as uid %u gid %u: no capabilities, no_new_privs, seccomp (no exec, "
                 "ptrace, mount, namespaces, bpf, modules or keyrings); the helper stays uid %u",
                 (unsigned)getuid(), (unsigned)getgid(), (unsigned)was);
        return 0;
}
