/* The cloud-init NoCloud seed of a VM: meta-data, user-data and network-config in an ISO 9660
 * volume labelled "cidata", built by genisoimage with the options cloud-localds
 * (cloud-image-utils) passes it (-volid cidata -joliet -rock), never by hand. genisoimage is run
 * directly: cloud-localds is a shell script around it that costs 100 ms more per VM. Values are
 * written as JSON strings (valid YAML) with every non-ASCII character escaped. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmhost/vmhost.h"

extern char **environ;

static int seed_write(const char *dir, const char *name, const char *text)
{
        char *path = NULL;
        FILE *f;
        int r = 0;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        unlink(path);
        f = fopen(path, "wxe");
        r = f ? 0 : -errno;
        free(path);
        if (!f)
                return r;
        if (fputs(text, f) < 0)
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r;
}

/* A JSON string literal for s (malloc'd). */
static char *seed_quote(const char *s)
{
        json_t *v = json_string(s);
        char *q = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;

        json_decref(v);
        return q;
}

static int seed_texts(const char *dir, const char *vm_id, const struct vm_meta *m)
{
        char *id = seed_quote(vm_id), *entity = seed_quote(m->entity),
             *fleet = seed_quote(m->fleet_id);
        char *node = seed_quote(m->node_id), *vault = seed_quote(m->vault_id);
        char *meta = NULL, *user = NULL;
        int r = -ENOMEM;

        if (!id || !entity || !fleet || !node || !vault)
                goto cleanup;
        if (asprintf(&meta, "instance-id: %s\nlocal-hostname: %s\n", id, id) < 0)
                meta = NULL;
        if (asprintf(&user,
                     "#cloud-config\nhostname: %s\n"
                     "totebox:\n  vm_id: %s\n  entity: %s\n  fleet_id: %s\n  node_id: %s\n"
                     "  vault:\n    id: %s\n    device_serial: \"vault\"\n    mount: \"/vault\"\n"
                     "  channel: \"/dev/virtio-ports/" AGENT_CHANNEL_NAME "\"\n",
                     id, id, entity, fleet, node, vault) < 0)
                user = NULL;
        if (!meta || !user)
                goto cleanup;
        r = seed_write(dir, "meta-data", meta);
        r = r ?: seed_write(dir, "user-data", user);
        r = r ?: seed_write(dir, "network-config", "version: 2\nethernets: {}\n");
cleanup:
        free(id), free(entity), free(fleet), free(node), free(vault), free(meta), free(user);
        return r;
}

static int seed_spawn(const char *iso, const char *dir, pid_t *ret_pid, char *err, size_t errsize)
{
        char *ud = NULL, *md = NULL, *nc = NULL;
        char *argv[] = {"genisoimage", "-quiet", "-output", (char *)iso, "-volid", "cidata",
                        "-joliet",     "-rock",  NULL,      NULL,        NULL,     NULL};
        posix_spawn_file_actions_t fa;
        int r;

        if (asprintf(&ud, "%s/user-data", dir) < 0)
                ud = NULL;
        if (asprintf(&md, "%s/meta-data", dir) < 0)
                md = NULL;
        if (asprintf(&nc, "%s/network-config", dir) < 0)
                nc = NULL;
        r = ENOMEM;
        if (ud && md && nc) {
                argv[8] = ud, argv[9] = md, argv[10] = nc;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
                r = posix_spawnp(ret_pid, "genisoimage", &fa, NULL, argv, environ);
                posix_spawn_file_actions_destroy(&fa);
        }
        free(ud), free(md), free(nc);
        if (r != 0) {
                snprintf(err, errsize, "cannot run genisoimage: %s", strerror(r));
                return -r;
        }
        return 0;
}

/* The ISO made 0600 before genisoimage writes into it (it keeps the mode of the file it finds):
 * with qemu:///system the seeds directory is searchable by every user, for QEMU's
 * (policy_state_dir_mode), and a seed names the VM's entity, fleet and vault; libvirt's DAC
 * driver makes QEMU's user its owner for the run. */
static int seed_create(const char *path)
{
        int fd;

        unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

int seed_wait(pid_t pid, char *err, size_t errsize)
{
        int status = 0;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                snprintf(err, errsize, "genisoimage failed with status %d", status);
                return -EIO;
        }
        return 0;
}

int seed_start(const char *path, const char *vm_id, const struct vm_meta *meta, pid_t *ret_pid,
               char *err, size_t errsize)
{
        char *dir = NULL;
        int r;

        if (asprintf(&dir, "%s.d", path) < 0) {
                snprintf(err, errsize, "out of memory");
                return -ENOMEM;
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(err, errsize, "cannot create '%s': %s", dir, strerror(-r));
                free(dir);
                return r;
        }
        r = seed_create(path);
        if (r < 0)
                snprintf(err, errsize, "cannot create '%s': %s", path, strerror(-r));
        else if ((r = seed_texts(dir, vm_id, meta)) < 0)
                snprintf(err, errsize, "cannot write the seed files in '%s': %s", dir,
                         strerror(-r));
        else
                r = seed_spawn(path, dir, ret_pid, err, errsize);
        free(dir);
        return r;
}

int seed_build(const char *path, const char *vm_id, const struct vm_meta *meta, char *err,
               size_t errsize)
{
        pid_t pid;
        int r = seed_start(path, vm_id, meta, &pid, err, errsize);

        return r < 0 ? r : seed_wait(pid, err, errsize);
}
