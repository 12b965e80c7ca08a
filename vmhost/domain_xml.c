/* The domain XML of a Totebox VM, written with libxml2's xmlTextWriter (xml_out.c: every value
 * escaped by the writer, and refused before it when XML cannot carry it). The device set is fixed
 * here: virtio disks (OS overlay, vault, NoCloud seed), the agent's virtio-serial channel on a
 * unix socket, a serial console written to a log file, virtio-rng, no network, no balloon, no
 * graphics, and the Totebox metadata in its own namespace. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmhost/vmhost.h"
#include "vmhost/xml_out.h"

/* <name a1="v1" a2="v2"/> (a2 NULL: one attribute), the common shape of a device's settings. */
static void domain_xml_empty(struct xml_out *x, const char *name, const char *a1, const char *v1,
                             const char *a2, const char *v2)
{
        xml_out_start(x, name);
        xml_out_attr(x, a1, v1);
        if (a2)
                xml_out_attr(x, a2, v2);
        xml_out_end(x);
}

static void domain_xml_os(struct xml_out *x, const struct vm_spec *s)
{
        xml_out_start(x, "os");
        xml_out_start(x, "type");
        xml_out_attr(x, "arch", "x86_64");
        xml_out_text(x, "hvm");
        xml_out_end(x);
        if (s->kernel_path) {
                xml_out_element(x, "kernel", s->kernel_path);
                if (s->initrd_path)
                        xml_out_element(x, "initrd", s->initrd_path);
                xml_out_element(x, "cmdline", s->cmdline ? s->cmdline : "");
        } else {
                domain_xml_empty(x, "boot", "dev", "hd", NULL, NULL);
        }
        xml_out_end(x);
        xml_out_start(x, "features");
        xml_out_element(x, "acpi", NULL);
        xml_out_end(x);
}

/* One virtio disk: a volume of the VMs' pool, or a file. */
struct domain_xml_disk {
        const char *volume; /* volume name in the pool, else file path */
        const char *format, *dev, *serial;
        bool in_pool, readonly;
};

static void domain_xml_disk(struct xml_out *x, const struct domain_xml_disk *d)
{
        xml_out_start(x, "disk");
        xml_out_attr(x, "type", d->in_pool ? "volume" : "file");
        xml_out_attr(x, "device", "disk");
        domain_xml_empty(x, "driver", "name", "qemu", "type", d->format);
        if (d->in_pool)
                domain_xml_empty(x, "source", "pool", VMHOST_POOL_VMS, "volume", d->volume);
        else
                domain_xml_empty(x, "source", "file", d->volume, NULL, NULL);
        domain_xml_empty(x, "target", "dev", d->dev, "bus", "virtio");
        xml_out_element(x, "serial", d->serial);
        if (d->readonly)
                xml_out_element(x, "readonly", NULL);
        xml_out_end(x);
}

/* The serial port and the console: both the same log file, appended to. */
static void domain_xml_console(struct xml_out *x, const char *element, const char *log,
                               const char *target_type)
{
        xml_out_start(x, element);
        xml_out_attr(x, "type", "file");
        domain_xml_empty(x, "source", "path", log, "append", "on");
        if (target_type)
                domain_xml_empty(x, "target", "type", target_type, "port", "0");
        else
                domain_xml_empty(x, "target", "port", "0", NULL, NULL);
        xml_out_end(x);
}

static void domain_xml_channel(struct xml_out *x, const struct vm_spec *s)
{
        xml_out_start(x, "channel");
        xml_out_attr(x, "type", "unix");
        domain_xml_empty(x, "source", "mode", "bind", "path", s->channel_path);
        domain_xml_empty(x, "target", "type", "virtio", "name", AGENT_CHANNEL_NAME);
        xml_out_end(x);
}

static void domain_xml_devices(struct xml_out *x, const struct vm_spec *s)
{
        const struct domain_xml_disk disks[] = {
            {s->os_volume, "qcow2", "vda", "os", s->in_pool, false},
            {s->vault_volume, "raw", "vdb", "vault", s->in_pool, false},
            {s->seed_path, "raw", "vdc", "cidata", false, true}, /* the seed is always a file */
        };

        xml_out_start(x, "devices");
        for (size_t i = 0; i < sizeof(disks) / sizeof(disks[0]); i++)
                domain_xml_disk(x, &disks[i]);
        domain_xml_console(x, "serial", s->console_log, NULL);
        domain_xml_console(x, "console", s->console_log, "serial");
        domain_xml_channel(x, s);
        xml_out_start(x, "rng");
        xml_out_attr(x, "model", "virtio");
        xml_out_start(x, "backend");
        xml_out_attr(x, "model", "random");
        xml_out_text(x, "/dev/urandom");
        xml_out_end(x);
        xml_out_end(x);
        domain_xml_empty(x, "memballoon", "model", "none", NULL, NULL);
        xml_out_end(x);
}

static bool domain_xml_spec_ok(const struct vm_spec *s)
{
        return s->name && ident_valid(IDENT_VM, s->name) && s->meta && s->os_volume &&
               s->vault_volume && s->seed_path && s->channel_path && s->console_log &&
               s->memory_mib != 0 && s->vcpus != 0 && s->virt_type;
}

char *domain_xml_build(const struct vm_spec *s)
{
        struct xml_out x;
        char mib[24];

        if (!domain_xml_spec_ok(s) || xml_out_init(&x, true) < 0)
                return NULL;
        xml_out_start(&x, "domain");
        xml_out_attr(&x, "type", s->virt_type);
        xml_out_element(&x, "name", s->name);
        if (s->uuid)
                xml_out_element(&x, "uuid", s->uuid);
        xml_out_start(&x, "memory");
        xml_out_attr(&x, "unit", "MiB");
        snprintf(mib, sizeof(mib), "%llu", (unsigned long long)s->memory_mib);
        xml_out_text(&x, mib);
        xml_out_end(&x);
        xml_out_element_u64(&x, "vcpu", s->vcpus);
        xml_out_start(&x, "metadata");
        vm_meta_write(&x, s->meta, VMHOST_XMLNS_PREFIX, VMHOST_XMLNS);
        xml_out_end(&x);
        domain_xml_os(&x, s);
        xml_out_element(&x, "on_poweroff", "destroy");
        xml_out_element(&x, "on_reboot", "restart");
        xml_out_element(&x, "on_crash", "destroy");
        domain_xml_devices(&x, s);
        xml_out_end(&x);
        return xml_out_finish(&x);
}
