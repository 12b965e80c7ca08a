/* Helpers for fleetd's unit tests: a temp state dir, a roster of N nodes on 127.0.0.x, a fleetd
 * opened on them with a fake node transport, and heartbeats injected at a chosen time. */
#pragma once
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "fleetd/fleetd.h"
#include "fleetd/store.h"

static inline char *tfu_tmpdir(void)
{
        char tmpl[] = "/tmp/fleetd-unit-XXXXXX";
        char *d = mkdtemp(tmpl);

        return d ? strdup(d) : NULL;
}

static inline void tfu_rmdir(char *dir)
{
        char cmd[512];

        if (!dir)
                return;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", dir);
        free(dir);
}

/* Roster text: nodes n1..nN at 127.0.1.1.. (node i at 127.0.1.i) plus the controller "ctl". */
static inline char *tfu_roster_text(unsigned n, unsigned version)
{
        size_t cap = 256 + (size_t)n * 96;
        char *s = malloc(cap);
        size_t len = (size_t)snprintf(s, cap,
                                      "{\"v\":1,\"version\":%u,\"fleet_id\":\"f1\",\"controller\":"
                                      "\"ctl\",\"nodes\":[{\"id\":\"ctl\",\"role\":\"cloud\","
                                      "\"mesh_address\":\"127.0.0.1\"}",
                                      version);

        for (unsigned i = 1; i <= n; i++)
                len += (size_t)snprintf(s + len, cap - len,
                                        ",{\"id\":\"n%u\",\"role\":\"node\",\"mesh_address\":"
                                        "\"127.%u.%u.%u\"}",
                                        i, 1 + i / 65536, (i / 256) % 256, i % 256);
        snprintf(s + len, cap - len, "]}");
        return s;
}

static inline struct in_addr tfu_addr(unsigned i)
{
        struct in_addr a;
        char buf[32];

        snprintf(buf, sizeof(buf), "127.%u.%u.%u", 1 + i / 65536, (i / 256) % 256, i % 256);
        inet_pton(AF_INET, buf, &a);
        return a;
}

/* Encodes a heartbeat of node i (vmhost run epoch) into buf (HEARTBEAT_MAX_BYTES); returns its
 * length. */
static inline int tfu_heartbeat_encode(unsigned i, uint64_t epoch, uint64_t seq, uint64_t avail,
                                       uint64_t committed, uint64_t creations, int64_t libvirt_age,
                                       const char *digest, char *buf)
{
        struct heartbeat hb = {.epoch = epoch,
                               .seq = seq,
                               .interval_ms = 10000,
                               .cpus = 4,
                               .mem_total_mib = 32768,
                               .mem_available_mib = avail,
                               .mem_committed_mib = committed,
                               .libvirt_age_ms = libvirt_age,
                               .creations = creations};

        snprintf(hb.node_id, sizeof(hb.node_id), "n%u", i);
        snprintf(hb.inventory_digest, sizeof(hb.inventory_digest), "%s",
                 digest ? digest
                        : "0000000000000000000000000000000000000000000000000000000000000000");
        return heartbeat_encode(&hb, buf, HEARTBEAT_MAX_BYTES);
}

static inline int tfu_heartbeat(struct node_table *t, unsigned i, uint64_t seq, uint64_t avail,
                                int64_t libvirt_age, const char *digest, uint64_t now)
{
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int len = tfu_heartbeat_encode(i, 1000, seq, avail, 0, 0, libvirt_age, digest, buf);

        if (len < 0)
                return len;
        return node_table_ingest(t, buf, (size_t)len, tfu_addr(i), now, err, sizeof(err));
}

/* A heartbeat through fleetd's own path (heartbeat_listener_apply), carrying a creation counter;
 * with f->lock not held. */
static inline int tfu_heartbeat_f(struct fleetd *f, unsigned i, uint64_t seq, uint64_t avail,
                                  uint64_t committed, uint64_t creations, const char *digest,
                                  uint64_t now)
{
        char buf[HEARTBEAT_MAX_BYTES], err[256];
        int len = tfu_heartbeat_encode(i, 1000, seq, avail, committed, creations, 10, digest, buf);
        int r;

        if (len < 0)
                return len;
        pthread_mutex_lock(&f->lock);
        r = heartbeat_listener_apply(f, buf, (size_t)len, tfu_addr(i), now, err, sizeof(err));
        pthread_mutex_unlock(&f->lock);
        return r;
}

/* How many audit entries of kind the store holds (the first 1,000). */
static inline unsigned tfu_audit_count(struct fleetd *f, const char *kind)
{
        json_t *a = audit_list(f->store, 0, 1000, kind);
        unsigned n = (unsigned)json_array_size(a);

        json_decref(a);
        return n;
}

static inline int tfu_fleetd_open(struct fleetd *f, char *dir, unsigned n_nodes,
                                  const struct fleet_transport *tr)
{
        char path[512];
        char *roster = tfu_roster_text(n_nodes, 1);
        FILE *fp;
        struct config_error err;

        memset(f, 0, sizeof(*f));
        pthread_mutex_init(&f->lock, NULL);
        f->udp_fd = -1;
        config_set_defaults(fleetd_config_table, &f->cfg, &err);
        snprintf(path, sizeof(path), "%s/roster.json", dir);
        fp = fopen(path, "w");
        fputs(roster, fp);
        fclose(fp);
        free(roster);
        snprintf(f->cfg.roster_file, sizeof(f->cfg.roster_file), "%s", path);
        snprintf(f->cfg.state_dir, sizeof(f->cfg.state_dir), "%s/state", dir);
        if (tr)
                f->transport = *tr;
        return fleetd_open(f);
}

/* The cmocka fixture most fleetd tests share: a fleetd of n_nodes on its own directory. */
struct tfu_fixture {
        char *dir;
        struct fleetd f;
};

static inline int tfu_setup(void **state, unsigned n_nodes, const struct fleet_transport *tr)
{
        struct tfu_fixture *fx = calloc(1, sizeof(*fx));

        fx->dir = tfu_tmpdir();
        if (tfu_fleetd_open(&fx->f, fx->dir, n_nodes, tr) < 0)
                return -1;
        *state = fx;
        return 0;
}

static inline int tfu_teardown(void **state)
{
        struct tfu_fixture *fx = *state;

        fleetd_close(&fx->f);
        tfu_rmdir(fx->dir);
        free(fx);
        return 0;
}
