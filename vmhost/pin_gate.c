/* The pin gate: vmhost starts a domain only when its pin, signed by the fleet controller, names
 * this node. The controller's key comes from the roster (genesis-signed); this node's identity
 * is its node id and the WireGuard key of its own interface, which a node cannot claim for
 * another: copying a VM's disks and definition to another node, editing the metadata, splicing
 * in another VM's pin or forging one each fail here. Legacy domains without a pin never start. */
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/wg.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

/* The key comes from the helper: vmhost neither talks netlink nor reads the private key. */
int pin_gate_own_wg_key(struct vmhost *vh, char ret[WG_KEY_B64_LEN + 1])
{
        return vmh_wg_public_key(vh, ret);
}

int pin_gate_check(struct vmhost *vh, const char *vm_id, const struct pin *pin, bool pin_bad,
                   const char *entity, const char *image, int err, struct vm_problem *p)
{
        char fleet_id[NODE_ID_MAX + 1] = "", wg[WG_KEY_B64_LEN + 1] = "";
        uint8_t pk[32];
        bool have_key = roster_pin_key(vh, pk, fleet_id) == 0;
        struct pin_expect e = {.fleet_id = fleet_id,
                               .vm_id = vm_id,
                               .node_id = vh->cfg.node_id,
                               .node_wg_key = wg,
                               .entity = entity,
                               .image = image};
        enum pin_verdict v;

        if (have_key && pin_gate_own_wg_key(vh, wg) < 0)
                return vms_problem(p, err, "pin-refused",
                                   "VM '%s' not started: node '%s' cannot read its own WireGuard "
                                   "key to check the pin",
                                   vm_id, vh->cfg.node_id);
        v = pin_check(pin_bad ? NULL : pin, have_key ? pk : NULL, &e);
        if (v == PIN_OK)
                return 0;
        if (v == PIN_OTHER_NODE || v == PIN_OTHER_WG_KEY)
                return vms_problem(p, -EPERM, "pinned-elsewhere",
                                   "VM '%s' is pinned to node '%s' (WireGuard key '%s') of fleet "
                                   "'%s'; this is node '%s'; refused",
                                   vm_id, pin->node_id, pin->node_wg_key, pin->fleet_id,
                                   vh->cfg.node_id);
        if (v == PIN_NO_KEY)
                return vms_problem(p, err, "pin-refused",
                                   "VM '%s' not started: the roster names no controller pin key "
                                   "(or does not verify under the genesis key)",
                                   vm_id);
        return vms_problem(p, err, "pin-refused", "VM '%s' not started: its pin is '%s'%s", vm_id,
                           pin_bad ? "malformed" : pin_verdict_name(v),
                           v == PIN_MISSING ? " (a domain without a signed pin never starts)" : "");
}
