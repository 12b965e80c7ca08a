/* vmhost: domain XML generation (libxml2's writer) and what it refuses, hostile values in the
 * domain and metadata XML, and the metadata element's round trip. */
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
#include "vmhost/xml_out.h"

static void test_text_valid(void **state)
{
        static const char *const good[] = {
            "", "a<b>&\"'", "tab\tand\nnewline", "caf\xc3\xa9", "\xf0\x9f\x93\xa6", "\xef\xbf\xbd"};
        static const char *const bad[] = {"ctl\x01",
                                          "esc\x1b[0m",
                                          "cr\r",
                                          "\x7f\xff",
                                          "\xc3",
                                          "\xc0\x80",
                                          "\xc1\x81",
                                          "\xe0\x80\xaf",
                                          "\xed\xa0\x80",
                                          "\xef\xbf\xbe",
                                          "\xf4\x90\x80\x80",
                                          "\x80",
                                          "\xf8\x88\x80\x80\x80"};

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(xml_text_valid(good[i]));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_false(xml_text_valid(bad[i]));
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
        assert_non_null(strstr(xml, "<domain type=\"qemu\">"));
        assert_non_null(strstr(xml, "<cmdline>console=ttyS0 a=&lt;b&gt;&amp;c</cmdline>"));
        assert_non_null(strstr(xml, "entity=\"acme-co\""));
        assert_non_null(strstr(xml, "name=\"org.totebox.agent.0\""));
        assert_non_null(
            strstr(xml, "<source mode=\"bind\" path=\"/var/lib/t/channels/vm-1.sock\"/>"));
        assert_non_null(strstr(xml, "<rng model=\"virtio\">"));
        assert_non_null(strstr(xml, "<serial>vault</serial>"));
        assert_non_null(strstr(xml, "<source pool=\"totebox-vms\" volume=\"vm-1-os.qcow2\"/>"));
        assert_non_null(strstr(xml, "<source file=\"/var/lib/t/seeds/vm-1.iso\"/>"));
        assert_non_null(strstr(xml, "<memory unit=\"MiB\">512</memory>"));
        assert_non_null(strstr(xml, "<vcpu>2</vcpu>"));
        assert_non_null(strstr(xml, "<readonly/>"));
        assert_non_null(strstr(xml, "<totebox:vm "));
        assert_non_null(strstr(xml, "xmlns:totebox=\"https://totebox.example/xmlns/vm/1\""));
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
        assert_non_null(strstr(xml, "<source file=\"/x/vm-1-os.qcow2\"/>"));
        assert_non_null(strstr(xml, "<boot dev=\"hd\"/>"));
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

/* The first element named name at or under n, depth first. */
static xmlNode *test_xml_find(xmlNode *n, const char *name)
{
        for (; n; n = n->next) {
                xmlNode *c;

                if (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0)
                        return n;
                c = test_xml_find(n->children, name);
                if (c)
                        return c;
        }
        return NULL;
}

/* The text of element (below parent's element when parent is not NULL), or its attribute attr. */
static void test_xml_expect(xmlDoc *doc, const char *parent, const char *name, const char *attr,
                            const char *want)
{
        xmlNode *n = xmlDocGetRootElement(doc);
        char *got;

        if (parent) {
                n = test_xml_find(n, parent);
                assert_non_null(n);
                n = n->children;
        }
        n = test_xml_find(n, name);
        assert_non_null(n);
        got = (char *)(attr ? xmlGetProp(n, BAD_CAST attr) : xmlNodeGetContent(n));
        assert_non_null(got);
        assert_string_equal(got, want);
        xmlFree(got);
}

/* Quotes, angle brackets, ampersands, tabs, newlines and non-ASCII in text and attributes come
 * back from a parser exactly as given; what XML cannot carry is refused, never written. */
static void test_domain_xml_hostile_values(void **state)
{
        static const char cmdline[] = "a=\"x\" b='y' <c> &amp; d&e \t\n caf\xc3\xa9";
        static const char path[] = "/var/lib/t/channels/'\"><x a=\"&amp;\t\n.sock";
        static const char *const refused[] = {"a\x01", "a\x1b", "a\r", "a\xff", "a\xc0\x80"};
        struct vm_meta m = test_meta();
        struct vm_spec s = test_spec(&m);
        char *xml;
        xmlDoc *doc;

        s.cmdline = cmdline;
        s.channel_path = path;
        xml = domain_xml_build(&s);
        assert_non_null(xml);
        doc = xmlReadMemory(xml, (int)strlen(xml), "d.xml", NULL, XML_PARSE_NONET);
        assert_non_null(doc);
        test_xml_expect(doc, NULL, "cmdline", NULL, cmdline);
        test_xml_expect(doc, "channel", "source", "path", path);
        test_xml_expect(doc, "channel", "target", "name", AGENT_CHANNEL_NAME);
        test_xml_expect(doc, NULL, "vm", "request", "req-1");
        xmlFreeDoc(doc);
        free(xml);
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                s = test_spec(&m);
                s.cmdline = refused[i];
                assert_null(domain_xml_build(&s));
                s = test_spec(&m);
                s.console_log = refused[i];
                assert_null(domain_xml_build(&s));
        }
}

static void test_meta_hostile_values(void **state)
{
        static const char req[] = "r\"'<>&\t\n\xc3\xa9";
        struct vm_meta m = test_meta(), back;
        char *xml;

        strcpy(m.request_id, req);
        xml = vm_meta_format(&m);
        assert_non_null(xml);
        assert_non_null(strstr(xml, "request=\"r&quot;'&lt;&gt;&amp;&#9;&#10;"));
        assert_int_equal(vm_meta_parse(xml, strlen(xml), &back), 0);
        assert_string_equal(back.request_id, req);
        free(xml);
        strcpy(m.request_id, "r\x02");
        assert_null(vm_meta_format(&m));
        strcpy(m.request_id, "req-1");
        strcpy(m.image, "ubuntu\xfe");
        assert_null(vm_meta_format(&m));
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
            cmocka_unit_test(test_text_valid),
            cmocka_unit_test(test_domain_xml_well_formed),
            cmocka_unit_test(test_domain_xml_files_and_disk_boot),
            cmocka_unit_test(test_domain_xml_refuses_bad_input),
            cmocka_unit_test(test_domain_xml_hostile_values),
            cmocka_unit_test(test_meta_hostile_values),
            cmocka_unit_test(test_meta_round_trip),
            cmocka_unit_test(test_meta_strict),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
