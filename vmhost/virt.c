/* vmhost's side of libvirt, which only the helper calls (vmhost/helper.h): the event thread
 * that reads the domain events the helper passes up (agent channels follow them, the inventory
 * is refreshed), and the refresher thread that rebuilds the inventory from the helper's listing.
 * The age of the last successful helper call that reached libvirt goes into every heartbeat, so
 * a wedged connection shows. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

#define VIRT_REFRESH_MS   5000
#define VIRT_RECONNECT_MS 2000
/* The start-up pass waits this long at most for libvirt to settle the domains it had running,
 * asking again at this pace. */
#define AUTOSTART_SETTLE_MS 60000
#define AUTOSTART_AGAIN_MS  250

/* fleetd calls a node unhealthy when the libvirt age in its heartbeat passes three heartbeat
 * intervals (docs/fleetd.md). The listing is refreshed at least once per interval, so the age a
 * heartbeat carries stays below one interval plus the time of one listing, however short the
 * interval is set. */
static uint64_t virt_refresh_ms(const struct vmhost *vh)
{
        uint64_t every = vh->cfg.heartbeat_interval_ms;

        return every && every < VIRT_REFRESH_MS ? every : VIRT_REFRESH_MS;
}

static void timespec_add_ms(struct timespec *ts, uint64_t ms)
{
        ts->tv_sec += (time_t)(ms / 1000);
        ts->tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts->tv_nsec >= 1000000000L) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000L;
        }
}

void virt_touch(struct vmhost *vh)
{
        atomic_store(&vh->last_ok_ms, (int_fast64_t)clock_monotonic_ms());
}

int64_t virt_age_ms(struct vmhost *vh)
{
        int_fast64_t t = atomic_load(&vh->last_ok_ms);

        return t <= 0 ? -1 : (int64_t)(clock_monotonic_ms() - (uint64_t)t);
}

void virt_request_refresh(struct vmhost *vh)
{
        pthread_mutex_lock(&vh->state_lock);
        vh->refresh_wanted = true;
        pthread_cond_signal(&vh->refresh_cond);
        pthread_mutex_unlock(&vh->state_lock);
}

static void *virt_events_main(void *arg)
{
        static const char *const names[] = {"defined",   "undefined",   "started",
                                            "suspended", "resumed",     "stopped",
                                            "shutdown",  "pmsuspended", "crashed"};
        struct vmhost *vh = arg;
        struct vmh_event e;
        int r;

        while (!atomic_load(&vh->stopping)) {
                r = vmh_next_event(vh, 1000, &e);
                if (r < 0) {
                        if (!atomic_load(&vh->stopping))
                                log_error("helper: the event socket is gone: no domain events");
                        break;
                }
                if (r == 0)
                        continue;
                log_info("domain '%s' %s (detail %d)", e.name, names[e.event], (int)e.detail);
                if (e.event == VMH_EV_STARTED || e.event == VMH_EV_RESUMED)
                        agent_chan_domain_started(vh, e.name);
                else if (e.event == VMH_EV_STOPPED || e.event == VMH_EV_CRASHED)
                        agent_chan_domain_stopped(vh, e.name);
                virt_request_refresh(vh);
        }
        return NULL;
}

static void *virt_refresh_main(void *arg)
{
        struct vmhost *vh = arg;
        struct autostart_wait aw = {0};
        uint64_t settle_until = 0;
        bool autostarting = true;

        while (!atomic_load(&vh->stopping)) {
                struct timespec ts;
                int r = inventory_refresh(vh);
                uint64_t next = r == 0 ? virt_refresh_ms(vh) : VIRT_RECONNECT_MS;

                if (r == 0)
                        virt_touch(vh);
                /* at the first listings: the VMs that should run (vms_autostart) */
                if (r == 0 && autostarting) {
                        uint64_t now = clock_monotonic_ms();

                        settle_until = settle_until ?: now + AUTOSTART_SETTLE_MS;
                        autostarting = vms_autostart(vh, &aw, now >= settle_until) > 0;
                        if (autostarting)
                                next = AUTOSTART_AGAIN_MS;
                }
                if (r == 0)
                        vms_archive_timers(vh);
                clock_gettime(CLOCK_REALTIME, &ts);
                timespec_add_ms(&ts, next);
                pthread_mutex_lock(&vh->state_lock);
                while (!vh->refresh_wanted && !atomic_load(&vh->stopping))
                        if (pthread_cond_timedwait(&vh->refresh_cond, &vh->state_lock, &ts) != 0)
                                break;
                vh->refresh_wanted = false;
                pthread_mutex_unlock(&vh->state_lock);
        }
        free(aw.names);
        return NULL;
}

int virt_start(struct vmhost *vh)
{
        int r = -pthread_create(&vh->loop_thread, NULL, virt_events_main, vh);

        if (r == 0 && inventory_refresh(vh) == 0)
                virt_touch(vh);
        /* Without libvirt at start vmhost still runs: the refresher keeps asking and the
         * heartbeat shows libvirt_age_ms -1 meanwhile. */
        return r ?: -pthread_create(&vh->refresh_thread, NULL, virt_refresh_main, vh);
}

void virt_stop(struct vmhost *vh)
{
        atomic_store(&vh->stopping, true);
        virt_request_refresh(vh);
        if (vh->refresh_thread)
                pthread_join(vh->refresh_thread, NULL);
        vh->refresh_thread = 0;
        if (vh->loop_thread)
                pthread_join(vh->loop_thread, NULL);
        vh->loop_thread = 0;
}
