/* VM disks: the OS disk is a qcow2 copy-on-write overlay of the local base image and the vault
 * is its own qcow2 disk, both in state_dir/vms. With a libvirt storage driver (qemu:///system)
 * they are volumes of the "totebox-vms" pool (the vault a sparse raw volume); the embedded driver
 * (qemu:///embed) has no storage driver, so there the same files are made with qemu-img, the tool
 * libvirt's own dir pool runs. A disk left by an earlier failed attempt for the same VM id is
 * reused, never deleted. */
#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmhost/vmhost.h"

extern char **environ;

static int storage_run(char *const argv[])
{
        posix_spawn_file_actions_t fa;
        int status = 0, r;
        pid_t pid;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return -r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int storage_qemu_img(const char *path, const char *backing, const char *backing_fmt,
                            uint64_t bytes)
{
        char size[32], opt[64];
        char *argv[] = {"qemu-img",   "create", "-q", "-f", "qcow2", "-o", opt,
                        (char *)path, size,     NULL, NULL, NULL,    NULL, NULL};

        if (access(path, F_OK) == 0)
                return 0;
        snprintf(size, sizeof(size), "%llu", (unsigned long long)bytes);
        snprintf(opt, sizeof(opt), "preallocation=off");
        if (backing) {
                argv[8] = "-b";
                argv[9] = (char *)backing;
                argv[10] = "-F";
                argv[11] = (char *)backing_fmt;
                argv[12] = backing ? size : NULL;
        }
        return storage_run(argv);
}

/* The vault: a sparse raw file (no format layer between the archive and the guest). */
static int storage_sparse_file(const char *path, uint64_t bytes)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), r = 0;

        if (fd < 0)
                return errno == EEXIST ? 0 : -errno;
        if (ftruncate(fd, (off_t)bytes) < 0)
                r = -errno;
        close(fd);
        return r;
}

static int storage_pool_volume(virStoragePoolPtr pool, const char *name, const char *xml)
{
        virStorageVolPtr v = virStorageVolLookupByName(pool, name);

        if (!v)
                v = virStorageVolCreateXML(pool, xml, 0);
        if (!v)
                return -EIO;
        virStorageVolFree(v);
        return 0;
}

static int storage_pool_make(virStoragePoolPtr pool, const struct vm_disks *d, const char *base_esc,
                             const char *fmt, uint64_t base_size, uint64_t vault_mib)
{
        char *xml = NULL;
        int r;

        if (asprintf(&xml,
                     "<volume><name>%s</name><capacity unit='bytes'>%llu</capacity>"
                     "<target><format type='qcow2'/><permissions><mode>0600</mode></permissions>"
                     "</target><backingStore><path>%s</path><format type='%s'/></backingStore>"
                     "</volume>",
                     d->os_volume, (unsigned long long)base_size, base_esc, fmt) < 0)
                return -ENOMEM;
        r = storage_pool_volume(pool, d->os_volume, xml);
        free(xml);
        if (r < 0)
                return r;
        if (asprintf(&xml,
                     "<volume><name>%s</name><capacity unit='MiB'>%llu</capacity>"
                     "<allocation>0</allocation><target><format type='raw'/><permissions>"
                     "<mode>0600</mode></permissions></target></volume>",
                     d->vault_volume, (unsigned long long)vault_mib) < 0)
                return -ENOMEM;
        r = storage_pool_volume(pool, d->vault_volume, xml);
        free(xml);
        return r;
}

int storage_make_disks(struct vmhost *vh, void *conn, const char *vm_id,
                       const struct image_info *img, uint64_t vault_mib, struct vm_disks *d,
                       char *err, size_t errsize)
{
        const char *fmt = strstr(img->disk_path, ".raw") ? "raw" : "qcow2";
        uint64_t base_size = img->virtual_size ? img->virtual_size : 1ULL << 30;
        virStoragePoolPtr pool = virStoragePoolLookupByName(conn, VMHOST_POOL_VMS);
        char esc[8192 * 6];
        int r;

        snprintf(d->os_volume, sizeof(d->os_volume), "%s-os.qcow2", vm_id);
        snprintf(d->vault_volume, sizeof(d->vault_volume), "%s-vault.img", vm_id);
        snprintf(d->os_path, sizeof(d->os_path), "%s/vms/%s", vh->cfg.state_dir, d->os_volume);
        snprintf(d->vault_path, sizeof(d->vault_path), "%s/vms/%s", vh->cfg.state_dir,
                 d->vault_volume);
        d->in_pool = pool != NULL;
        if (pool) {
                r = xml_escape(img->disk_path, esc, sizeof(esc));
                r = r < 0 ? r : storage_pool_make(pool, d, esc, fmt, base_size, vault_mib);
                virStoragePoolFree(pool);
                if (r < 0)
                        snprintf(err, errsize, "%s", virGetLastErrorMessage());
                return r;
        }
        r = storage_qemu_img(d->os_path, img->disk_path, fmt, base_size);
        r = r ?: storage_sparse_file(d->vault_path, vault_mib << 20);
        if (r < 0)
                snprintf(err, errsize, "qemu-img create failed: %s", strerror(-r));
        return r;
}
