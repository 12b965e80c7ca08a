/* Roster reloads: on SIGHUP and whenever the roster file's mtime changes (the pairing tool
 * rewrites it when a node joins). A new roster replaces the old one only when it parses and its
 * version is not lower; nodes still present keep their soft state (heartbeats, reservations). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "fleetd/store.h"

static bool roster_mtime_same(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static int roster_swap(struct fleetd *f, struct roster *r)
{
        struct node_table nt, old;
        int ret = node_table_init(&nt, r);

        if (ret < 0) {
                roster_free(r);
                return ret;
        }
        pthread_mutex_lock(&f->lock);
        if (f->table.roster && r->version < f->table.roster->version) {
                pthread_mutex_unlock(&f->lock);
                log_warn("roster '%s' has version %llu, older than the current %llu; kept the "
                         "current one",
                         f->cfg.roster_file, (unsigned long long)r->version,
                         (unsigned long long)f->table.roster->version);
                node_table_done(&nt);
                return -ESTALE;
        }
        node_table_carry(&nt, &f->table);
        old = f->table;
        f->table = nt;
        pthread_mutex_unlock(&f->lock);
        node_table_done(&old);
        return 0;
}

int roster_reload(struct fleetd *f, bool force)
{
        struct roster *r;
        struct stat st;
        char err[512];
        int ret;

        if (stat(f->cfg.roster_file, &st) < 0)
                return -errno;
        if (!force && roster_mtime_same(&st.st_mtim, &f->roster_mtime))
                return 0;
        f->roster_mtime = st.st_mtim;
        r = roster_load_file(f->cfg.roster_file, err, sizeof(err));
        if (!r) {
                log_error("roster reload refused, the current one stays: %s", err);
                return -EINVAL;
        }
        ret = roster_swap(f, r);
        if (ret < 0)
                return ret;
        pthread_mutex_lock(&f->lock);
        log_info("roster version %llu with %zu nodes loaded from '%s'",
                 (unsigned long long)f->table.roster->version, f->table.roster->n_nodes,
                 f->cfg.roster_file);
        audit_append(f->store, false, "roster.loaded", f->table.roster->fleet_id, "fleetd",
                     json_pack("{s:I, s:I}", "version", (json_int_t)f->table.roster->version,
                               "nodes", (json_int_t)f->table.roster->n_nodes));
        pthread_mutex_unlock(&f->lock);
        return 0;
}
