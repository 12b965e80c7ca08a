/* fleetctl audit verify [--node ADDR:PORT]... [--witness FILE]... [--via-fleetd] [--key VKEY]:
 * checks fleetd's audit record in the state directory (fleetd running or not) entry by entry,
 * and against every signed checkpoint there is: the database's own, fleetd's checkpoint file,
 * and each node's witnessed checkpoint, fetched from its node API (GET /v1/audit-checkpoint),
 * relayed by fleetd (GET /v1/audit/witnesses), or read from a file (that answer saved, or a bare
 * checkpoint note). The key is --key, else the state directory's audit.pub. Exit status: 0
 * intact, 1 a finding (each named: tampered, truncation, rollback, fork, bad-witness,
 * refused-checkpoint), 2 usage, 3 a witness could not be read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/small_file.h"
#include "fleetctl/fleetctl.h"
#include "fleetd/audit_log.h"
#include "fleetd/store.h"

#define CTL_WITNESS_FILE_MAX (1024 * 1024)
#define CTL_WITNESSES_MAX    (CTL_WITNESS_MAX * 10)

struct ctl_witnesses {
        struct audit_witness w[CTL_WITNESSES_MAX];
        char *owned[CTL_WITNESSES_MAX * 2]; /* notes and holder names */
        size_t n, n_owned;
        json_t *docs[2 * CTL_WITNESS_MAX]; /* answers the notes point into */
        size_t n_docs;
        bool unreadable;
        struct ctl peer; /* the options as a node's call or a relayed problem sees them: a copy
                            of 1.2 KiB, here rather than in a frame */
};

static const char *ctl_keep(struct ctl_witnesses *ws, char *s)
{
        if (!s || ws->n_owned == sizeof(ws->owned) / sizeof(ws->owned[0])) {
                free(s);
                return NULL;
        }
        ws->owned[ws->n_owned++] = s;
        return s;
}

static void ctl_witness_add(struct ctl_witnesses *ws, char *holder, const char *note, bool evidence)
{
        const char *h = ctl_keep(ws, holder);

        if (!h || !note || ws->n == CTL_WITNESSES_MAX)
                return;
        ws->w[ws->n++] = (struct audit_witness){
            .holder = h, .note = note, .len = strlen(note), .evidence = evidence};
}

/* A node's answer: its held checkpoint and the ones it refused and kept. */
static void ctl_witness_answer(struct ctl_witnesses *ws, json_t *doc, const char *where)
{
        const char *node = json_string_value(json_object_get(doc, "node"));
        json_t *held = json_object_get(doc, "checkpoint"), *e;
        char holder[512];
        size_t i;

        if (ws->n_docs == sizeof(ws->docs) / sizeof(ws->docs[0])) {
                json_decref(doc);
                return;
        }
        ws->docs[ws->n_docs++] = doc;
        snprintf(holder, sizeof(holder), "node '%s' (%s)", node ? node : "?", where);
        if (json_is_string(held))
                ctl_witness_add(ws, strdup(holder), json_string_value(held), false);
        json_array_foreach(json_object_get(doc, "refused"), i, e)
        {
                const char *note = json_string_value(json_object_get(e, "checkpoint"));

                if (note)
                        ctl_witness_add(ws, strdup(holder), note, true);
        }
}

static void ctl_witness_file(struct ctl_witnesses *ws, const char *path)
{
        size_t len = 0;
        char *text = NULL, holder[512];
        json_t *doc;

        if (small_file_read(path, CTL_WITNESS_FILE_MAX, false, &text, &len) < 0) {
                fprintf(stderr,
                        "fleetctl: cannot read the witness file '%s' (a regular file of "
                        "at most 1 MiB)\n",
                        path);
                ws->unreadable = true;
                return;
        }
        doc = text[0] == '{' ? json_loadb(text, len, 0, NULL) : NULL;
        if (doc) {
                free(text);
                ctl_witness_answer(ws, doc, path);
                return;
        }
        snprintf(holder, sizeof(holder), "the checkpoint in '%s'", path);
        ctl_witness_add(ws, strdup(holder), ctl_keep(ws, text), false);
}

static void ctl_witness_node(struct ctl *c, struct ctl_witnesses *ws, const char *addr)
{
        char url[300];
        struct ctl *node = &ws->peer;
        json_t *doc = NULL;
        long st;

        snprintf(url, sizeof(url), "http://%.250s", addr);
        *node = *c;
        node->url = url;
        node->token = NULL;
        st = ctl_call(node, "GET", "/v1/audit-checkpoint", NULL, &doc);
        if (st != 200 || !json_is_object(doc)) {
                fprintf(stderr,
                        "fleetctl: no audit checkpoint from the node at '%s' (status %ld)\n", addr,
                        st);
                json_decref(doc);
                ws->unreadable = true;
                return;
        }
        ctl_witness_answer(ws, doc, addr);
}

/* The nodes' answers as fleetd relays them (GET /v1/audit/witnesses): convenient, but a fleetd
 * that lies could leave a node out; --node asks the nodes themselves. */
static void ctl_witness_fleetd(struct ctl *c, struct ctl_witnesses *ws)
{
        json_t *doc = NULL, *w;
        long st = ctl_call(c, "GET", "/v1/audit/witnesses", NULL, &doc);
        size_t i;

        if (st != 200) {
                if (st > 0) {
                        ws->peer = *c;
                        ws->peer.json = false; /* one JSON document on stdout: the report */
                        ctl_problem(&ws->peer, st, doc);
                }
                ws->unreadable = true;
        }
        json_array_foreach(json_object_get(doc, "witnesses"), i, w)
        {
                json_t *answer = json_object_get(w, "answer");

                if (json_is_object(answer))
                        ctl_witness_answer(ws, json_incref(answer), "via fleetd");
                else {
                        fprintf(stderr,
                                "fleetctl: fleetd got no audit checkpoint from node '%s': "
                                "%s\n",
                                ctl_str(w, "node"), ctl_str(w, "error"));
                        ws->unreadable = true;
                }
        }
        json_decref(doc);
}

static void ctl_witnesses_free(struct ctl_witnesses *ws)
{
        for (size_t i = 0; i < ws->n_owned; i++)
                free(ws->owned[i]);
        for (size_t i = 0; i < ws->n_docs; i++)
                json_decref(ws->docs[i]);
        free(ws);
}

static int ctl_audit_key(struct ctl *c, struct tlog_key *ret)
{
        char err[512];

        if (c->audit_key) {
                if (tlog_vkey_parse(c->audit_key, ret) == 0)
                        return 0;
                fprintf(stderr, "fleetctl: --key '%s' is not a C2SP verifier key\n", c->audit_key);
                return -EINVAL;
        }
        if (audit_pub_load(c->state_dir, ret, err, sizeof(err)) == 0)
                return 0;
        fprintf(stderr, "fleetctl: %s (give fleetd's key with --key)\n", err);
        return -ENOKEY;
}

static void ctl_audit_print(struct ctl *c, const struct audit_report *rep, const char *vkey)
{
        json_t *o, *f;

        if (c->json) {
                f = json_array();
                for (unsigned i = 0; i < rep->n_findings; i++)
                        json_array_append_new(f,
                                              json_pack("{s:s, s:s}", "kind",
                                                        audit_finding_name(rep->findings[i].kind),
                                                        "detail", rep->findings[i].text));
                o = json_pack("{s:b, s:I, s:i, s:I, s:s, s:o}", "ok", rep->n_findings == 0,
                              "entries", (json_int_t)rep->entries, "checkpoints_checked",
                              (int)rep->checked, "largest_checkpoint", (json_int_t)rep->largest,
                              "key", vkey, "findings", f);
                ctl_print(c, o);
                json_decref(o);
        }
        for (unsigned i = 0; i < rep->n_findings; i++)
                fprintf(stderr, "fleetctl: audit record BROKEN (%s): %s\n",
                        audit_finding_name(rep->findings[i].kind), rep->findings[i].text);
        if (!c->json && rep->n_findings == 0)
                printf("audit record intact: %llu entries, every hash links to the one before; "
                       "consistent with %u signed checkpoint%s (largest %llu)\n",
                       (unsigned long long)rep->entries, rep->checked, rep->checked == 1 ? "" : "s",
                       (unsigned long long)rep->largest);
        if (rep->n_findings == 0 && rep->checked == 0)
                fprintf(stderr, "fleetctl: warning: no signed checkpoint to hold the record "
                                "against; name the nodes that witness it (--node)\n");
}

/* Before fleetd's first start there is no key and no checkpoint: only the chain is checked. */
static int ctl_audit_chain_only(struct ctl *c, struct store *s)
{
        char err[256] = "";
        uint64_t n = 0;

        if (audit_verify(s, &n, err, sizeof(err)) < 0) {
                fprintf(stderr, "fleetctl: audit record BROKEN (tampered): %s\n", err);
                return 1;
        }
        if (c->json)
                printf("{\"ok\": true, \"entries\": %llu, \"checkpoints_checked\": 0}\n",
                       (unsigned long long)n);
        else
                printf("audit record intact: %llu entries, every hash links to the one before; "
                       "no checkpoint signed yet (fleetd has not started)\n",
                       (unsigned long long)n);
        return 0;
}

int ctl_cmd_audit_verify(struct ctl *c)
{
        struct ctl_witnesses *ws = calloc(1, sizeof(*ws));
        struct audit_report *rep = calloc(1, sizeof(*rep));
        struct store *s = NULL;
        struct tlog_key key;
        char vkey[TLOG_VKEY_MAX + 1] = "", *own = NULL;
        int r = 1;

        if (!ws || !rep || ctl_open_store(c, false, &s) < 0)
                goto cleanup;
        own = audit_checkpoint_stored(s);
        if (!c->audit_key && !own && !c->n_witness_nodes && !c->n_witness_files && !c->via_fleetd &&
            audit_pub_load(c->state_dir, &key, vkey, sizeof(vkey)) == -ENOENT) {
                r = ctl_audit_chain_only(c, s);
                goto cleanup;
        }
        if (ctl_audit_key(c, &key) < 0)
                goto cleanup;
        tlog_vkey_format(&key, vkey, sizeof(vkey));
        for (unsigned i = 0; i < c->n_witness_nodes; i++)
                ctl_witness_node(c, ws, c->witness_nodes[i]);
        for (unsigned i = 0; i < c->n_witness_files; i++)
                ctl_witness_file(ws, c->witness_files[i]);
        if (c->via_fleetd)
                ctl_witness_fleetd(c, ws);
        r = audit_log_check(s, c->state_dir, &key, ws->w, ws->n, rep);
        if (r == -EIO || r == -ENOMEM) {
                fprintf(stderr, "fleetctl: cannot read the audit record: %s\n", strerror(-r));
                r = 1;
                goto cleanup;
        }
        ctl_audit_print(c, rep, vkey);
        r = rep->n_findings ? 1 : ws->unreadable ? 3 : 0;
cleanup:
        free(own);
        store_close(s);
        if (ws)
                ctl_witnesses_free(ws);
        free(rep);
        return r;
}
