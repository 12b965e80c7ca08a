/* The Totebox metadata element's parser (vmhost/vm_meta.c writes it): libxml2, strict, no
 * network, no entity expansion, no DOCTYPE. Linked into vmhost-helper (which reads libvirt's
 * metadata and checks what vmhost asks it to write) and the tests, never into vmhost. */
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhost/vmhost.h"

#define VM_META_MAX_BYTES 8192

static int vm_meta_copy(char *dst, size_t size, const char *val)
{
        if (strlen(val) >= size)
                return -EINVAL;
        memcpy(dst, val, strlen(val) + 1);
        return 0;
}

static int vm_meta_u64(const char *val, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        if (!*val || *val < '0' || *val > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(val, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int vm_meta_attr(struct vm_meta *m, const char *name, const char *val)
{
        size_t bin_len = 0;

        if (strcmp(name, "fleet") == 0)
                return vm_meta_copy(m->fleet_id, sizeof(m->fleet_id), val);
        if (strcmp(name, "node") == 0)
                return vm_meta_copy(m->node_id, sizeof(m->node_id), val);
        if (strcmp(name, "entity") == 0)
                return vm_meta_copy(m->entity, sizeof(m->entity), val);
        if (strcmp(name, "request") == 0)
                return vm_meta_copy(m->request_id, sizeof(m->request_id), val);
        if (strcmp(name, "image") == 0)
                return vm_meta_copy(m->image, sizeof(m->image), val);
        if (strcmp(name, "vault-id") == 0)
                return vm_meta_copy(m->vault_id, sizeof(m->vault_id), val);
        if (strcmp(name, "lifecycle") == 0) /* retired is fleetd's word, never a node's */
                return strcmp(val, "retired") == 0 ? -EINVAL
                                                   : vm_lifecycle_parse(val, &m->lifecycle);
        if (strcmp(name, "vault-key") == 0) {
                m->has_vault_key = true;
                return sodium_base642bin(m->vault_key, sizeof(m->vault_key), val, strlen(val), NULL,
                                         &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
                               bin_len == sizeof(m->vault_key)
                           ? 0
                           : -EINVAL;
        }
        if (strcmp(name, "sth-size") == 0) {
                m->has_sth = true;
                return vm_meta_u64(val, &m->sth_size);
        }
        if (strcmp(name, "pin") == 0) {
                /* kept apart: a domain with a broken pin is still listed, it just never starts */
                m->has_pin = pin_parse(val, strlen(val), &m->pin, NULL, 0) == 0;
                m->pin_bad = !m->has_pin;
                return 0;
        }
        if (strcmp(name, "sth-time") == 0)
                return vm_meta_u64(val, &m->sth_time_ms);
        if (strcmp(name, "sth-root") == 0)
                return strlen(val) == 64 && sodium_hex2bin(m->sth_root, sizeof(m->sth_root), val,
                                                           64, NULL, &bin_len, NULL) == 0
                           ? 0
                           : -EINVAL;
        return -EINVAL;
}

static int vm_meta_walk(xmlNode *root, struct vm_meta *m)
{
        if (!root || root->type != XML_ELEMENT_NODE ||
            strcmp((const char *)root->name, "vm") != 0 || root->children)
                return -EINVAL;
        for (xmlAttr *a = root->properties; a; a = a->next) {
                xmlChar *v = xmlNodeListGetString(root->doc, a->children, 1);
                int r = vm_meta_attr(m, (const char *)a->name, v ? (const char *)v : "");

                xmlFree(v);
                if (r < 0)
                        return r;
        }
        if (!ident_valid(IDENT_NODE, m->node_id) || !ident_valid(IDENT_NODE, m->fleet_id) ||
            !ident_valid(IDENT_ENTITY, m->entity))
                return -EINVAL;
        return 0;
}

int vm_meta_parse(const char *xml, size_t len, struct vm_meta *ret)
{
        struct vm_meta m = {.lifecycle = VM_LC_ACTIVE};
        xmlDoc *doc;
        int r;

        if (len == 0 || len > VM_META_MAX_BYTES)
                return -EINVAL;
        doc = xmlReadMemory(xml, (int)len, "metadata.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                return -EINVAL;
        /* A DOCTYPE could define entities; the element vmhost writes never has one. */
        r = doc->intSubset || doc->extSubset ? -EINVAL
                                             : vm_meta_walk(xmlDocGetRootElement(doc), &m);
        xmlFreeDoc(doc);
        if (r == 0)
                *ret = m;
        return r;
}
