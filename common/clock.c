/* Clocks. Code that decides on time (liveness, expiry) takes "now" as an argument so that
 * unit tests can drive it with a fake clock; only the daemons' loops read these. */
#include "common/clock.h"

#include <stdio.h>
#include <time.h>

static uint64_t clock_read_ms(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t clock_monotonic_ms(void)
{
        return clock_read_ms(CLOCK_MONOTONIC);
}

uint64_t clock_realtime_ms(void)
{
        return clock_read_ms(CLOCK_REALTIME);
}

void clock_format_rfc3339(uint64_t realtime_ms, char *buf, unsigned long size)
{
        time_t secs = (time_t)(realtime_ms / 1000u);
        struct tm tm;

        gmtime_r(&secs, &tm);
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(realtime_ms % 1000u));
}
