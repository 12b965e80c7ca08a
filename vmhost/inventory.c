/* The node's VM inventory: every domain that carries Totebox metadata, as vm objects
 * (schemas/vm.schema.json) sorted by id, cached with its digest for heartbeats and the node API.
 * The digest is the hex SHA-256 of json_dumps(vms, JSON_SORT_KEYS | JSON_COMPACT), followed,
 * when the node holds base images, by a newline and json_dumps(images) the same way: an image
 * that arrives or goes changes the digest, so fleetd fetches the inventory again. */
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sha256.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

int inventory_digest(json_t *vms, json_t *images, char hex[DIGEST_HEX_LEN + 1])
{
        uint8_t d[SHA256_LEN];
        struct sha256 st;
        char *text = json_dumps(vms, JSON_SORT_KEYS | JSON_COMPACT);
        char *itext =
            json_array_size(images) ? json_dumps(images, JSON_SORT_KEYS | JSON_COMPACT) : NULL;

        if (!text || (json_array_size(images) && !itext)) {
                free(text);
                free(itext);
                return -ENOMEM;
        }
        sha256_init(&st);
        sha256_update(&st, (const uint8_t *)text, strlen(text));
        if (itext) { /* a node with no image keeps the digest of its VMs alone */
                sha256_update(&st, (const uint8_t *)"\n", 1);
                sha256_update(&st, (const uint8_t *)itext, strlen(itext));
        }
        sha256_final(&st, d);
        sodium_bin2hex(hex, DIGEST_HEX_LEN + 1, d, sizeof(d));
        free(text);
        free(itext);
        return 0;
}

int inventory_vm_meta(const struct vmh_domain *dom, struct vm_meta *ret)
{
        if (!(dom->flags & VMH_DOM_META))
                return -ENOENT;
        *ret = dom->meta; /* checked when it was decoded (vmh_vm_meta_ok) */
        return 0;
}

int inventory_set_meta(struct vmhost *vh, const char *id, const struct vm_meta *m)
{
        return vmh_set_meta(vh, id, m) < 0 ? -EIO : 0;
}

/* Keeps the agent channel table in step with the domain and writes back what the agent
 * channel learned (the pinned key, the accepted tree head). */
static void inventory_sync_agent(struct vmhost *vh, const struct vmh_domain *dom, struct vm_meta *m)
{
        agent_chan_sync(vh, dom->name, m, dom->flags & VMH_DOM_ACTIVE);
        if (agent_chan_take_meta(vh, dom->name, m) && inventory_set_meta(vh, dom->name, m) < 0)
                log_warn("VM '%s': cannot record the vault key and tree head in its metadata",
                         dom->name);
}

json_t *inventory_vm_json(const struct vmh_domain *dom, const struct vm_meta *m, json_t *integrity,
                          json_t *agent)
{
        char key[64];
        json_t *o;

        if (!integrity)
                integrity = json_pack("{s:s, s:n, s:n, s:n, s:[]}", "status", "unknown",
                                      "tree_size", "root", "checked_at_ms", "mismatches");
        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:s, s:{s:s, s:s}, s:s, s:o, s:o*}",
                      "id", dom->name, "uuid", dom->uuid, "entity", m->entity, "state", dom->state,
                      "lifecycle", vm_lifecycle_name(m->lifecycle), "memory_mib",
                      (json_int_t)(dom->max_mem_kib / 1024), "vcpus", (int)dom->vcpus, "image",
                      m->image, "pin", "fleet_id", m->fleet_id, "node_id", m->node_id, "request_id",
                      m->request_id, "integrity", integrity, "agent", agent);
        if (!o)
                return NULL;
        if (m->has_vault_key) {
                sodium_bin2base64(key, sizeof(key), m->vault_key, sizeof(m->vault_key),
                                  sodium_base64_VARIANT_ORIGINAL);
                json_object_set_new(o, "vault_public_key", json_string(key));
        } else {
                json_object_set_new(o, "vault_public_key", json_null());
        }
        return o;
}

static int inventory_cmp(const void *a, const void *b)
{
        const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

        return strcmp(json_string_value(json_object_get(x, "id")),
                      json_string_value(json_object_get(y, "id")));
}

/* The helper's listing, kept while the helper lock is held: the metadata write-back and the
 * agent channels' state come after it. */
struct inventory_listing {
        struct vmh_domain *doms;
        size_t n, cap;
        bool failed;
};

static void inventory_collect(void *ctx, const struct vmh_domain *d)
{
        struct inventory_listing *l = ctx;
        struct vmh_domain *p;

        if (l->n == l->cap) {
                p = realloc(l->doms, (l->cap ? l->cap * 2 : 8) * sizeof(*p));
                if (!p) {
                        l->failed = true;
                        return;
                }
                l->doms = p;
                l->cap = l->cap ? l->cap * 2 : 8;
        }
        l->doms[l->n++] = *d;
}

/* The helper's domains (new array, *ret_n of them); the helper lists only valid VM ids. flags:
 * VMH_LIST_CONTROL to learn which active domains libvirt still settles, or 0. */
int inventory_list(struct vmhost *vh, uint32_t flags, struct vmh_domain **ret, size_t *ret_n)
{
        struct inventory_listing l = {0};
        int r = vmh_list(vh, flags, inventory_collect, &l);

        if (r == 0 && l.failed)
                r = -ENOMEM;
        if (r < 0) {
                free(l.doms);
                return r;
        }
        *ret = l.doms;
        *ret_n = l.n;
        return 0;
}

/* Builds the sorted vms array; *committed sums the memory of the VMs that hold it
 * (vm_holds_memory): active ones, and any that still runs (an archived VM in its grace period, a
 * suspend whose managed save is being written). */
static json_t *inventory_build(struct vmhost *vh, uint64_t *committed)
{
        struct vmh_domain *doms = NULL;
        size_t n = 0, k = 0;
        json_t **items, *vms;

        if (inventory_list(vh, 0, &doms, &n) < 0)
                return NULL;
        vms = json_array();
        items = calloc(n + 1, sizeof(*items));
        for (size_t i = 0; vms && items && i < n; i++) {
                struct vm_meta m;
                const char *id = doms[i].name;

                if (inventory_vm_meta(&doms[i], &m) < 0)
                        continue;
                inventory_sync_agent(vh, &doms[i], &m);
                items[k] = inventory_vm_json(&doms[i], &m, agent_chan_integrity(vh, id),
                                             agent_chan_status(vh, id));
                if (items[k] && vm_holds_memory(m.lifecycle, json_string_value(json_object_get(
                                                                 items[k], "state"))))
                        *committed +=
                            (uint64_t)json_integer_value(json_object_get(items[k], "memory_mib"));
                if (items[k])
                        k++;
        }
        free(doms);
        if (items && vms) {
                qsort(items, k, sizeof(*items), inventory_cmp);
                for (size_t i = 0; i < k; i++)
                        json_array_append_new(vms, items[i]);
        }
        free(items);
        return vms;
}

int inventory_refresh(struct vmhost *vh)
{
        char digest[DIGEST_HEX_LEN + 1];
        uint64_t committed = 0, creations = creations_current(vh); /* before the listing */
        json_t *vms, *images;

        vms = inventory_build(vh, &committed);
        images = images_summary(vh);
        if (!vms || !images || inventory_digest(vms, images, digest) < 0) {
                json_decref(vms);
                json_decref(images);
                return -EIO;
        }
        pthread_mutex_lock(&vh->state_lock);
        if (creations < vh->cache_creations) {
                /* a refresh that started before a newer one stored its listing */
                pthread_mutex_unlock(&vh->state_lock);
                json_decref(vms);
                json_decref(images);
                return 0;
        }
        vh->cache_creations = creations;
        if (strcmp(digest, vh->digest) != 0)
                log_debug("inventory digest now %s (%zu VMs)", digest, json_array_size(vms));
        json_decref(vh->vms);
        vh->vms = vms;
        json_decref(vh->images);
        vh->images = images;
        memcpy(vh->digest, digest, sizeof(digest));
        vh->committed_mib = committed;
        vh->vm_count = (uint32_t)json_array_size(vms);
        pthread_mutex_unlock(&vh->state_lock);
        return 0;
}

json_t *inventory_get(struct vmhost *vh, const char *id)
{
        json_t *found = NULL, *v;
        size_t i;

        pthread_mutex_lock(&vh->state_lock);
        json_array_foreach(vh->vms, i, v) if (strcmp(json_string_value(json_object_get(v, "id")),
                                                     id) == 0) found = json_incref(v);
        pthread_mutex_unlock(&vh->state_lock);
        return found;
}
