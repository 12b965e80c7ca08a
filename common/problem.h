/* The row type of the API edges' problem tables (fleetd/api_problems.c, vmhost/node_api.c): a
 * problem type (the slug the API contract names), the errno it is chosen for (0: any other) and
 * its HTTP status. Domain code carries a negative errno and a type; only the edges' tables turn
 * them into a status. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct problem_row {
        const char *type;
        int err;
        unsigned status;
};

/* The first of the n rows of type whose err is err, or (unless exact) 0; NULL when none. */
const struct problem_row *problem_row_find(const struct problem_row *rows, size_t n,
                                           const char *type, int err, bool exact);
