/* Logging: "TIME LEVEL PROGRAM[PID]: message", one line per call, written with a single
 * write(2) so that lines from threads never interleave. */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "totebox";
static enum log_level log_threshold = LOG_LEVEL_INFO;
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *program, enum log_level level)
{
        log_program = program;
        log_threshold = level;
}

int log_level_parse(const char *s, enum log_level *ret_level)
{
        for (unsigned i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
                if (strcmp(s, log_level_names[i]) == 0) {
                        *ret_level = (enum log_level)i;
                        return 0;
                }
        }
        return -EINVAL;
}

/* A line is cut at LOG_LINE_MAX bytes with its newline kept. Its buffer is on the heap, not the
 * stack (frames stay under 2 KiB); without memory, it is cut at LOG_LINE_LOW bytes, not lost. */
#define LOG_LINE_MAX 2048
#define LOG_LINE_LOW 256

static void log_format_write(char *line, size_t size, enum log_level level, const char *fmt,
                             va_list ap)
{
        struct timespec ts;
        struct tm tm;
        int n, m;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, size,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d]: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_level_names[level], log_program, (int)getpid());
        if (n < 0)
                n = 0;
        if ((size_t)n > size - 2) /* a header too long for the buffer is cut like a message */
                n = (int)size - 2;
        m = vsnprintf(line + n, size - (size_t)n - 1, fmt, ap);
        if (m < 0)
                m = 0;
        n += m;
        if ((size_t)n > size - 2)
                n = (int)size - 2;
        line[n++] = '\n';
        if (write(STDERR_FILENO, line, (size_t)n) < 0)
                (void)errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        char low[LOG_LINE_LOW];
        char *line;
        va_list ap;

        if (level > log_threshold)
                return;
        line = malloc(LOG_LINE_MAX);
        va_start(ap, fmt);
        if (line)
                log_format_write(line, LOG_LINE_MAX, level, fmt, ap);
        else
                log_format_write(low, sizeof(low), level, fmt, ap);
        va_end(ap);
        free(line);
}
