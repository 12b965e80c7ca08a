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

static void ctl_import_show(json_t *p)
{
        printf("import plan %s: VM '%s' from node '%s' to node '%s'\n", ctl_str(p, "id"),
               ctl_str(p, "vm_id"), ctl_str(p, "from_node"), ctl_str(p, "node"));
        printf("file:       %s (sha256 %s; the fleet's signature checked on node '%s')\n",
               ctl_str(p, "file"), ctl_str(p, "sha256"), ctl_str(p, "node"));
        printf("checkpoint: tree size %lld, the one the fleet witnessed last\n",
               (long long)json_integer_value(json_object_get(p, "checkpoint_size")));
        printf("expires:    %s\n", ctl_str(p, "expires_at"));
}

static int ctl_import_confirm(struct ctl *c, const char *id)
{
        char path[128];
        json_t *a = NULL, *res = NULL;
        long st;
        int r;

        snprintf(path, sizeof(path), "/v1/imports/%.40s/confirm", id);
        st = ctl_call(c, "POST", path, NULL, &a);
        if (st < 0)
                return 3;
        if (st != 202) {
                r = ctl_problem(c, st, a);
                json_decref(a);
                return r;
        }
        r = ctl_operation_outcome(c, a, &res);
        json_decref(a);
        if (r >= 0)
                return r;
        if (c->json)
                ctl_print(c, res);
        else
                printf("VM '%s' re-homed to node '%s' (from '%s'); the old pin is retired\n",
                       ctl_str(json_object_get(res, "vm"), "id"), ctl_str(res, "node_id"),
                       ctl_str(res, "from_node"));
        json_decref(res);
        return 0;
}

int ctl_cmd_import(struct ctl *c)
{
        json_t *a = NULL, *body;
        const char *file;
        long st;
        int r;

        if (c->argc != 1 || c->n_witness_nodes != 1) {
                fprintf(stderr, "fleetctl: import needs FILE and one --node N (the node that "
                                "holds the file in its state directory's exports/)\n");
                return 2;
        }
        file = strrchr(c->argv[0], '/') ? strrchr(c->argv[0], '/') + 1 : c->argv[0];
        body = json_pack("{s:s, s:s}", "file", file, "node", c->witness_nodes[0]);
        st = ctl_call(c, "POST", "/v1/imports", body, &a);
        json_decref(body);
        if (st < 0)
                return 3;
        if (st != 201) {
                r = ctl_problem(c, st, a);
                json_decref(a);
                return r;
        }
        if (c->json && !c->yes) {
                ctl_print(c, a);
                json_decref(a);
                return 0;
        }
        if (!c->json)
                ctl_import_show(a);
        r = c->yes || ctl_ask("\nRe-home this Totebox (its old node never starts it again)?")
                ? ctl_import_confirm(c, ctl_str(a, "id"))
                : (printf("not confirmed; plan %s expires at %s\n", ctl_str(a, "id"),
                          ctl_str(a, "expires_at")),
                   0);
        json_decref(a);
        return r;
}
