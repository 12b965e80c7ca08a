/* The Totebox metadata element of a domain, in its own XML namespace: the pin (fleet id, node
 * id), the entity, the create request id, the image, the lifecycle, the vault's identity and, once
 * the agent has reported, its public key and the last accepted tree head; and the signed pin
 * (common/pin.h) as compact JSON in the attribute "pin". All attributes on one
 * element, so parsing is a flat, strict walk (vm_meta_parse.c: libxml2, no network, no entity
 * expansion; only the helper parses it, vmhost itself links no XML parser). */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhost/vmhost.h"

static int vm_meta_put(char **buf, size_t *len, size_t *cap, const char *name, const char *val)
{
        size_t need = strlen(name) + 6 * strlen(val) + 8;
        char *p;
        int n;

        if (*len + need > *cap) {
                size_t ncap = (*len + need) * 2;

                p = realloc(*buf, ncap);
                if (!p)
                        return -ENOMEM;
                *buf = p;
                *cap = ncap;
        }
        n = snprintf(*buf + *len, *cap - *len, " %s=\"", name);
        *len += (size_t)n;
        n = xml_escape(val, *buf + *len, *cap - *len);
        if (n < 0)
                return n;
        *len += (size_t)n;
        (*buf)[(*len)++] = '"';
        (*buf)[*len] = '\0';
        return 0;
}

char *vm_meta_format(const struct vm_meta *m)
{
        char b64[sodium_base64_ENCODED_LEN(STH_PUBLIC_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
        char hex[MERKLE_HASH_LEN * 2 + 1], num[2][24];
        size_t len = 0, cap = 512;
        char *buf = malloc(cap);
        int r = 0;

        if (!buf)
                return NULL;
        len = (size_t)snprintf(buf, cap, "<vm");
        r = r ?: vm_meta_put(&buf, &len, &cap, "fleet", m->fleet_id);
        r = r ?: vm_meta_put(&buf, &len, &cap, "node", m->node_id);
        r = r ?: vm_meta_put(&buf, &len, &cap, "entity", m->entity);
        r = r ?: vm_meta_put(&buf, &len, &cap, "request", m->request_id);
        r = r ?: vm_meta_put(&buf, &len, &cap, "image", m->image);
        r = r ?: vm_meta_put(&buf, &len, &cap, "vault-id", m->vault_id);
        r = r ?: vm_meta_put(&buf, &len, &cap, "lifecycle", vm_lifecycle_name(m->lifecycle));
        if (r == 0 && m->has_vault_key) {
                sodium_bin2base64(b64, sizeof(b64), m->vault_key, sizeof(m->vault_key),
                                  sodium_base64_VARIANT_ORIGINAL);
                r = vm_meta_put(&buf, &len, &cap, "vault-key", b64);
        }
        if (r == 0 && m->has_sth) {
                sodium_bin2hex(hex, sizeof(hex), m->sth_root, sizeof(m->sth_root));
                snprintf(num[0], sizeof(num[0]), "%llu", (unsigned long long)m->sth_size);
                snprintf(num[1], sizeof(num[1]), "%llu", (unsigned long long)m->sth_time_ms);
                r = r ?: vm_meta_put(&buf, &len, &cap, "sth-size", num[0]);
                r = r ?: vm_meta_put(&buf, &len, &cap, "sth-root", hex);
                r = r ?: vm_meta_put(&buf, &len, &cap, "sth-time", num[1]);
        }
        if (r == 0 && m->has_pin) {
                char *pin = pin_format(&m->pin);

                r = pin ? vm_meta_put(&buf, &len, &cap, "pin", pin) : -ENOMEM;
                free(pin);
        }
        if (r == 0 && len + 4 > cap)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return NULL;
        }
        memcpy(buf + len, "/>", 3);
        return buf;
}
