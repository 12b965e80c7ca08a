/* fleetctl's commands on fleetd's state directory (run on the controller, as the user that owns
 * the state): token create/revoke/list (audit verify is audit_verify.c). A token is printed once;
 * only its SHA-256 is stored. These work whether fleetd runs or not (SQLite WAL). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fleetctl/fleetctl.h"
#include "fleetd/store.h"

int ctl_open_store(struct ctl *c, bool create, struct store **ret)
{
        char path[4200];
        int r;

        snprintf(path, sizeof(path), "%s/%s", c->state_dir, STORE_FILE);
        if (!create && access(path, R_OK) < 0) {
                fprintf(stderr, "fleetctl: no fleetd state at '%s': %s\n", path, strerror(errno));
                return -errno;
        }
        r = store_open(c->state_dir, ret);
        if (r < 0)
                fprintf(stderr, "fleetctl: cannot open '%s': %s\n", path, strerror(-r));
        return r;
}

static int ctl_token_create(struct ctl *c, struct store *s, const char *name)
{
        char token[TOKEN_TEXT_LEN + 1];
        int r = store_token_create(s, name, token);

        if (r == -EINVAL)
                fprintf(stderr, "fleetctl: token name '%s' must be 1..%d of [A-Za-z0-9._@-]\n",
                        name, TOKEN_NAME_MAX);
        else if (r == -EEXIST)
                fprintf(stderr, "fleetctl: a token named '%s' exists already\n", name);
        else if (r < 0)
                fprintf(stderr, "fleetctl: cannot store the token: %s\n", strerror(-r));
        else if (c->json)
                printf("{\"name\": \"%s\", \"token\": \"%s\"}\n", name, token);
        else
                printf("%s\n", token);
        return r < 0 ? 1 : 0;
}

int ctl_cmd_token(struct ctl *c)
{
        const char *verb = c->argc ? c->argv[0] : "";
        struct store *s = NULL;
        int r = 2;

        if (!((strcmp(verb, "create") == 0 && c->argc == 2) ||
              (strcmp(verb, "revoke") == 0 && c->argc == 2) ||
              (strcmp(verb, "list") == 0 && c->argc == 1))) {
                fprintf(stderr, "fleetctl: usage: token create NAME | token revoke NAME | token "
                                "list\n");
                return 2;
        }
        if (ctl_open_store(c, strcmp(verb, "create") == 0, &s) < 0)
                return 1;
        if (strcmp(verb, "create") == 0) {
                r = ctl_token_create(c, s, c->argv[1]);
        } else if (strcmp(verb, "revoke") == 0) {
                r = store_token_revoke(s, c->argv[1]);
                if (r < 0)
                        fprintf(stderr, "fleetctl: no live token named '%s'\n", c->argv[1]);
                else if (!c->json)
                        printf("token '%s' revoked\n", c->argv[1]);
                r = r < 0 ? 1 : 0;
        } else {
                json_t *list = store_token_list(s);
                json_t *t;
                size_t i;

                if (c->json)
                        ctl_print_json(list);
                else
                        json_array_foreach(list, i, t) printf(
                            "%-24s %s\n", ctl_str(t, "name"),
                            json_is_null(json_object_get(t, "revoked_ms")) ? "live" : "revoked");
                json_decref(list);
                r = 0;
        }
        store_close(s);
        return r;
}
