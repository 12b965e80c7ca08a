/* The node's VM inventory: every domain that carries Totebox metadata, as vm objects
 * (schemas/vm.schema.json) sorted by id, cached with its digest for heartbeats and the node API.
 * The digest is the hex SHA-256 of json_dumps(vms, JSON_SORT_KEYS | JSON_COMPACT), followed,
 * when the node holds base images, by a newline and json_dumps(images) the same way: an image
 * that arrives or goes changes the digest, so fleetd fetches the inventory again. */
#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/sha256.h"
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

int inventory_vm_meta(void *dom, struct vm_meta *ret)
{
        char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, VMHOST_XMLNS, 0);
        int r;

        if (!xml)
                return -ENOENT;
        r = vm_meta_parse(xml, strlen(xml), ret);
        free(xml);
        return r;
}

int inventory_set_meta(void *dom, const struct vm_meta *m)
{
        char *xml = vm_meta_format(m);
        unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
        int r;

        if (!xml)
                return -ENOMEM;
        if (virDomainIsActive(dom) == 1)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        r = virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, VMHOST_XMLNS_PREFIX,
                                 VMHOST_XMLNS, flags);
        free(xml);
        return r < 0 ? -EIO : 0;
}

/* Keeps the agent channel table in step with the domain and writes back what the agent
 * channel learned (the pinned key, the accepted tree head). */
static void inventory_sync_agent(struct vmhost *vh, virDomainPtr dom, const char *id,
                                 struct vm_meta *m)
{
        agent_chan_sync(vh, id, m, virDomainIsActive(dom) == 1);
        if (agent_chan_take_meta(vh, id, m) && inventory_set_meta(dom, m) < 0)
                log_warn("VM '%s': cannot record the vault key and tree head in its metadata: %s",
                         id, virGetLastErrorMessage());
}

static const char *inventory_state_name(virDomainPtr dom, int state)
{
        switch (state) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
                return "running";
        case VIR_DOMAIN_PAUSED:
        case VIR_DOMAIN_PMSUSPENDED:
                return "paused";
        case VIR_DOMAIN_SHUTDOWN:
                return "running"; /* shutting down: still holds its RAM */
        case VIR_DOMAIN_CRASHED:
                return "crashed";
        default:
                return virDomainHasManagedSaveImage(dom, 0) == 1 ? "saved" : "shutoff";
        }
}

json_t *inventory_vm_json(void *dom, const struct vm_meta *m, const char *id, json_t *integrity,
                          json_t *agent)
{
        char uuid[VIR_UUID_STRING_BUFLEN] = "", key[64];
        virDomainInfo info = {0};
        int state = VIR_DOMAIN_NOSTATE, reason = 0;
        json_t *o;

        if (virDomainGetUUIDString(dom, uuid) < 0 || virDomainGetInfo(dom, &info) < 0 ||
            virDomainGetState(dom, &state, &reason, 0) < 0) {
                json_decref(integrity);
                json_decref(agent);
                return NULL;
        }
        if (!integrity)
                integrity = json_pack("{s:s, s:n, s:n, s:n, s:[]}", "status", "unknown",
                                      "tree_size", "root", "checked_at_ms", "mismatches");
        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:s, s:{s:s, s:s}, s:s, s:o, s:o*}",
                      "id", id, "uuid", uuid, "entity", m->entity, "state",
                      inventory_state_name(dom, state), "lifecycle",
                      vm_lifecycle_name(m->lifecycle), "memory_mib",
                      (json_int_t)(info.maxMem / 1024), "vcpus", (int)info.nrVirtCpu, "image",
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

/* Builds the sorted vms array; *committed sums the memory of the VMs that hold it
 * (vm_holds_memory): active ones, and any that still runs (an archived VM in its grace period, a
 * suspend whose managed save is being written). */
static json_t *inventory_build(struct vmhost *vh, virConnectPtr c, uint64_t *committed)
{
        virDomainPtr *doms = NULL;
        json_t **items, *vms = json_array();
        int n = virConnectListAllDomains(c, &doms, 0);
        size_t k = 0;

        if (n < 0 || !vms) {
                json_decref(vms);
                return NULL;
        }
        items = calloc((size_t)n + 1, sizeof(*items));
        for (int i = 0; i < n; i++) {
                struct vm_meta m;
                const char *id = virDomainGetName(doms[i]);

                /* a domain whose name is no VM id (made by hand) is not a Totebox VM: listing it
                 * would make fleetd refuse the whole inventory (common/ident.h) */
                if (items && ident_valid(IDENT_VM, id) && inventory_vm_meta(doms[i], &m) == 0) {
                        inventory_sync_agent(vh, doms[i], id, &m);
                        items[k] = inventory_vm_json(doms[i], &m, id, agent_chan_integrity(vh, id),
                                                     agent_chan_status(vh, id));
                        if (items[k] &&
                            vm_holds_memory(m.lifecycle,
                                            json_string_value(json_object_get(items[k], "state"))))
                                *committed += (uint64_t)json_integer_value(
                                    json_object_get(items[k], "memory_mib"));
                        if (items[k])
                                k++;
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        if (items) {
                qsort(items, k, sizeof(*items), inventory_cmp);
                for (size_t i = 0; i < k; i++)
                        json_array_append_new(vms, items[i]);
        }
        free(items);
        return vms;
}

int inventory_refresh(struct vmhost *vh)
{
        virConnectPtr c = virt_conn_ref(vh);
        char digest[DIGEST_HEX_LEN + 1];
        uint64_t committed = 0, creations = creations_current(vh); /* before the listing */
        json_t *vms, *images;

        if (!c)
                return -ENOTCONN;
        vms = inventory_build(vh, c, &committed);
        virConnectClose(c);
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
