/* Unit tests: the message layer between privilege-separated processes (common/imsg.h), on a real
 * socketpair: a message the table does not allow is never sent; every received message is
 * checked for header, version, type and size; a datagram longer than the buffer is an error,
 * not a truncated message; a wait ends at its timeout; the peer's close is EOF. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/imsg.h"

struct ping {
        uint32_t n;
};

static const struct imsg_type types[] = {
    {1, sizeof(struct ping), sizeof(struct ping), "ping"},
    {2, 0, 16, "note"},
};
static const struct imsg_proto proto = {"test", 3, types, 2};

static void test_send_checks_the_table(void **state)
{
        struct ping p = {7};
        char big[17] = "";
        int fds[2];

        (void)state;
        assert_int_equal(imsg_socketpair(fds), 0);
        assert_int_equal(imsg_send(fds[0], &proto, 9, &p, sizeof(p)), -EINVAL);
        assert_int_equal(imsg_send(fds[0], &proto, 1, &p, sizeof(p) - 1), -EINVAL);
        assert_int_equal(imsg_send(fds[0], &proto, 2, big, sizeof(big)), -EINVAL);
        assert_int_equal(imsg_send(fds[0], &proto, 2, NULL, 0), 0);
        assert_int_equal(imsg_send(fds[0], &proto, 1, &p, sizeof(p)), 0);
        close(fds[0]);
        close(fds[1]);
}

static void test_receive_and_check(void **state)
{
        uint8_t buf[64];
        struct imsg_hdr h;
        struct ping p = {7};
        const void *payload;
        char err[128];
        ssize_t n;
        int fds[2];

        (void)state;
        assert_int_equal(imsg_socketpair(fds), 0);
        assert_int_equal(imsg_send(fds[0], &proto, 1, &p, sizeof(p)), 0);
        n = imsg_recv(fds[1], buf, sizeof(buf), 1000);
        assert_int_equal(n, sizeof(h) + sizeof(p));
        assert_int_equal(imsg_check(&proto, buf, (size_t)n, &h, &payload, err, sizeof(err)), 0);
        assert_int_equal(h.type, 1);
        assert_int_equal(((const struct ping *)payload)->n, 7);
        /* every way a message can be wrong */
        assert_int_equal(imsg_check(&proto, buf, 3, &h, &payload, err, sizeof(err)), -EPROTO);
        assert_int_equal(imsg_check(&proto, buf, (size_t)n - 1, &h, &payload, err, sizeof(err)),
                         -EMSGSIZE);
        buf[0] = 4; /* version */
        assert_int_equal(imsg_check(&proto, buf, (size_t)n, &h, &payload, err, sizeof(err)),
                         -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "version 4, expected 3"));
        buf[0] = 3;
        buf[2] = 5; /* type */
        assert_int_equal(imsg_check(&proto, buf, (size_t)n, &h, &payload, err, sizeof(err)),
                         -EBADMSG);
        assert_non_null(strstr(err, "unknown test message type 5"));
        close(fds[0]);
        close(fds[1]);
}

static void test_oversize_timeout_eof(void **state)
{
        uint8_t big[100] = {0}, small[16];
        int fds[2];

        (void)state;
        assert_int_equal(imsg_socketpair(fds), 0);
        assert_int_equal(imsg_recv(fds[1], small, sizeof(small), 10), -ETIMEDOUT);
        /* a raw datagram longer than the reader's buffer: refused whole, never half-read */
        assert_int_equal(send(fds[0], big, sizeof(big), 0), (ssize_t)sizeof(big));
        assert_int_equal(imsg_recv(fds[1], small, sizeof(small), 1000), -EMSGSIZE);
        close(fds[0]);
        assert_int_equal(imsg_recv(fds[1], small, sizeof(small), 1000), 0);
        close(fds[1]);
}

static void test_strings(void **state)
{
        char s[4] = {'a', 'b', 'c', 'd'};

        (void)state;
        assert_false(imsg_string_ok(s, sizeof(s)));
        s[3] = '\0';
        assert_true(imsg_string_ok(s, sizeof(s)));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_send_checks_the_table),
            cmocka_unit_test(test_receive_and_check),
            cmocka_unit_test(test_oversize_timeout_eof),
            cmocka_unit_test(test_strings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
