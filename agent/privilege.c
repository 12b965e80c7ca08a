/* Privilege: once the vault is open, the agent keeps only the capabilities its work needs and
 * drops every other one from all five sets (effective, permitted, inheritable, ambient, bounding),
 * locks the securebits so uid 0 regains nothing on execve, and sets no_new_privs. Raw prctl and
 * capset (linux/capability.h), no libcap, so the binary stays fully static. Kept for run and
 * seal (docs/agent.md says why each): CAP_LINUX_IMMUTABLE (FS_IMMUTABLE_FL on each new asset),
 * CAP_FOWNER (chmod and flags on a producer's files), CAP_DAC_OVERRIDE (read a producer's 0600
 * files, reopen the channel), CAP_LEASE (the "still open for writing" test on a producer's
 * files), CAP_CHOWN (give a producer's record to the agent: everything in a vault is its own).
 * verify keeps CAP_DAC_READ_SEARCH only. */
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent.h"

const int agent_caps_daemon[] = {CAP_LINUX_IMMUTABLE, CAP_FOWNER, CAP_DAC_OVERRIDE,
                                 CAP_LEASE,           CAP_CHOWN,  -1};
const int agent_caps_verify[] = {CAP_DAC_READ_SEARCH, -1};

static uint64_t privilege_mask(const int *keep)
{
        uint64_t m = 0;

        for (; *keep >= 0; keep++)
                m |= 1ULL << *keep;
        return m;
}

static int privilege_get(uint64_t *ret_eff, uint64_t *ret_prm)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2];

        memset(d, 0, sizeof(d));
        if (syscall(SYS_capget, &h, d) < 0)
                return -errno;
        *ret_eff = d[0].effective | (uint64_t)d[1].effective << 32;
        *ret_prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
        return 0;
}

static int privilege_set(uint64_t caps)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2];

        memset(d, 0, sizeof(d));
        d[0].effective = d[0].permitted = (uint32_t)caps;
        d[1].effective = d[1].permitted = (uint32_t)(caps >> 32);
        return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* Bounding set and securebits need CAP_SETPCAP: done first, best effort (an unprivileged agent
 * has nothing to drop there that no_new_privs does not already neutralise). */
static void privilege_bound(uint64_t keep)
{
        for (int cap = 0; cap < 64; cap++) {
                if (keep & (1ULL << cap))
                        continue;
                if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
                        break; /* past the kernel's last capability */
                prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        prctl(PR_SET_SECUREBITS,
              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                  SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0);
}

int agent_drop_privileges(const int *keep, uint64_t *ret_kept, char *err, size_t errlen)
{
        uint64_t want = privilege_mask(keep), eff = 0, prm = 0;
        const char *step = "capget";
        int r = privilege_get(&eff, &prm);

        if (r == 0) {
                privilege_bound(want);
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
                step = "capset";
                r = privilege_set(prm & want);
        }
        if (r == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                step = "prctl(PR_SET_NO_NEW_PRIVS)";
                r = -errno;
        }
        if (r == 0) {
                step = "capget";
                r = privilege_get(&eff, &prm);
        }
        if (r == 0 && (prm & ~want)) {
                step = "check";
                r = -EPERM;
        }
        /* the step is named: a seccomp filter (systemd's @privileged holds capset) answers EPERM */
        if (r < 0) {
                snprintf(err, errlen, "cannot drop capabilities: %s: %s", step, strerror(-r));
                return r;
        }
        if (ret_kept)
                *ret_kept = prm;
        return 0;
}
