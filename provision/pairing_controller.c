/* The genesis names the fleet controller's pin key (common/pin.h): a new roster version with
 * `controller_pin_key`, signed by the genesis key, stored, and pushed to every member's vmhost
 * (the genesis included, since its own vmhost checks pins too). Naming the key is an operator
 * decision made on the genesis, like admitting a node: the key comes from the controller's
 * fleetd (state_dir/pin.pub, or /v1/health) over a channel the operator trusts. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "provision/pairing.h"

static struct roster *pair_roster_with_pin_key(const struct roster *cur, const char *pin_key,
                                               const uint8_t sk[64], char *err, size_t errsize)
{
        json_t *o = roster_to_json(cur);

        json_object_del(o, "signature");
        json_object_set_new(o, "version", json_integer((json_int_t)cur->version + 1));
        json_object_set_new(o, "controller_pin_key", json_string(pin_key));
        return roster_from_json_signed(o, sk, err, errsize);
}

int pair_controller_key_set(const char *state_dir, const char *pin_key, unsigned node_api_port,
                            bool no_wg, FILE *out)
{
        struct roster *cur = NULL, *next = NULL;
        char err[256] = "";
        uint8_t sk[64], pk[32];
        size_t n = 0;
        int ret;

        if (strlen(pin_key) != WG_KEY_B64_LEN ||
            sodium_base642bin(pk, sizeof(pk), pin_key, strlen(pin_key), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != sizeof(pk)) {
                fprintf(stderr, "controller-key: '%.60s' is not a base64 Ed25519 public key\n",
                        pin_key);
                return -EINVAL;
        }
        ret = pair_genesis_key_require("controller-key", state_dir, sk);
        if (ret < 0)
                return ret;
        cur = pair_roster_load(state_dir, err, sizeof(err));
        if (cur && strcmp(cur->controller_pin_key, pin_key) == 0) {
                fprintf(out, "roster version %llu already names controller pin key %s\n",
                        (unsigned long long)cur->version, pin_key);
                next = cur;
                cur = NULL;
        } else if (cur) {
                next = pair_roster_with_pin_key(cur, pin_key, sk, err, sizeof(err));
                ret = next ? pair_roster_store(state_dir, next) : -EINVAL;
        }
        sodium_memzero(sk, sizeof(sk));
        if (!next || ret < 0) {
                fprintf(stderr, "controller-key: cannot make the new roster: %s\n",
                        err[0] ? err : strerror(-ret));
                roster_free(cur);
                roster_free(next);
                return ret < 0 ? ret : -EINVAL;
        }
        fprintf(out, "roster version %llu names controller '%s' pin key %s\n",
                (unsigned long long)next->version, next->controller, pin_key);
        (void)no_wg; /* the peers do not change: nothing to apply to WireGuard */
        pair_roster_push(next, "", NULL, node_api_port, out);
        roster_free(cur);
        roster_free(next);
        return 0;
}
