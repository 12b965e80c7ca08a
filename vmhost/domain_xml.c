/* The domain XML of a Totebox VM. Every value that reaches the XML goes through xml_escape();
 * the device set is fixed here: virtio disks (OS overlay, vault, NoCloud seed), the agent's
 * virtio-serial channel on a unix socket, a serial console written to a log file, virtio-rng,
 * no network, no balloon, no graphics, and the Totebox metadata in its own namespace. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhost/vmhost.h"

int xml_escape(const char *text, char *buf, size_t size)
{
        size_t o = 0;

        for (const char *p = text; *p; p++) {
                const char *rep = NULL;
                char one[2] = {*p, 0};
                size_t n;

                switch (*p) {
                case '&':
                        rep = "&amp;";
                        break;
                case '<':
                        rep = "&lt;";
                        break;
                case '>':
                        rep = "&gt;";
                        break;
                case '"':
                        rep = "&quot;";
                        break;
                case '\'':
                        rep = "&apos;";
                        break;
                default:
                        rep = one;
                        break;
                }
                if ((unsigned char)*p < 0x20 && *p != '\t' && *p != '\n')
                        return -EINVAL; /* not representable in XML 1.0 */
                n = strlen(rep);
                if (o + n >= size)
                        return -ENOSPC;
                memcpy(buf + o, rep, n);
                o += n;
        }
        if (size == 0)
                return -ENOSPC;
        buf[o] = '\0';
        return (int)o;
}

struct xml_out {
        FILE *f;
        int err;
};

/* Prints fmt where each %s argument is escaped; other conversions are not allowed. */
static void xml_printf(struct xml_out *x, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        for (const char *p = fmt; *p; p++) {
                if (p[0] == '%' && p[1] == 's') {
                        const char *v = va_arg(ap, const char *);
                        size_t cap = strlen(v) * 6 + 1;
                        char *e = malloc(cap);

                        if (!e || xml_escape(v, e, cap) < 0)
                                x->err = -EINVAL;
                        else
                                fputs(e, x->f);
                        free(e);
                        p++;
                } else if (p[0] == '%' && p[1] == 'u') {
                        fprintf(x->f, "%llu", (unsigned long long)va_arg(ap, uint64_t));
                        p++;
                } else {
                        fputc(*p, x->f);
                }
        }
        va_end(ap);
}

static void domain_xml_os(struct xml_out *x, const struct vm_spec *s)
{
        xml_printf(x, "  <os>\n    <type arch='x86_64'>hvm</type>\n");
        if (s->kernel_path) {
                xml_printf(x, "    <kernel>%s</kernel>\n", s->kernel_path);
                if (s->initrd_path)
                        xml_printf(x, "    <initrd>%s</initrd>\n", s->initrd_path);
                xml_printf(x, "    <cmdline>%s</cmdline>\n", s->cmdline ? s->cmdline : "");
        } else {
                xml_printf(x, "    <boot dev='hd'/>\n");
        }
        xml_printf(x, "  </os>\n  <features><acpi/></features>\n");
}

static void domain_xml_disk(struct xml_out *x, const struct vm_spec *s, const char *volume,
                            const char *format, const char *dev, const char *serial)
{
        if (s->in_pool)
                xml_printf(x,
                           "    <disk type='volume' device='disk'>\n"
                           "      <driver name='qemu' type='%s'/>\n"
                           "      <source pool='%s' volume='%s'/>\n",
                           format, VMHOST_POOL_VMS, volume);
        else
                xml_printf(x,
                           "    <disk type='file' device='disk'>\n"
                           "      <driver name='qemu' type='%s'/>\n"
                           "      <source file='%s'/>\n",
                           format, volume);
        xml_printf(x,
                   "      <target dev='%s' bus='virtio'/>\n      <serial>%s</serial>\n"
                   "    </disk>\n",
                   dev, serial);
}

static void domain_xml_disks(struct xml_out *x, const struct vm_spec *s)
{
        domain_xml_disk(x, s, s->os_volume, "qcow2", "vda", "os");
        domain_xml_disk(x, s, s->vault_volume, "raw", "vdb", "vault");
        xml_printf(x,
                   "    <disk type='file' device='disk'>\n"
                   "      <driver name='qemu' type='raw'/>\n"
                   "      <source file='%s'/>\n"
                   "      <target dev='vdc' bus='virtio'/>\n      <serial>cidata</serial>\n"
                   "      <readonly/>\n    </disk>\n",
                   s->seed_path);
}

static void domain_xml_devices(struct xml_out *x, const struct vm_spec *s)
{
        xml_printf(x, "  <devices>\n");
        domain_xml_disks(x, s);
        xml_printf(x,
                   "    <serial type='file'>\n      <source path='%s' append='on'/>\n"
                   "      <target port='0'/>\n    </serial>\n"
                   "    <console type='file'>\n      <source path='%s' append='on'/>\n"
                   "      <target type='serial' port='0'/>\n    </console>\n",
                   s->console_log, s->console_log);
        xml_printf(x,
                   "    <channel type='unix'>\n      <source mode='bind' path='%s'/>\n"
                   "      <target type='virtio' name='%s'/>\n    </channel>\n",
                   s->channel_path, AGENT_CHANNEL_NAME);
        xml_printf(
            x, "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n"
               "    </rng>\n    <memballoon model='none'/>\n  </devices>\n");
}

char *domain_xml_build(const struct vm_spec *s)
{
        struct xml_out x = {0};
        char *buf = NULL, *meta;
        size_t len = 0;

        if (!s->name || !ident_valid(IDENT_VM, s->name) || !s->meta || !s->os_volume ||
            !s->vault_volume || !s->seed_path || !s->channel_path || !s->console_log ||
            s->memory_mib == 0 || s->vcpus == 0 || !s->virt_type)
                return NULL;
        meta = vm_meta_format(s->meta);
        x.f = meta ? open_memstream(&buf, &len) : NULL;
        if (!x.f) {
                free(meta);
                return NULL;
        }
        xml_printf(&x, "<domain type='%s'>\n  <name>%s</name>\n", s->virt_type, s->name);
        if (s->uuid)
                xml_printf(&x, "  <uuid>%s</uuid>\n", s->uuid);
        xml_printf(&x, "  <memory unit='MiB'>%u</memory>\n  <vcpu>%u</vcpu>\n", s->memory_mib,
                   s->vcpus);
        /* meta is already escaped XML, built by vm_meta_format(). */
        fprintf(x.f, "  <metadata>\n    <%s:%s xmlns:%s='%s'%s\n  </metadata>\n",
                VMHOST_XMLNS_PREFIX, "vm", VMHOST_XMLNS_PREFIX, VMHOST_XMLNS, meta + 3);
        domain_xml_os(&x, s);
        xml_printf(&x, "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
                       "  <on_crash>destroy</on_crash>\n");
        domain_xml_devices(&x, s);
        xml_printf(&x, "</domain>\n");
        free(meta);
        if (fclose(x.f) != 0 || x.err < 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
