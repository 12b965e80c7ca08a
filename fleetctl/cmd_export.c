/* fleetctl export VM: asks fleetd to write a suspended or archived Totebox as one signed file on
 * its node (an operation, followed to its end unless --no-wait), then prints where the file is,
 * its size and checksums, and the fleet key that signed it (docs/operations.md "A Totebox as one
 * file"). The file stays on the node; fleetctl copies nothing. */
#include <stdio.h>
#include <string.h>

#include "fleetctl/fleetctl.h"

static void ctl_export_show(json_t *a)
{
        printf("export of VM '%s' written on node '%s'\n", ctl_str(a, "vm_id"),
               ctl_str(a, "node_id"));
        printf("file:        %s\n", ctl_str(a, "file"));
        printf("size:        %lld bytes\n",
               (long long)json_integer_value(json_object_get(a, "size")));
        printf("sha256:      %s\n", ctl_str(a, "sha256"));
        printf("blake2b-256: %s\n", ctl_str(a, "blake2b_256"));
        printf("checksum:    %s (a sha256sum line, signed by the fleet)\n",
               ctl_str(a, "sha256_file"));
        printf("signature:   %s (Ed25519, 64 bytes)\n", ctl_str(a, "signature_file"));
        printf("checkpoint:  tree size %lld (the latest the fleet witnessed)\n",
               (long long)json_integer_value(json_object_get(a, "checkpoint_size")));
        if (json_integer_value(json_object_get(a, "resumed_bytes")) > 0)
                printf("resumed:     %lld bytes kept from an interrupted export\n",
                       (long long)json_integer_value(json_object_get(a, "resumed_bytes")));
        printf("fleet key (save as fleet.pem to check the signature with openssl):\n%s",
               ctl_str(a, "fleet_public_key_pem"));
}

int ctl_cmd_export(struct ctl *c)
{
        char path[256];
        json_t *a = NULL, *res = NULL;
        long st;

        if (c->argc != 1) {
                fprintf(stderr, "fleetctl: export needs a VM id\n");
                return 2;
        }
        if (ctl_path_arg(c, "/v1/vms", path, sizeof(path)) < 0)
                return 2;
        strncat(path, "/export", sizeof(path) - strlen(path) - 1);
        st = ctl_call(c, "POST", path, NULL, &a);
        if (st < 0)
                return 3;
        if (st == 202) {
                int r = ctl_operation_outcome(c, a, &res);

                json_decref(a);
                if (r >= 0)
                        return r;
                a = res;
                st = 200;
        }
        if (st != 200)
                ctl_problem(c, st, a);
        else if (c->json)
                ctl_print(c, a);
        else
                ctl_export_show(a);
        json_decref(a);
        return st == 200 ? 0 : 1;
}
