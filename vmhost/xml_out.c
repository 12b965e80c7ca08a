/* The helper's XML writer: libxml2's xmlTextWriter into a memory buffer, with every value
 * checked before it is written (xml_out.h says what is refused and why). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/chvalid.h>
#include <libxml/xmlstring.h>

#include "vmhost/xml_out.h"

bool xml_text_valid(const char *text)
{
        const unsigned char *p = (const unsigned char *)text;

        while (*p) {
                int len = 4;
                int c = xmlGetUTF8Char(p, &len);

                /* an overlong form (C0 80 for NUL, C1 81 for 'A') is not UTF-8 either */
                int shortest = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;

                if (c < 0 || len != shortest || !xmlIsCharQ(c) || c == '\r')
                        return false;
                p += len;
        }
        return true;
}

static void xml_out_check(struct xml_out *x, int r)
{
        if (r < 0 && x->err == 0)
                x->err = -EIO;
}

static bool xml_out_value_ok(struct xml_out *x, const char *value)
{
        if (x->err < 0)
                return false;
        if (!value || !xml_text_valid(value)) {
                x->err = -EINVAL;
                return false;
        }
        return true;
}

int xml_out_init(struct xml_out *x, bool indent)
{
        *x = (struct xml_out){0};
        x->buf = xmlBufferCreate();
        x->w = x->buf ? xmlNewTextWriterMemory(x->buf, 0) : NULL;
        if (!x->w) {
                xmlBufferFree(x->buf);
                x->buf = NULL;
                return -ENOMEM;
        }
        if (indent) {
                xml_out_check(x, xmlTextWriterSetIndent(x->w, 1));
                xml_out_check(x, xmlTextWriterSetIndentString(x->w, BAD_CAST "  "));
        }
        return x->err;
}

char *xml_out_finish(struct xml_out *x)
{
        char *doc = NULL;

        /* Not xmlTextWriterEndDocument: there is no XML declaration to close, and it would add a
         * newline after a one-line element. */
        if (x->err == 0)
                xml_out_check(x, xmlTextWriterFlush(x->w));
        xmlFreeTextWriter(x->w);
        x->w = NULL;
        if (x->err == 0)
                doc = strdup((const char *)xmlBufferContent(x->buf));
        xmlBufferFree(x->buf);
        x->buf = NULL;
        return doc;
}

void xml_out_start(struct xml_out *x, const char *name)
{
        if (x->err == 0)
                xml_out_check(x, xmlTextWriterStartElement(x->w, BAD_CAST name));
}

void xml_out_start_ns(struct xml_out *x, const char *prefix, const char *name, const char *ns)
{
        if (x->err == 0)
                xml_out_check(x, xmlTextWriterStartElementNS(x->w, BAD_CAST prefix, BAD_CAST name,
                                                             BAD_CAST ns));
}

void xml_out_attr(struct xml_out *x, const char *name, const char *value)
{
        if (xml_out_value_ok(x, value))
                xml_out_check(x, xmlTextWriterWriteAttribute(x->w, BAD_CAST name, BAD_CAST value));
}

void xml_out_attr_u64(struct xml_out *x, const char *name, uint64_t value)
{
        char num[24];

        snprintf(num, sizeof(num), "%" PRIu64, value);
        xml_out_attr(x, name, num);
}

void xml_out_element(struct xml_out *x, const char *name, const char *text)
{
        if (!text) {
                xml_out_start(x, name);
                xml_out_end(x);
        } else if (xml_out_value_ok(x, text)) {
                xml_out_check(x, xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST text));
        }
}

void xml_out_text(struct xml_out *x, const char *text)
{
        if (xml_out_value_ok(x, text))
                xml_out_check(x, xmlTextWriterWriteString(x->w, BAD_CAST text));
}

void xml_out_element_u64(struct xml_out *x, const char *name, uint64_t value)
{
        char num[24];

        snprintf(num, sizeof(num), "%" PRIu64, value);
        xml_out_element(x, name, num);
}

void xml_out_end(struct xml_out *x)
{
        if (x->err == 0)
                xml_out_check(x, xmlTextWriterEndElement(x->w));
}
