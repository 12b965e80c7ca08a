/* ETags of the resources operators change (a VM, a plan) and If-Match. A resource's ETag names
 * its revision, as Incus's do: a hash of what operators change and act on (a VM's status and
 * lifecycle and whether a call to its node is in flight, a plan's state), not of the answer's
 * bytes, whose soft fields (heartbeat figures, libvirt state) move on their own. A verb or a
 * DELETE that carries If-Match runs only while the resource is still at that revision, checked
 * under the same lock as the change: of two operators who read one revision, one wins and the
 * other gets precondition-failed (412) with the current ETag. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "fleetd/fleetd.h"
#include "fleetd/store.h"

void fleet_etag(const char *text, size_t len, char buf[FLEET_ETAG_SIZE])
{
        uint8_t h[16];

        crypto_generichash(h, sizeof(h), (const unsigned char *)text, len, NULL, 0);
        buf[0] = '"';
        sodium_bin2hex(buf + 1, 33, h, sizeof(h));
        buf[33] = '"';
        buf[34] = '\0';
}

void vm_etag(const struct fleet_vm *vm, char buf[FLEET_ETAG_SIZE])
{
        char text[160];
        int n =
            snprintf(text, sizeof(text), "vm\n%s\n%s\n%s\n%d", vm->id, vm_status_name(vm->status),
                     vm_lifecycle_name(vm->lifecycle), vm->verb_busy);

        fleet_etag(text, (size_t)n, buf);
}

void plan_etag(const struct plan_row *p, char buf[FLEET_ETAG_SIZE])
{
        char text[160];
        int n = snprintf(text, sizeof(text), "plan\n%s\n%s\n%s", p->id, p->state, p->vm_id);

        fleet_etag(text, (size_t)n, buf);
}

bool etag_if_match(const char *header, const char *etag)
{
        size_t n = strlen(etag);

        if (!header)
                return true;
        for (const char *p = header; *p;) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (*p == '*' && (p[1] == '\0' || p[1] == ',' || p[1] == ' '))
                        return true;
                /* a weak tag (W/"...") never matches: If-Match compares strongly (RFC 9110) */
                if (strncmp(p, etag, n) == 0 &&
                    (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
                        return true;
                while (*p && *p != ',')
                        p++;
        }
        return false;
}

bool etag_precondition(const char *if_match, const char *tag, const char *what,
                       struct plan_outcome *o)
{
        if (etag_if_match(if_match, tag))
                return true;
        outcome_fail(o, -ESTALE, "precondition-failed",
                     "%s changed since it was read (ETag %s now); read it again", what, tag);
        o->body = json_pack("{s:s}", "etag", tag);
        return false;
}
