/* vmhost's privileged helper (vmhost/helper.c, vmhost/helper_main.c, vmhost/helper_virt.c): the
 * program vmhost-helper, started by vmhost at start (fork + exec), the only part of vmhost that
 * includes libvirt.h, talks to the kernel's WireGuard (generic netlink, or wireguard-go's UAPI
 * socket) or reads the node's WireGuard private key. vmhost asks it through typed messages
 * (common/imsg.h) on a socketpair (fd 3 in the helper): one struct per operation, sizes and
 * version checked, an unknown message ends the helper. Domain events go one way, up, on a second
 * socketpair (fd 4). The helper trusts vmhost no more than the network: it applies only a roster
 * that verifies under the genesis key, never an older one than it has applied; it defines only a
 * domain whose spec it validated itself (ids, sizes, metadata that parses strictly, image files
 * inside the image store) and writes the domain XML itself. The Totebox metadata crosses as a
 * struct (the helper parses and writes its XML): vmhost links no XML parser. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "common/ident.h"
#include "common/imsg.h"
#include "common/roster.h"
#include "common/wg.h"
#include "vmhost/vmhost.h"

#define VMH_VERSION    4
#define VMH_PATH_MAX   4096
#define VMH_DETAIL_MAX 256

enum vmh_type {
        VMH_APPLY_PEERS = 1, /* vmhost -> helper: struct vmh_apply_peers */
        VMH_APPLIED,         /* helper -> vmhost: struct vmh_result */
        VMH_WG_KEY,          /* vmhost -> helper: struct vmh_wg_key_req */
        VMH_WG_KEY_IS,       /* helper -> vmhost: struct vmh_wg_key */
        /* libvirt: vmhost -> helper, each answered as its comment says */
        VMH_CONFIG,       /* struct vmh_config, the first message: VMH_APPLIED */
        VMH_LIST,         /* struct vmh_list_req: VMH_DOMAIN for each Totebox, then VMH_LIST_END */
        VMH_LOOKUP,       /* struct vmh_name: VMH_DOMAIN (result -ENOENT: no such domain) */
        VMH_MAKE_DISKS,   /* struct vmh_disks_req: VMH_DONE */
        VMH_DEFINE,       /* struct vmh_define: VMH_DONE */
        VMH_START,        /* struct vmh_name (virDomainCreate: boots or restores): VMH_DONE */
        VMH_RESUME,       /* struct vmh_name: VMH_DONE */
        VMH_MANAGED_SAVE, /* struct vmh_name: VMH_DONE */
        VMH_SHUTDOWN,     /* struct vmh_name (graceful): VMH_DONE */
        VMH_DESTROY,      /* struct vmh_name (power-off; the domain stays): VMH_DONE */
        VMH_SET_META,     /* struct vmh_set_meta: VMH_DONE */
        VMH_POOL_REFRESH, /* struct vmh_list_req: VMH_DONE */
        VMH_DOMAIN,       /* helper -> vmhost: struct vmh_domain */
        VMH_LIST_END,     /* helper -> vmhost: struct vmh_result */
        VMH_DONE,         /* helper -> vmhost: struct vmh_done */
        VMH_EVENT,        /* helper -> vmhost, on the event socket: struct vmh_event */
        /* the files vmhost's user cannot open itself (version 3) */
        VMH_FILE,    /* vmhost -> helper: struct vmh_file: VMH_FILE_IS */
        VMH_FILE_IS, /* helper -> vmhost: struct vmh_result, with a descriptor for the opens */
};

/* What VMH_FILE asks for, on the VM named: the helper derives every path itself, opens the
 * directory without following a link and refuses one it does not own, and passes the descriptor
 * up (SCM_RIGHTS). */
enum vmh_file_op {
        VMH_FILE_CHANNEL = 1,  /* connect state_dir/channels/ID.sock (QEMU's agent channel) */
        VMH_FILE_VAULT,        /* open state_dir/vms/ID-vault.img read-only (an export) */
        VMH_FILE_VAULT_NEW,    /* create vms/ID-vault.img.import read-write (an import); -EEXIST
                                  while vms/ID-vault.img exists */
        VMH_FILE_VAULT_COMMIT, /* rename the .import to ID-vault.img, never over one: no fd */
        VMH_FILE_VAULT_DROP,   /* remove the .import: no fd */
        VMH_FILE_OP_COUNT,
};

/* libvirt's lifecycle events (virDomainEventType), as the helper passes them up */
enum vmh_event_kind {
        VMH_EV_DEFINED = 0,
        VMH_EV_UNDEFINED,
        VMH_EV_STARTED,
        VMH_EV_SUSPENDED,
        VMH_EV_RESUMED,
        VMH_EV_STOPPED,
        VMH_EV_SHUTDOWN,
        VMH_EV_PMSUSPENDED,
        VMH_EV_CRASHED,
        VMH_EV_COUNT,
};

/* Apply the roster vmhost stored (state_dir/roster.json) to the interface and store it in the
 * mesh state (mesh_state_dir, root's): it must be this version, signed by the genesis key, and
 * not older than what the helper applied before. */
struct vmh_apply_peers {
        uint64_t version;
};

struct vmh_result {
        int32_t result; /* 0 or a negative errno */
};

/* This node's WireGuard public key: the interface's, or the mesh state's wg.key's. */
struct vmh_wg_key_req {
        uint32_t reserved; /* 0 */
};

struct vmh_wg_key {
        int32_t result;
        char key[WG_KEY_B64_LEN + 1]; /* base64, when result is 0 */
};

/* vmhost's configuration, sent once before anything else (vmhost has read no input yet). */
struct vmh_config {
        struct vmhost_config cfg;
};

struct vmh_list_req {
        uint32_t flags; /* VMH_LIST_CONTROL or 0 (VMH_POOL_REFRESH: 0) */
};
/* Ask libvirt, for each active domain, whether it holds a job on it (VMH_DOM_SETTLING): one more
 * call per domain, which only vmhost's start-up pass needs (vms_autostart). */
#define VMH_LIST_CONTROL 1u

struct vmh_name {
        char name[IDENT_VM_MAX + 1]; /* a VM id (common/ident.h) */
};

/* What vmhost may ask the helper to put into a domain: the image's files must lie in the image
 * store (state_dir/images); the disks, seed, channel and console paths the helper derives from
 * its own state_dir and the VM id. */
struct vmh_image {
        char disk_path[VMH_PATH_MAX];
        char kernel_path[VMH_PATH_MAX]; /* empty: boot from the OS disk */
        char initrd_path[VMH_PATH_MAX];
        char cmdline[512];
        uint64_t virtual_size;
};

/* The disks and the cloud-init seed (the helper runs genisoimage: vmhost may not exec). */
#define VMH_SEED_FAILED "cannot build the seed" /* how a DONE detail of the seed's begins */
struct vmh_disks_req {
        char name[IDENT_VM_MAX + 1];
        uint64_t vault_mib;
        struct vmh_image image;
        struct vm_meta meta; /* what the seed says (seed.c) */
};

struct vmh_file {
        uint32_t op; /* enum vmh_file_op */
        char name[IDENT_VM_MAX + 1];
};

struct vmh_define {
        char name[IDENT_VM_MAX + 1];
        uint64_t memory_mib, vcpus;
        struct vm_meta meta; /* the helper writes it (vm_meta_format); it must parse back */
        struct vmh_image image;
};

struct vmh_set_meta {
        char name[IDENT_VM_MAX + 1];
        struct vm_meta meta;
};

/* One domain, as vmhost's inventory needs it. */
#define VMH_DOM_ACTIVE 1u
#define VMH_DOM_META   2u /* meta holds the Totebox metadata (parsed by the helper) */
/* Active, and libvirt holds a job on it (virDomainGetControlInfo is not OK): after a restart,
 * its reconnect to the QEMU, which may have died meanwhile (the domain is then shut off). Only in
 * a listing asked with VMH_LIST_CONTROL. */
#define VMH_DOM_SETTLING 4u
struct vmh_domain {
        int32_t result; /* 0, or -ENOENT / -ENOTCONN / -EIO */
        uint32_t flags;
        char name[IDENT_VM_MAX + 1];
        char uuid[37];
        char state[16]; /* running, paused, crashed, saved, shutoff */
        uint64_t max_mem_kib;
        uint32_t vcpus;
        struct vm_meta meta;
};

struct vmh_done {
        int32_t result;              /* 0 or a negative errno */
        char detail[VMH_DETAIL_MAX]; /* libvirt's message when result < 0 */
};

struct vmh_event {
        char name[IDENT_VM_MAX + 1];
        int32_t event; /* enum vmh_event_kind */
        int32_t detail;
};

union vmh_msg {
        struct vmh_config config;
        struct vmh_list_req list_req;
        struct vmh_name name;
        struct vmh_disks_req disks;
        struct vmh_define define;
        struct vmh_set_meta set_meta;
        struct vmh_domain domain;
        struct vmh_done done;
        struct vmh_event event;
        struct vmh_apply_peers apply_peers;
        struct vmh_result result;
        struct vmh_wg_key_req wg_key_req;
        struct vmh_wg_key wg_key;
        struct vmh_file file;
};

extern const struct imsg_proto vmh_proto;

/* Decodes one message: framing, then the fields of its struct. */
int vmh_decode(const void *buf, size_t n, uint16_t *ret_type, union vmh_msg *ret, char *err,
               size_t errsize);

struct vmhost;
/* The helper's state: what it learned at start, before it serves. */
struct vmh_helper {
        const struct vmhost *vh; /* its configuration (VMH_CONFIG) */
        uint8_t genesis_pk[32];
        bool have_genesis;
        uint64_t applied_version;
        /* the libvirt side (helper_virt.c); NULL: libvirt messages are answered -ENOTSUP */
        int (*virt)(struct vmh_helper *h, int fd, uint16_t type, const union vmh_msg *m);
        void *virt_state;
};
/* Answers one received message on fd; -EPROTO (err says why) for one that does not decode or
 * goes the other way. */
int vmh_handle(struct vmh_helper *h, int fd, const void *buf, size_t n, char *err, size_t errsize);
/* Serves requests on fd until EOF or a message that does not decode. */
int vmh_serve(struct vmh_helper *h, int fd);

/* The helper's checks on what vmhost sends, beyond the message's framing (helper.c): a VM id,
 * metadata fields in range (the helper also writes and parses it back), image files inside
 * state_dir/images. */
bool vmh_vm_meta_ok(const struct vm_meta *m);
int vmh_check_image(const struct vmhost_config *cfg, const struct vmh_image *img);
/* At use: each named image file is a regular file, not a link (-EPERM). */
int vmh_image_files_real(const struct vmh_image *img);
/* The program's path: vmhost-helper beside the running vmhost, or $VMHOST_HELPER. */
int vmh_program(char *buf, size_t size);

/* vmhost's side: starts the helper (before any thread), and the calls. */
int vmh_start(struct vmhost *vh);
void vmh_stop(struct vmhost *vh);
int vmh_apply_peers(struct vmhost *vh, uint64_t version);
int vmh_wg_public_key(struct vmhost *vh, char ret[WG_KEY_B64_LEN + 1]);
/* Calls one domain operation (VMH_START ... VMH_DESTROY) on name; detail gets libvirt's reason. */
int vmh_domain_op(struct vmhost *vh, uint16_t type, const char *name, char *detail, size_t size);
int vmh_lookup(struct vmhost *vh, const char *name, struct vmh_domain *ret);
/* Calls fn for every domain the helper lists (with vmhost's helper lock held: fn must not call
 * the helper); -ENOTCONN while libvirt is not there. */
int vmh_list(struct vmhost *vh, uint32_t flags, void (*fn)(void *ctx, const struct vmh_domain *d),
             void *ctx);
int vmh_make_disks(struct vmhost *vh, const char *name, const struct image_info *img,
                   uint64_t vault_mib, const struct vm_meta *meta, char *detail, size_t size);
int vmh_define(struct vmhost *vh, const char *name, uint64_t memory_mib, uint64_t vcpus,
               const struct vm_meta *meta, const struct image_info *img, char *detail, size_t size);
int vmh_set_meta(struct vmhost *vh, const char *name, const struct vm_meta *meta);
int vmh_pool_refresh(struct vmhost *vh);
/* Reads one event from the event socket (waits at most timeout_ms): 1 with *ret, 0 at timeout,
 * -ECONNRESET when the helper is gone. */
int vmh_next_event(struct vmhost *vh, int timeout_ms, struct vmh_event *ret);
/* VMH_FILE: 0 with *ret_fd (for the opens; -1 for commit and drop), or a negative errno. With
 * try, -EBUSY instead of waiting while another call holds the helper (the channel loop). */
int vmh_file(struct vmhost *vh, enum vmh_file_op op, const char *name, bool try, int *ret_fd);
/* The helper's side of VMH_FILE (helper.c): the descriptor in *ret_fd, or -1. */
int vmh_file_do(const struct vmhost_config *cfg, const struct vmh_file *f, int *ret_fd);
