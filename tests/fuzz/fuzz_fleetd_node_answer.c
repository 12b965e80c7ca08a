/* Fuzz target: fleetd's handling of what a node's vmhost answers (which may be buggy or
 * compromised): a creation's answer (POST /v1/vms), a lifecycle verb's (suspend, resume,
 * archive, verify) and an inventory fetched by the dispatcher (GET /v1/inventory). The input's
 * first byte picks the call, the second the HTTP status (or no answer), the rest is the body the
 * fake transport returns, as tests/unit/test_fleetd_dispatch.c fakes f->transport.call. The real
 * dispatcher and verb code run against a fleetd with one node, three VMs and a store in a
 * scratch directory. After every input the reservations must add up: the node's reserved_mib is
 * the memory of the VMs marked reserved. */
#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "fleetd/fleetd.h"
#include "fleetd/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
        const uint8_t *body;
        size_t len;
        long status; /* 0: no answer */
} fuzz_answer;

static int fuzz_call(void *ctx, const char *address, uint16_t port, const char *method,
                     const char *path, const char *body, uint64_t timeout_ms, long *ret_status,
                     char **ret_body)
{
        (void)ctx, (void)address, (void)port, (void)method, (void)path, (void)body;
        (void)timeout_ms;
        if (!fuzz_answer.status)
                return -ETIMEDOUT;
        *ret_body = malloc(fuzz_answer.len + 1);
        if (!*ret_body)
                return -ENOMEM;
        memcpy(*ret_body, fuzz_answer.body, fuzz_answer.len);
        (*ret_body)[fuzz_answer.len] = '\0';
        *ret_status = fuzz_answer.status;
        return 0;
}

static const struct fleet_vm fuzz_vms[] = {
    {.id = "tbx-new-000000",
     .entity = "new",
     .node_id = "n1",
     .request_id = "r0",
     .status = VM_CREATING,
     .lifecycle = VM_LC_ACTIVE,
     .memory_mib = 1024},
    {.id = "tbx-saved-000000",
     .entity = "saved",
     .node_id = "n1",
     .request_id = "r1",
     .status = VM_ACTIVE,
     .lifecycle = VM_LC_SUSPENDED,
     .memory_mib = 512},
    {.id = "tbx-runs-000000",
     .entity = "runs",
     .node_id = "n1",
     .request_id = "r2",
     .status = VM_ACTIVE,
     .lifecycle = VM_LC_ACTIVE,
     .memory_mib = 256},
};
#define FUZZ_N_VMS (sizeof(fuzz_vms) / sizeof(fuzz_vms[0]))

static char fuzz_dir[] = "/tmp/fuzz-node-answer-XXXXXX";

/* The scratch directory goes when the fuzzer ends. */
static void fuzz_cleanup(void)
{
        DIR *d = opendir(fuzz_dir);
        struct dirent *e;
        char path[256];

        while (d && (e = readdir(d)))
                if (e->d_name[0] != '.' &&
                    snprintf(path, sizeof(path), "%s/%s", fuzz_dir, e->d_name) < (int)sizeof(path))
                        unlink(path);
        if (d)
                closedir(d);
        rmdir(fuzz_dir);
}

static struct fleetd *fuzz_fleetd(void)
{
        static struct fleetd f = {.lock = PTHREAD_MUTEX_INITIALIZER, .udp_fd = -1};
        static const char roster[] = "{\"v\":1,\"version\":1,\"fleet_id\":\"f\",\"controller\":"
                                     "\"n1\",\"nodes\":[{\"id\":\"n1\",\"role\":\"node\","
                                     "\"mesh_address\":\"127.0.0.2\"}]}";
        char err[256];
        struct config_error cerr;

        if (f.table.roster)
                return &f;
        log_init("fuzz", LOG_LEVEL_ERROR);
        if (sodium_init() < 0 || !mkdtemp(fuzz_dir))
                abort();
        atexit(fuzz_cleanup);
        config_set_defaults(fleetd_config_table, &f.cfg, &cerr);
        node_table_init(&f.table, roster_parse(roster, strlen(roster), err, sizeof(err)));
        if (!f.table.roster || store_open(fuzz_dir, &f.store) < 0)
                abort();
        for (size_t i = 0; i < FUZZ_N_VMS; i++)
                store_vm_insert(f.store, &fuzz_vms[i]);
        f.transport = (struct fleet_transport){fuzz_call, NULL};
        return &f;
}

/* Every input starts from the same fleet: the node alive with room, the VMs as above. */
static void fuzz_reset(struct fleetd *f)
{
        struct fleet_node *n = &f->table.nodes[0];

        vm_table_free(f);
        for (size_t i = 0; i < FUZZ_N_VMS; i++)
                vm_table_add(f, &fuzz_vms[i]);
        n->seen = true;
        n->last_seen_ms = clock_monotonic_ms();
        n->hb_avail_mib = 8192;
        n->hb_libvirt_age_ms = 10;
        n->hb.creations = 5;
        n->reserved_mib = 0;
        n->inv = INV_OK;
        n->inv_next_ms = 0;
        vm_reserve(f, &f->vms[0]); /* confirmed, creation in flight */
}

static void fuzz_check_reservations(struct fleetd *f)
{
        uint64_t sum = 0;

        for (size_t i = 0; i < f->n_vms; i++)
                sum += f->vms[i].reserved ? f->vms[i].memory_mib : 0;
        if (sum != f->table.nodes[0].reserved_mib)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const long statuses[] = {0, 200, 201, 202, 400, 404, 408, 409, 422, 500, 503};
        static const char *const verbs[] = {"suspend", "resume", "archive", "verify"};
        struct fleetd *f = fuzz_fleetd();
        struct plan_outcome o = {0};

        if (size < 2)
                return 0;
        fuzz_reset(f);
        fuzz_answer.status = statuses[data[1] % (sizeof(statuses) / sizeof(statuses[0]))];
        fuzz_answer.body = data + 2;
        fuzz_answer.len = size - 2;
        switch (data[0] % 4) {
        case 0: /* the creation's answer, then (the digest changed) an inventory */
                f->table.nodes[0].inv = data[0] & 4 ? INV_WANTED : INV_OK;
                dispatch_run_once(f, clock_monotonic_ms());
                break;
        case 1: /* an inventory alone */
                f->vms[0].status = VM_FAILED;
                f->table.nodes[0].inv = INV_WANTED;
                dispatch_run_once(f, clock_monotonic_ms());
                break;
        default: /* a verb on the suspended VM or the running one */
                dispatch_vm_verb(f, f->vms[1 + (data[0] >> 2) % 2].id, verbs[(data[0] >> 3) % 4],
                                 "fuzz", &o);
                json_decref(o.body);
                break;
        }
        fuzz_check_reservations(f);
        return 0;
}
