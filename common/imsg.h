/* Messages between the processes of one daemon split by privilege (OpenBSD's imsg is the model):
 * one datagram on an AF_UNIX SOCK_SEQPACKET socketpair per message, a fixed header (protocol
 * version, type, payload length) and a payload that is one C struct per type. A protocol is a
 * table of its types with the payload sizes each may have; a message whose version, type or
 * size the table does not allow is an error, never skipped. Both sides check everything they
 * receive: the privileged side trusts the unprivileged one no more than the network. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IMSG_PAYLOAD_MAX (256u * 1024)

struct imsg_hdr {
        uint16_t version;
        uint16_t type;
        uint32_t len; /* payload bytes after the header */
};

struct imsg_type {
        uint16_t type;
        uint32_t min_len, max_len; /* a fixed-size struct: both sizeof it */
        const char *name;
};

struct imsg_proto {
        const char *name; /* for messages, e.g. "pairing" */
        uint16_t version;
        const struct imsg_type *types;
        size_t n_types;
};

/* The table row of a type, or NULL when the protocol has no such type. */
const struct imsg_type *imsg_type_find(const struct imsg_proto *p, uint16_t type);
/* Checks one received message of n bytes: a whole header, the protocol's version, a known type,
 * a payload length within that type's bounds and equal to what arrived. Returns 0 with the
 * header and a pointer into buf for the payload, or -EPROTO / -EPROTONOSUPPORT / -EBADMSG /
 * -EMSGSIZE with err saying which (err may be NULL). */
int imsg_check(const struct imsg_proto *p, const void *buf, size_t n, struct imsg_hdr *ret_hdr,
               const void **ret_payload, char *err, size_t errsize);
/* Sends one message; the type and size are checked against the table first (-EINVAL). */
int imsg_send(int fd, const struct imsg_proto *p, uint16_t type, const void *payload, size_t len);
/* The same with a descriptor passed along (SCM_RIGHTS), the vmd way; pass_fd < 0: none. */
int imsg_send_fd(int fd, const struct imsg_proto *p, uint16_t type, const void *payload, size_t len,
                 int pass_fd);
/* Receives one datagram into buf (at most size bytes; a longer one is -EMSGSIZE and dropped);
 * waits at most timeout_ms (< 0: forever). Returns its length, 0 at EOF, or a negative errno. */
ssize_t imsg_recv(int fd, void *buf, size_t size, int timeout_ms);
/* The same, and the descriptor the datagram carried in *ret_fd (close-on-exec; -1 when none;
 * any further ones are closed). Which messages may carry one is the protocol's to check. */
ssize_t imsg_recv_fd(int fd, void *buf, size_t size, int timeout_ms, int *ret_fd);
/* A socketpair for one protocol: SOCK_SEQPACKET, close-on-exec. */
int imsg_socketpair(int ret_fds[2]);
/* True when the fixed char array s (size bytes) holds a NUL: a string field is terminated. */
bool imsg_string_ok(const char *s, size_t size);
