/* The XML the helper writes (domains, storage pools and volumes, the Totebox metadata element)
 * goes through libxml2's xmlTextWriter, which escapes; what it cannot represent is refused here
 * first: every value must be valid UTF-8 made of XML 1.0 characters, with no C0 control but tab
 * and newline. Errors stick: after the first one every call is a no-op and xml_out_finish()
 * returns NULL. Linked into vmhost-helper and the tests only (vmhost_xml), never into vmhost. */
#pragma once

#include <libxml/xmlwriter.h>
#include <stdbool.h>
#include <stdint.h>

struct vm_meta;

struct xml_out {
        xmlBufferPtr buf;
        xmlTextWriterPtr w;
        int err; /* 0 or the first negative errno */
};

/* indent: elements on their own lines, two spaces a level (domain XML); 0 for one line. */
int xml_out_init(struct xml_out *x, bool indent);
/* The document (malloc'd, NUL-terminated) or NULL after any error; frees the writer either way. */
char *xml_out_finish(struct xml_out *x);
void xml_out_start(struct xml_out *x, const char *name);
/* An element in namespace ns with the given prefix, declaring it (xmlns:prefix="ns"). */
void xml_out_start_ns(struct xml_out *x, const char *prefix, const char *name, const char *ns);
void xml_out_attr(struct xml_out *x, const char *name, const char *value);
void xml_out_attr_u64(struct xml_out *x, const char *name, uint64_t value);
/* <name>text</name>, or <name/> when text is NULL. */
void xml_out_element(struct xml_out *x, const char *name, const char *text);
/* Text content of the open element. */
void xml_out_text(struct xml_out *x, const char *text);
void xml_out_element_u64(struct xml_out *x, const char *name, uint64_t value);
void xml_out_end(struct xml_out *x);
/* Whether text can be written: valid UTF-8, XML 1.0 characters, no C0 control but \t and \n. */
bool xml_text_valid(const char *text);

/* vm_meta.c: the metadata element written into x, in namespace ns with prefix when prefix is
 * not NULL (inside a domain), else without a namespace (libvirt's virDomainSetMetadata adds it). */
void vm_meta_write(struct xml_out *x, const struct vm_meta *m, const char *prefix, const char *ns);
