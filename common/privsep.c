/* Privilege drop and system call filter for the unprivileged half of a split daemon
 * (common/privsep.h). Raw prctl, capset and seccomp (linux/filter.h), no libcap or libseccomp:
 * the filter is a short deny list, checked against the build's architecture first. */
#include "common/privsep.h"

#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* LeakSanitizer stops the process's threads with ptrace at exit: the ASan+UBSan build (which the
 * tests also run) keeps ptrace so that its leak check runs; a release build refuses it. */
#if defined(__SANITIZE_ADDRESS__)
#define PRIVSEP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PRIVSEP_SANITIZED 1
#endif
#endif

#if defined(__x86_64__)
#define PRIVSEP_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PRIVSEP_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

void privsep_close_fds_except(const int *keep, size_t n)
{
        unsigned from = 3;

        for (;;) {
                unsigned next = ~0U;

                for (size_t i = 0; i < n; i++)
                        if (keep[i] >= (int)from && (unsigned)keep[i] < next)
                                next = (unsigned)keep[i];
                if (next > from)
                        close_range(from, next == ~0U ? ~0U : next - 1, 0);
                if (next == ~0U)
                        return;
                from = next + 1;
        }
}

int privsep_user_find(const char *user, struct privsep_drop *d)
{
        struct passwd *pw = getpwnam(user);

        if (!pw)
                return -ENOENT;
        d->uid = pw->pw_uid;
        d->gid = pw->pw_gid;
        d->have_user = true;
        return 0;
}

static int privsep_caps_clear(void)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2];

        memset(d, 0, sizeof(d));
        return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

static void privsep_bounding_clear(void)
{
        for (int cap = 0; cap < 64; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
                        break; /* past the kernel's last capability */
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

static int privsep_user_switch(const struct privsep_drop *d)
{
        if (geteuid() != 0 || !d->have_user)
                return 0;
        if (setgroups(0, NULL) < 0 || setresgid(d->gid, d->gid, d->gid) < 0 ||
            setresuid(d->uid, d->uid, d->uid) < 0)
                return -errno;
        return 0;
}

#define PRIVSEP_DENY(nr)                                                                           \
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                                           \
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EACCES & SECCOMP_RET_DATA))

static int privsep_filter(const struct privsep_drop *d)
{
#ifdef PRIVSEP_AUDIT_ARCH
        struct sock_filter head[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PRIVSEP_AUDIT_ARCH, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
                /* the x32 ABI numbers: refused whole */
                BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
#endif
        };
        struct sock_filter always[] = {
            PRIVSEP_DENY(__NR_execve),
            PRIVSEP_DENY(__NR_execveat),
#ifndef PRIVSEP_SANITIZED
            PRIVSEP_DENY(__NR_ptrace),
#endif
            PRIVSEP_DENY(__NR_process_vm_readv),
            PRIVSEP_DENY(__NR_process_vm_writev),
            PRIVSEP_DENY(__NR_mount),
            PRIVSEP_DENY(__NR_umount2),
            PRIVSEP_DENY(__NR_chroot),
            PRIVSEP_DENY(__NR_pivot_root),
            PRIVSEP_DENY(__NR_setns),
            PRIVSEP_DENY(__NR_unshare),
            PRIVSEP_DENY(__NR_bpf),
            PRIVSEP_DENY(__NR_init_module),
            PRIVSEP_DENY(__NR_finit_module),
            PRIVSEP_DENY(__NR_kexec_load),
            PRIVSEP_DENY(__NR_perf_event_open),
            PRIVSEP_DENY(__NR_keyctl),
            PRIVSEP_DENY(__NR_add_key),
            PRIVSEP_DENY(__NR_request_key),
            PRIVSEP_DENY(__NR_userfaultfd),
            PRIVSEP_DENY(__NR_io_uring_setup),
            PRIVSEP_DENY(__NR_open_by_handle_at),
            PRIVSEP_DENY(__NR_name_to_handle_at),
        };
        struct sock_filter files[] = {
#ifdef __NR_open
            PRIVSEP_DENY(__NR_open),
#endif
#ifdef __NR_creat
            PRIVSEP_DENY(__NR_creat),
#endif
            PRIVSEP_DENY(__NR_openat),
            PRIVSEP_DENY(__NR_openat2),
        };
        struct sock_filter sockets[] = {
            PRIVSEP_DENY(__NR_socket), PRIVSEP_DENY(__NR_socketpair), PRIVSEP_DENY(__NR_connect),
            PRIVSEP_DENY(__NR_bind),   PRIVSEP_DENY(__NR_listen),
        };
        struct sock_filter tail[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        struct sock_filter
            prog[sizeof(head) / sizeof(head[0]) + sizeof(always) / sizeof(always[0]) +
                 sizeof(files) / sizeof(files[0]) + sizeof(sockets) / sizeof(sockets[0]) + 1];
        struct sock_fprog fp = {.filter = prog};
        size_t n = 0;

#define PRIVSEP_ADD(part)                                                                          \
        do {                                                                                       \
                memcpy(prog + n, part, sizeof(part));                                              \
                n += sizeof(part) / sizeof(part[0]);                                               \
        } while (0)
        PRIVSEP_ADD(head);
        PRIVSEP_ADD(always);
        if (d->no_files)
                PRIVSEP_ADD(files);
        if (d->no_sockets)
                PRIVSEP_ADD(sockets);
        PRIVSEP_ADD(tail);
#undef PRIVSEP_ADD
        fp.len = (unsigned short)n;
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) < 0 ? -errno : 0;
#else
        (void)d;
        return -ENOSYS;
#endif
}

int privsep_drop_now(const struct privsep_drop *d, char *err, size_t errsize)
{
        const char *step = "setresuid";
        int r;

        privsep_bounding_clear(); /* needs CAP_SETPCAP: as root; a no-op otherwise */
        r = privsep_user_switch(d);
        if (r == 0) {
                step = "capset";
                r = privsep_caps_clear();
        }
        if (r == 0) {
                step = "prctl(PR_SET_NO_NEW_PRIVS)";
                r = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
        }
        if (r == 0) {
                step = "seccomp";
                r = privsep_filter(d);
        }
        if (r < 0)
                snprintf(err, errsize, "cannot drop privileges: %s: %s", step, strerror(-r));
        return r;
}
