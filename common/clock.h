/* Time: a monotonic clock for intervals and ages, the wall clock for records people read. */
#pragma once
#include <stdint.h>

uint64_t clock_monotonic_ms(void);
uint64_t clock_realtime_ms(void);
/* Formats a wall-clock time in ms as RFC 3339 UTC ("2026-11-23T10:00:00.000Z") into buf (>= 32). */
void clock_format_rfc3339(uint64_t realtime_ms, char *buf, unsigned long size);
