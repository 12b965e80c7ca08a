/* vmhost's creation counter (vmhost/creations.c): durable across restarts, increased once at
 * every start and once per creation request, never lower than before; a damaged file is refused
 * (creations are then refused too) rather than restarted from zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmhost/vmhost.h"

struct fixture {
        char dir[64];
};

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof(*fx));

        snprintf(fx->dir, sizeof(fx->dir), "/tmp/vmhost-creations-XXXXXX");
        if (!mkdtemp(fx->dir))
                return -1;
        *state = fx;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *fx = *state;
        char path[128];

        snprintf(path, sizeof(path), "%s/creations", fx->dir);
        unlink(path);
        rmdir(fx->dir);
        free(fx);
        return 0;
}

/* A vmhost as it starts: nothing but its state_dir. */
static void vh_init(struct vmhost *vh, const char *dir)
{
        memset(vh, 0, sizeof(*vh));
        snprintf(vh->cfg.state_dir, sizeof(vh->cfg.state_dir), "%s", dir);
}

static void write_file(const char *dir, const char *text)
{
        char path[128];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/creations", dir);
        fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(text, fp);
        fclose(fp);
}

static void test_starts_and_creations_count(void **state)
{
        struct fixture *fx = *state;
        static struct vmhost vh;
        uint64_t n = 0;

        vh_init(&vh, fx->dir);
        assert_int_equal(creations_start(&vh), 0);
        assert_int_equal(creations_current(&vh), 1); /* the start-up increase */
        assert_int_equal(creations_bump(&vh, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(creations_bump(&vh, &n), 0);
        assert_int_equal(n, 3);
        /* a restart (or a crash right after a creation) goes on above every value seen */
        vh_init(&vh, fx->dir);
        assert_int_equal(creations_current(&vh), 0);
        assert_int_equal(creations_start(&vh), 0);
        assert_int_equal(creations_current(&vh), 4);
        assert_int_equal(creations_bump(&vh, &n), 0);
        assert_int_equal(n, 5);
}

static void test_damaged_file_is_refused(void **state)
{
        struct fixture *fx = *state;
        static const char *const bad[] = {
            "", "\n", "abc\n", "12x\n", "-1\n", "1\n2\n", "99999999999999999999\n"};
        static struct vmhost vh;
        uint64_t n = 77;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                write_file(fx->dir, bad[i]);
                vh_init(&vh, fx->dir);
                assert_true(creations_start(&vh) < 0);
                assert_true(creations_bump(&vh, &n) < 0); /* creations are refused */
                assert_int_equal(n, 77);
                assert_int_equal(creations_current(&vh), 0);
        }
        write_file(fx->dir, "41\n");
        vh_init(&vh, fx->dir);
        assert_int_equal(creations_bump(&vh, &n), 0); /* loads (and counts the start) first */
        assert_int_equal(n, 43);
}

static void test_unwritable_dir_is_refused(void **state)
{
        static struct vmhost vh;
        uint64_t n = 5;

        (void)state;
        vh_init(&vh, "/nonexistent-vmhost-state");
        assert_true(creations_start(&vh) < 0);
        assert_true(creations_bump(&vh, &n) < 0);
        assert_int_equal(n, 5);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_starts_and_creations_count, setup, teardown),
            cmocka_unit_test_setup_teardown(test_damaged_file_is_refused, setup, teardown),
            cmocka_unit_test(test_unwritable_dir_is_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
