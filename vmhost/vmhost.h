/* vmhost's shared state and the interfaces between its files. */
#pragma once
#include <stdint.h>

#include "common/config.h"
#include "common/heartbeat.h"

struct vmhost_config {
        char node_id[NODE_ID_MAX + 1];
        char fleetd_address[64];
        uint64_t fleetd_port;
        char heartbeat_source[64]; /* source address to bind; empty: let routing choose */
        uint64_t heartbeat_interval_ms;
        char libvirt_uri[512];
        char virt_type[8];         /* kvm, qemu or auto */
        char state_dir[4096];
        uint64_t safety_margin_mib;
        char log_level[16];
};

extern const struct config_key vmhost_config_table[];

/* sample.c: node figures from /proc */
struct cpu_sample {
        uint64_t total; /* jiffies, all CPUs */
        uint64_t idle;  /* idle + iowait */
};

struct mem_sample {
        uint64_t total_kib;
        uint64_t available_kib;
};

int sample_parse_stat(const char *buf, struct cpu_sample *ret);
int sample_parse_meminfo(const char *buf, struct mem_sample *ret);
/* Utilisation between two samples, 0..100; 0 when no time passed. */
double sample_cpu_percent(const struct cpu_sample *prev, const struct cpu_sample *cur);
int sample_read_cpu(struct cpu_sample *ret);
int sample_read_mem(struct mem_sample *ret);

/* heartbeat_sender.c */
struct heartbeat_sender {
        int fd;
        uint64_t epoch;
        uint64_t seq;
        struct cpu_sample last_cpu;
};

int heartbeat_sender_open(struct heartbeat_sender *s, const struct vmhost_config *cfg);
void heartbeat_sender_close(struct heartbeat_sender *s);
/* Samples the node and fills hb (everything but the libvirt fields). */
int heartbeat_sender_sample(struct heartbeat_sender *s, const struct vmhost_config *cfg,
                            struct heartbeat *hb);
int heartbeat_sender_send(struct heartbeat_sender *s, const struct heartbeat *hb);
