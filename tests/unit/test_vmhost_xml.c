/* vmhost: domain XML generation and escaping, and the metadata element's round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>

#include "vmhost/vmhost.h"

static void test_escape(void **state)
{
        char buf[64];

        assert_int_equal(xml_escape("a<b>&\"'", buf, sizeof(buf)), 27);
        assert_string_equal(buf, "a&lt;b&gt;&amp;&quot;&apos;");
        assert_int_equal(xml_escape("", buf, sizeof(buf)), 0);
        assert_int_equal(xml_escape("ctl\x01", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(xml_escape("&&&&", buf, 8), -ENOSPC);
}

static struct vm_meta test_meta(void)
{
        struct vm_meta m = {.lifecycle = VM_LC_ACTIVE};

        strcpy(m.fleet_id, "fleet-1");
        strcpy(m.node_id, "node-a");
        strcpy(m.entity, "acme-co");
        strcpy(m.request_id, "req-1");
        strcpy(m.image, "ubuntu-24.04.1");
        strcpy(m.vault_id, "00112233445566778899aabbccddeeff");
        return m;
}

static struct vm_spec test_spec(const struct vm_meta *m)
{
        return (struct vm_spec){.name = "vm-1",
                                .virt_type = "qemu",
                                .memory_mib = 512,
                                .vcpus = 2,
                                .meta = m,
                                .in_pool = true,
                                .os_volume = "vm-1-os.qcow2",
                                .vault_volume = "vm-1-vault.qcow2",
                                .seed_path = "/var/lib/t/seeds/vm-1.iso",
                                .kernel_path = "/var/lib/t/images/x.vmlinuz",
                                .initrd_path = "/var/lib/t/images/x.initrd",
                                .cmdline = "console=ttyS0 a=<b>&c",
                                .channel_path = "/var/lib/t/channels/vm-1.sock",
                                .console_log = "/var/lib/t/console/vm-1.log"};
}

static void test_domain_xml_well_formed(void **state)
{
        struct vm_meta m = test_meta();
        struct vm_spec s = test_spec(&m);
        char *xml = domain_xml_build(&s);
        xmlDoc *doc;

        assert_non_null(xml);
        doc = xmlReadMemory(xml, (int)strlen(xml), "d.xml", NULL, XML_PARSE_NONET);
        assert_non_null(doc); /* escaping kept it well-formed */
        xmlFreeDoc(doc);
        assert_non_null(strstr(xml, "<domain type='qemu'>"));
        assert_non_null(strstr(xml, "<cmdline>console=ttyS0 a=&lt;b&gt;&amp;c</cmdline>"));
        assert_non_null(strstr(xml, "entity=\"acme-co\""));
        assert_non_null(strstr(xml, "name='org.totebox.agent.0'"));
        assert_non_null(strstr(xml, "<source mode='bind' path='/var/lib/t/channels/vm-1.sock'/>"));
        assert_non_null(strstr(xml, "<rng model='virtio'>"));
        assert_non_null(strstr(xml, "<serial>vault</serial>"));
        assert_non_null(strstr(xml, "<source pool='totebox-vms' volume='vm-1-os.qcow2'/>"));
        assert_non_null(strstr(xml, "xmlns:totebox='https://totebox.example/xmlns/vm/1'"));
        assert_null(strstr(xml, "<interface")); /* no network */
        free(xml);
}

static void test_domain_xml_files_and_disk_boot(void **state)
{
        struct vm_meta m = test_meta();
        struct vm_spec s = test_spec(&m);
        char *xml;

        s.in_pool = false;
        s.os_volume = "/x/vm-1-os.qcow2";
        s.kernel_path = NULL;
        xml = domain_xml_build(&s);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "<source file='/x/vm-1-os.qcow2'/>"));
        assert_non_null(strstr(xml, "<boot dev='hd'/>"));
        assert_null(strstr(xml, "<kernel>"));
        free(xml);
}

static void test_domain_xml_refuses_bad_input(void **state)
{
        struct vm_meta m = test_meta();
        struct vm_spec s = test_spec(&m);

        s.name = "../etc";
        assert_null(domain_xml_build(&s));
        s = test_spec(&m);
        s.channel_path = "/tmp/\x01";
        assert_null(domain_xml_build(&s));
        s = test_spec(&m);
        s.memory_mib = 0;
        assert_null(domain_xml_build(&s));
}

static void test_meta_round_trip(void **state)
{
        struct vm_meta m = test_meta(), back;
        char *xml;

        m.has_vault_key = true;
        memset(m.vault_key, 7, sizeof(m.vault_key));
        m.has_sth = true;
        m.sth_size = 42;
        memset(m.sth_root, 0xab, sizeof(m.sth_root));
        m.sth_time_ms = 1234;
        m.lifecycle = VM_LC_ARCHIVED;
        xml = vm_meta_format(&m);
        assert_non_null(xml);
        assert_int_equal(vm_meta_parse(xml, strlen(xml), &back), 0);
        assert_memory_equal(&m, &back, sizeof(m));
        free(xml);
}

static void test_meta_strict(void **state)
{
        static const char ns[] = "<vm xmlns='https://totebox.example/xmlns/vm/1' fleet='f' "
                                 "node='n' entity='e'/>";
        struct vm_meta m = test_meta();
        static const char *const bad[] = {
            "<vm fleet='f' node='n' entity='e' extra='x'/>",
            "<vm fleet='f' node='N!' entity='e'/>",
            "<vm fleet='f' node='n' entity='e' lifecycle='gone'/>",
            "<vm fleet='f' node='n' entity='e' vault-key='short'/>",
            "<vm fleet='f' node='n' entity='e' sth-size='-1'/>",
            "<vm fleet='f' node='n' entity='e'><child/></vm>",
            "<other fleet='f' node='n' entity='e'/>",
            "<!DOCTYPE vm [<!ENTITY x 'y'>]><vm fleet='f' node='n' entity='&x;'/>",
            "not xml",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_not_equal(vm_meta_parse(bad[i], strlen(bad[i]), &m), 0);
        assert_string_equal(m.node_id, "node-a"); /* untouched on failure */
        assert_int_equal(vm_meta_parse(ns, strlen(ns), &m), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_escape),
            cmocka_unit_test(test_domain_xml_well_formed),
            cmocka_unit_test(test_domain_xml_files_and_disk_boot),
            cmocka_unit_test(test_domain_xml_refuses_bad_input),
            cmocka_unit_test(test_meta_round_trip),
            cmocka_unit_test(test_meta_strict),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
