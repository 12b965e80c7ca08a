/* The Totebox metadata element of a domain, in its own XML namespace: the pin (fleet id, node
 * id), the entity, the create request id, the image, the lifecycle, the vault's identity and, once
 * the agent has reported, its public key and the last accepted tree head; and the signed pin
 * (common/pin.h) as compact JSON in the attribute "pin". All attributes on one
 * element, so parsing is a flat, strict walk (vm_meta_parse.c: libxml2, no network, no entity
 * expansion; only the helper parses it, vmhost itself links no XML parser). */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhost/vmhost.h"
#include "vmhost/xml_out.h"

static void vm_meta_write_sth(struct xml_out *x, const struct vm_meta *m)
{
        char hex[MERKLE_HASH_LEN * 2 + 1];

        sodium_bin2hex(hex, sizeof(hex), m->sth_root, sizeof(m->sth_root));
        xml_out_attr_u64(x, "sth-size", m->sth_size);
        xml_out_attr(x, "sth-root", hex);
        xml_out_attr_u64(x, "sth-time", m->sth_time_ms);
}

void vm_meta_write(struct xml_out *x, const struct vm_meta *m, const char *prefix, const char *ns)
{
        char b64[sodium_base64_ENCODED_LEN(STH_PUBLIC_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];

        if (prefix)
                xml_out_start_ns(x, prefix, "vm", ns);
        else
                xml_out_start(x, "vm");
        xml_out_attr(x, "fleet", m->fleet_id);
        xml_out_attr(x, "node", m->node_id);
        xml_out_attr(x, "entity", m->entity);
        xml_out_attr(x, "request", m->request_id);
        xml_out_attr(x, "image", m->image);
        xml_out_attr(x, "vault-id", m->vault_id);
        xml_out_attr(x, "lifecycle", vm_lifecycle_name(m->lifecycle));
        if (m->has_vault_key) {
                sodium_bin2base64(b64, sizeof(b64), m->vault_key, sizeof(m->vault_key),
                                  sodium_base64_VARIANT_ORIGINAL);
                xml_out_attr(x, "vault-key", b64);
        }
        if (m->has_sth)
                vm_meta_write_sth(x, m);
        if (m->has_pin) {
                char *pin = pin_format(&m->pin);

                if (!pin && x->err == 0)
                        x->err = -ENOMEM;
                xml_out_attr(x, "pin", pin);
                free(pin);
        }
        xml_out_end(x);
}

char *vm_meta_format(const struct vm_meta *m)
{
        struct xml_out x;

        if (xml_out_init(&x, false) < 0)
                return NULL;
        vm_meta_write(&x, m, NULL, NULL);
        return xml_out_finish(&x);
}
