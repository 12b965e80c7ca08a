/* The outcome of a domain call (fleetd.h): done, or a negative errno and a problem type with its
 * detail. No HTTP status is chosen here: api_problems.c maps the type to one. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "fleetd/fleetd.h"

void outcome_fail(struct plan_outcome *o, int err, const char *problem, const char *fmt, ...)
{
        va_list ap;

        o->done = OUTCOME_FAILED;
        o->err = err < 0 ? err : -EIO;
        o->problem = problem;
        va_start(ap, fmt);
        vsnprintf(o->detail, sizeof(o->detail), fmt, ap);
        va_end(ap);
}
