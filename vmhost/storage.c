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
#include "vmhost/xml_out.h"

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

/* <target>: the volume's (or pool's) format when given, and its mode. */
static void storage_xml_target(struct xml_out *x, const char *path, const char *format,
                               const char *mode)
{
        xml_out_start(x, "target");
        if (path)
                xml_out_element(x, "path", path);
        if (format) {
                xml_out_start(x, "format");
                xml_out_attr(x, "type", format);
                xml_out_end(x);
        }
        xml_out_start(x, "permissions");
        xml_out_element(x, "mode", mode);
        xml_out_end(x);
        xml_out_end(x);
}

static void storage_xml_capacity(struct xml_out *x, const char *unit, uint64_t value)
{
        char num[24];

        snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
        xml_out_start(x, "capacity");
        xml_out_attr(x, "unit", unit);
        xml_out_text(x, num);
        xml_out_end(x);
}

char *storage_pool_xml(const char *name, const char *path)
{
        struct xml_out x;

        if (xml_out_init(&x, false) < 0)
                return NULL;
        xml_out_start(&x, "pool");
        xml_out_attr(&x, "type", "dir");
        xml_out_element(&x, "name", name);
        storage_xml_target(&x, path, NULL, "0700");
        xml_out_end(&x);
        return xml_out_finish(&x);
}

/* <volume>: its name and capacity. */
static int storage_xml_volume(struct xml_out *x, const char *name, const char *unit,
                              uint64_t capacity)
{
        int r = xml_out_init(x, false);

        if (r < 0)
                return r;
        xml_out_start(x, "volume");
        xml_out_element(x, "name", name);
        storage_xml_capacity(x, unit, capacity);
        return 0;
}

/* The OS disk: a qcow2 overlay whose backing store is the base image. */
static char *storage_os_xml(const struct vm_disks *d, const char *base, const char *fmt,
                            uint64_t base_size)
{
        struct xml_out x;

        if (storage_xml_volume(&x, d->os_volume, "bytes", base_size) < 0)
                return NULL;
        storage_xml_target(&x, NULL, "qcow2", "0600");
        xml_out_start(&x, "backingStore");
        xml_out_element(&x, "path", base);
        xml_out_start(&x, "format");
        xml_out_attr(&x, "type", fmt);
        xml_out_end(&x);
        xml_out_end(&x);
        xml_out_end(&x);
        return xml_out_finish(&x);
}

/* The vault: a sparse raw volume. */
static char *storage_vault_xml(const struct vm_disks *d, uint64_t vault_mib)
{
        struct xml_out x;

        if (storage_xml_volume(&x, d->vault_volume, "MiB", vault_mib) < 0)
                return NULL;
        xml_out_element(&x, "allocation", "0");
        storage_xml_target(&x, NULL, "raw", "0600");
        xml_out_end(&x);
        return xml_out_finish(&x);
}

static int storage_pool_make(virStoragePoolPtr pool, const struct vm_disks *d, const char *base,
                             const char *fmt, uint64_t base_size, uint64_t vault_mib)
{
        char *xml = storage_os_xml(d, base, fmt, base_size);
        int r;

        if (!xml)
                return -EINVAL;
        r = storage_pool_volume(pool, d->os_volume, xml);
        free(xml);
        if (r < 0)
                return r;
        xml = storage_vault_xml(d, vault_mib);
        if (!xml)
                return -EINVAL;
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
        int r;

        snprintf(d->os_volume, sizeof(d->os_volume), "%s-os.qcow2", vm_id);
        snprintf(d->vault_volume, sizeof(d->vault_volume), "%s-vault.img", vm_id);
        snprintf(d->os_path, sizeof(d->os_path), "%s/vms/%s", vh->cfg.state_dir, d->os_volume);
        snprintf(d->vault_path, sizeof(d->vault_path), "%s/vms/%s", vh->cfg.state_dir,
                 d->vault_volume);
        d->in_pool = pool != NULL;
        if (pool) {
                r = storage_pool_make(pool, d, img->disk_path, fmt, base_size, vault_mib);
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
