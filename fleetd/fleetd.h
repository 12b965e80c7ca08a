/* fleetd's shared state and the interfaces between its files. */
#pragma once
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "common/heartbeat.h"
#include "common/roster.h"

#define FLEETD_LISTEN_MAX 4

struct fleetd_config {
        char api_listen[256];   /* comma-separated IPv4 addresses */
        uint64_t api_port;
        char heartbeat_listen[64];
        uint64_t heartbeat_port;
        char roster_file[4096];
        char state_dir[4096];
        uint64_t heartbeat_interval_ms;
        uint64_t suspect_after_ms;
        uint64_t evict_after_ms;
        uint64_t max_body_bytes;
        uint64_t max_json_depth;
        char log_level[16];
};

extern const struct config_key fleetd_config_table[];

enum node_state { NODE_UNSEEN, NODE_ALIVE, NODE_SUSPECT, NODE_EVICTED };

struct fleet_node {
        const struct roster_node *rn; /* the roster entry; owned by the roster */
        bool seen;
        struct heartbeat hb;          /* the last accepted heartbeat */
        uint64_t last_seen_ms;        /* monotonic */
        uint64_t heartbeats;
};

enum hb_drop {
        HB_DROP_MALFORMED,
        HB_DROP_OVERSIZED,
        HB_DROP_UNKNOWN_ADDRESS,
        HB_DROP_NODE_MISMATCH,
        HB_DROP_REPLAYED,
        HB_DROP_MAX
};

struct node_table {
        struct roster *roster;
        struct fleet_node *nodes; /* parallel to roster->nodes */
        uint64_t received;
        uint64_t accepted;
        uint64_t dropped[HB_DROP_MAX];
};

struct fleetd {
        struct fleetd_config cfg;
        pthread_mutex_t lock; /* guards table */
        struct node_table table;
        int udp_fd;
        struct MHD_Daemon *http[FLEETD_LISTEN_MAX];
        unsigned n_http;
};

/* nodes.c */
int node_table_init(struct node_table *t, struct roster *roster);
void node_table_done(struct node_table *t);
/* Applies one datagram from src; returns 0 when accepted, else -(1 + enum hb_drop) with a
 * reason in err. Takes ownership of nothing. */
int node_table_ingest(struct node_table *t, const char *buf, size_t len, struct in_addr src,
                      uint64_t now_ms, char *err, size_t errsize);
enum node_state node_state_at(const struct fleet_node *n, const struct fleetd_config *cfg,
                              uint64_t now_ms);
const char *node_state_name(enum node_state s);
const char *hb_drop_name(enum hb_drop d);

/* heartbeat_listener.c */
int heartbeat_listener_open(const struct fleetd_config *cfg, int *ret_fd);
/* Receives every datagram waiting on fd and applies them. */
void heartbeat_listener_drain(struct fleetd *f);

/* api.c */
int api_start(struct fleetd *f);
void api_stop(struct fleetd *f);
