/* The Diode's channel framing (docs/contracts.md section 3, docs/agent.md "The Diode"): the
 * channel carries JSON lines as before, and data frames for record bytes. A data frame is one
 * header line "!D ID OFFSET LEN\n" (ID of [A-Za-z0-9_-], OFFSET and LEN decimal without leading
 * zeros, LEN at most DIODE_CHUNK_MAX) followed by exactly LEN raw bytes. The decoder is a
 * streaming parser (init / feed / done): it never buffers a frame's payload, it hands each piece
 * to the caller with its offset, so a record of any size passes in bounded memory. Shared by the
 * agent (host-to-guest deposits) and vmhost (guest-to-host reads). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIODE_CHUNK_MAX  (256u * 1024)
#define DIODE_ID_MAX     64
#define DIODE_HEADER_MAX 128

struct diode_frame_ops {
        /* a complete JSON line without its newline; NULL when an over-long line was discarded */
        void (*line)(void *ctx, const char *line, size_t len);
        /* a piece of a data frame's payload: bytes [offset, offset + n) of the transfer id;
         * last is true on the frame's final piece */
        void (*data)(void *ctx, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                     bool last);
        /* a "!"-line that is not a valid data header; its payload (if any) cannot be found, so
         * the caller should treat the stream as out of step (reset the transfer) */
        void (*bad)(void *ctx, const char *why);
};

struct diode_decoder {
        char *buf; /* line_max + 1 */
        size_t len, line_max;
        bool discarding;
        uint64_t data_left; /* payload bytes still due for the current frame */
        uint64_t data_off;
        char id[DIODE_ID_MAX + 1];
};

int diode_decoder_init(struct diode_decoder *d, size_t line_max);
/* Forgets a half-read line or frame (a new connection starts clean). */
void diode_decoder_reset(struct diode_decoder *d);
void diode_decoder_done(struct diode_decoder *d);
void diode_decoder_feed(struct diode_decoder *d, const uint8_t *p, size_t n,
                        const struct diode_frame_ops *ops, void *ctx);
/* Writes the header line (with its newline) into buf; returns its length or -EINVAL. */
int diode_frame_header(char *buf, size_t size, const char *id, uint64_t offset, size_t len);
/* Parses a header line without its newline; ret_* untouched on failure (-EINVAL). */
int diode_frame_parse_header(const char *line, size_t len, char ret_id[DIODE_ID_MAX + 1],
                             uint64_t *ret_offset, uint64_t *ret_len);
/* A transfer or deposit id: 1..DIODE_ID_MAX of [A-Za-z0-9_-]. */
bool diode_id_valid(const char *id);
