/* Dropping privilege in the process of a split daemon that reads untrusted input (network
 * frames, guest lines): to an unprivileged user when started as root, no capabilities in any
 * set, no_new_privs, and a seccomp filter that refuses the system calls such a process never
 * needs once it is set up: opening files, making sockets (so no netlink, no new listeners),
 * exec, ptrace and the like. What it still holds are the descriptors it was given. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PRIVSEP_USER "nobody" /* the default; a deployment may make its own user */

struct privsep_drop {
        uid_t uid;
        gid_t gid;
        bool have_user;  /* uid/gid found (privsep_user_find), used when running as root */
        bool no_files;   /* seccomp: refuse open/openat/creat/... with EACCES */
        bool no_sockets; /* seccomp: refuse socket/socketpair/connect/bind/listen with EACCES */
};

/* Looks user up (before the drop: it reads /etc/passwd). -ENOENT when there is no such user. */
int privsep_user_find(const char *user, struct privsep_drop *d);
/* Drops what d says, in this order: bounding set, supplementary groups, gid, uid (as root with a
 * user), all capabilities, no_new_privs, the seccomp filter. err names the step that failed. */
int privsep_drop_now(const struct privsep_drop *d, char *err, size_t errsize);
