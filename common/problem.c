/* Looking a problem type up in an API edge's table (common/problem.h). */
#include "common/problem.h"

#include <string.h>

const struct problem_row *problem_row_find(const struct problem_row *rows, size_t n,
                                           const char *type, int err, bool exact)
{
        for (size_t i = 0; type && i < n; i++)
                if (strcmp(rows[i].type, type) == 0 &&
                    (rows[i].err == err || (!exact && rows[i].err == 0)))
                        return &rows[i];
        return NULL;
}
