/* Unit tests: the config module (defaults, file parsing, bounds, errors, printing). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"

struct test_cfg {
        char name[16];
        uint64_t port;
        uint64_t interval_ms;
        bool enabled;
};

static const struct config_key test_table[] = {
    {"name", CONFIG_STRING, offsetof(struct test_cfg, name), 16, 16, "node1", "a name"},
    {"port", CONFIG_UINT, offsetof(struct test_cfg, port), 1, 65535, "9170", "a port"},
    {"interval", CONFIG_DURATION, offsetof(struct test_cfg, interval_ms), 100, 60000, "10s",
     "an interval"},
    {"enabled", CONFIG_BOOL, offsetof(struct test_cfg, enabled), 0, 0, "yes", "a switch"},
    {0},
};

static char *write_temp(const char *text)
{
        char *path = strdup("/tmp/totebox-config-XXXXXX");
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

static int load_text(const char *text, struct test_cfg *cfg, struct config_error *err)
{
        char *path = write_temp(text);
        int r;

        assert_int_equal(config_set_defaults(test_table, cfg, err), 0);
        r = config_load_file(test_table, cfg, path, err);
        unlink(path);
        free(path);
        return r;
}

static void test_defaults(void **state)
{
        struct test_cfg cfg;
        struct config_error err;

        assert_int_equal(config_set_defaults(test_table, &cfg, &err), 0);
        assert_string_equal(cfg.name, "node1");
        assert_int_equal(cfg.port, 9170);
        assert_int_equal(cfg.interval_ms, 10000);
        assert_true(cfg.enabled);
}

static void test_file_values(void **state)
{
        struct test_cfg cfg;
        struct config_error err;

        assert_int_equal(load_text("# comment\n\nname = \"laptop-a\"\nport=1\n"
                                   "interval = 250ms\nenabled = off\n",
                                   &cfg, &err),
                         0);
        assert_string_equal(cfg.name, "laptop-a");
        assert_int_equal(cfg.port, 1);
        assert_int_equal(cfg.interval_ms, 250);
        assert_false(cfg.enabled);
}

static void test_errors_name_line_and_token(void **state)
{
        struct test_cfg cfg;
        struct config_error err;

        assert_int_equal(load_text("port = 1\nbogus = 3\n", &cfg, &err), -EINVAL);
        assert_non_null(strstr(err.text, ":2: unknown key 'bogus'"));
        assert_int_equal(load_text("port = 70000\n", &cfg, &err), -EINVAL);
        assert_non_null(strstr(err.text, "value '70000' for 'port' is outside 1..65535"));
        assert_int_equal(load_text("port = 12abc\n", &cfg, &err), -EINVAL);
        assert_non_null(strstr(err.text, "'12abc' is not a whole number"));
        assert_int_equal(load_text("interval = 10 parsecs\n", &cfg, &err), -EINVAL);
        assert_int_equal(load_text("interval = 50ms\n", &cfg, &err), -EINVAL);
        assert_int_equal(load_text("enabled = maybe\n", &cfg, &err), -EINVAL);
        assert_int_equal(load_text("name = \"this-name-is-far-too-long\"\n", &cfg, &err), -EINVAL);
        assert_int_equal(load_text("just words\n", &cfg, &err), -EINVAL);
        assert_non_null(strstr(err.text, "expected 'key = value'"));
        assert_int_equal(load_text("port = -1\n", &cfg, &err), -EINVAL);
        assert_int_equal(load_text("port = 18446744073709551616\n", &cfg, &err), -EINVAL);
}

static void test_long_line_refused(void **state)
{
        struct test_cfg cfg;
        struct config_error err;
        char *text = malloc(3000);

        memset(text, 'a', 2999);
        text[2999] = '\0';
        assert_int_equal(load_text(text, &cfg, &err), -EINVAL);
        assert_non_null(strstr(err.text, "line is longer"));
        free(text);
}

static void test_set_option(void **state)
{
        struct test_cfg cfg;
        struct config_error err;

        assert_int_equal(config_set_defaults(test_table, &cfg, &err), 0);
        assert_int_equal(config_set_option(test_table, &cfg, "port=443", &err), 0);
        assert_int_equal(cfg.port, 443);
        assert_int_equal(config_set_option(test_table, &cfg, "port", &err), -EINVAL);
        assert_int_equal(config_set_option(test_table, &cfg, "nope=1", &err), -EINVAL);
        assert_non_null(strstr(err.text, "--set: unknown key 'nope'"));
}

/* Golden: the printed configuration is stable, file syntax, and reads back the same. */
static void test_print_golden_roundtrip(void **state)
{
        static const char golden[] = "name = \"node1\"\nport = 9170\ninterval = 10s\n"
                                     "enabled = true\n";
        struct test_cfg cfg, again;
        struct config_error err;
        char buf[512] = "";
        FILE *f = fmemopen(buf, sizeof(buf), "w");

        memset(&cfg, 0, sizeof(cfg));
        memset(&again, 0, sizeof(again));
        assert_int_equal(config_set_defaults(test_table, &cfg, &err), 0);
        config_print(test_table, &cfg, f);
        fclose(f);
        assert_string_equal(buf, golden);
        assert_int_equal(load_text(buf, &again, &err), 0);
        assert_memory_equal(&cfg, &again, sizeof(cfg));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_defaults),
            cmocka_unit_test(test_file_values),
            cmocka_unit_test(test_errors_name_line_and_token),
            cmocka_unit_test(test_long_line_refused),
            cmocka_unit_test(test_set_option),
            cmocka_unit_test(test_print_golden_roundtrip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
