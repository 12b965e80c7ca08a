/* Node figures from /proc: CPU utilisation from /proc/stat counter deltas, RAM from
 * /proc/meminfo's MemAvailable (the kernel's estimate of what can be allocated without swap);
 * the room for VM disks from statvfs of their directory, less what the sparse disks in it may
 * still take (their size beyond the blocks they hold), as RAM counts defined guests. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhost/vmhost.h"

#define SAMPLE_MEMINFO_MAX 4096

int sample_parse_stat(const char *buf, struct cpu_sample *ret)
{
        unsigned long long v[8] = {0};
        int n;

        if (strncmp(buf, "cpu ", 4) != 0)
                return -EINVAL;
        n = sscanf(buf + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
        if (n < 4)
                return -EINVAL;
        ret->total = 0;
        for (int i = 0; i < n; i++)
                ret->total += v[i];
        ret->idle = v[3] + (n > 4 ? v[4] : 0);
        return 0;
}

static int sample_meminfo_field(const char *buf, const char *name, uint64_t *ret)
{
        const char *p = buf;
        size_t len = strlen(name);

        while (p && *p) {
                if (strncmp(p, name, len) == 0 && p[len] == ':')
                        return sscanf(p + len + 1, "%" SCNu64, ret) == 1 ? 0 : -EINVAL;
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        return -ENOENT;
}

int sample_parse_meminfo(const char *buf, struct mem_sample *ret)
{
        struct mem_sample m;

        if (sample_meminfo_field(buf, "MemTotal", &m.total_kib) < 0 ||
            sample_meminfo_field(buf, "MemAvailable", &m.available_kib) < 0)
                return -EINVAL;
        *ret = m;
        return 0;
}

double sample_cpu_percent(const struct cpu_sample *prev, const struct cpu_sample *cur)
{
        uint64_t total, idle;

        if (cur->total <= prev->total)
                return 0.0;
        total = cur->total - prev->total;
        idle = cur->idle >= prev->idle ? cur->idle - prev->idle : 0;
        if (idle > total)
                idle = total;
        return 100.0 * (double)(total - idle) / (double)total;
}

static int sample_read_file(const char *path, char *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return 0;
}

int sample_read_cpu(struct cpu_sample *ret)
{
        char buf[512];
        int r = sample_read_file("/proc/stat", buf, sizeof(buf));

        return r < 0 ? r : sample_parse_stat(buf, ret);
}

int sample_read_mem(struct mem_sample *ret)
{
        char *buf = malloc(SAMPLE_MEMINFO_MAX); /* on the heap: a page, read in one go */
        int r = buf ? sample_read_file("/proc/meminfo", buf, SAMPLE_MEMINFO_MAX) : -ENOMEM;

        r = r < 0 ? r : sample_parse_meminfo(buf, ret);
        free(buf);
        return r;
}

/* What the sparse files in dir may still take: size beyond the blocks each holds. */
static uint64_t sample_sparse_rest(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        uint64_t rest = 0;

        if (!d)
                return 0;
        while ((e = readdir(d))) {
                struct stat st;

                if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) < 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                if ((uint64_t)st.st_size > (uint64_t)st.st_blocks * 512)
                        rest += (uint64_t)st.st_size - (uint64_t)st.st_blocks * 512;
        }
        closedir(d);
        return rest;
}

int sample_read_disk(const char *dir, const char *fallback, uint64_t *ret_free_mib)
{
        struct statvfs v;
        uint64_t free_bytes, rest;

        if (statvfs(dir, &v) < 0 && statvfs(fallback, &v) < 0)
                return -errno;
        free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
        rest = sample_sparse_rest(dir);
        *ret_free_mib = free_bytes > rest ? (free_bytes - rest) >> 20 : 0;
        return 0;
}
