/* vmhost's helper protocol (vmhost/helper.h), played by a hostile vmhost: every libvirt message
 * with a field out of range, a name that is no VM id, metadata out of range (ids, lifecycle,
 * bools, unterminated strings) or an image path outside the image store is refused by the decoder
 * or the helper's checks; the valid ones pass. The file requests (VMH_FILE) run against a real
 * directory with the traps a vmhost that owns state_dir could lay. With TBX_WRITE_SEEDS=DIR set,
 * the messages built here are also written to DIR as seeds for fuzz_vmhost_helper (how
 * tests/fuzz/corpus/fuzz_vmhost_helper/ was made). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmhost/helper.h"
#include "vmhost/vmhost.h"

static char buf[sizeof(struct imsg_hdr) + sizeof(union vmh_msg)];
static union vmh_msg out;

/* Frames payload as a message of type (the sender's imsg_send does the same). */
static size_t frame(uint16_t type, const void *payload, size_t len)
{
        struct imsg_hdr h = {.version = VMH_VERSION, .type = type, .len = (uint32_t)len};

        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), payload, len);
        return sizeof(h) + len;
}

static void seed(const char *name, size_t n)
{
        const char *dir = getenv("TBX_WRITE_SEEDS");
        char path[4200];
        FILE *f;

        if (!dir)
                return;
        snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, n, f), n);
        fclose(f);
}

static int decode(uint16_t type, const void *payload, size_t len, const char *seed_name)
{
        char err[256];
        uint16_t got = 0;
        size_t n = frame(type, payload, len);
        int r = vmh_decode(buf, n, &got, &out, err, sizeof(err));

        if (seed_name)
                seed(seed_name, n);
        if (r == 0)
                assert_int_equal(got, type);
        return r;
}

static struct vm_meta meta(void)
{
        struct vm_meta m = {.lifecycle = VM_LC_ACTIVE};

        strcpy(m.fleet_id, "fleet-1");
        strcpy(m.node_id, "node-a");
        strcpy(m.entity, "acme-co");
        strcpy(m.request_id, "req-1");
        strcpy(m.image, "tiny");
        strcpy(m.vault_id, "00112233445566778899aabbccddeeff");
        return m;
}

static void image(struct vmh_image *i, const char *disk)
{
        memset(i, 0, sizeof(*i));
        snprintf(i->disk_path, sizeof(i->disk_path), "%s", disk);
        snprintf(i->kernel_path, sizeof(i->kernel_path), "/var/lib/tbx/images/tiny.vmlinuz");
        snprintf(i->cmdline, sizeof(i->cmdline), "console=ttyS0");
}

static void test_define(void **state)
{
        static struct vmh_define d;
        static struct vmhost_config cfg = {.state_dir = "/var/lib/tbx"};
        int bad = 7;

        memset(&d, 0, sizeof(d));
        snprintf(d.name, sizeof(d.name), "vm-1");
        d.memory_mib = 128;
        d.vcpus = 1;
        d.meta = meta();
        image(&d.image, "/var/lib/tbx/images/tiny.disk.qcow2");
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), "define"), 0);
        assert_int_equal(vmh_check_image(&cfg, &out.define.image), 0);
        /* out of the image store: refused by the helper, whatever the decoder let through */
        image(&d.image, "/var/lib/tbx/images/../../../etc/shadow");
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), "define-escape"), 0);
        assert_int_equal(vmh_check_image(&cfg, &out.define.image), -EPERM);
        image(&d.image, "/etc/shadow");
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), 0);
        assert_int_equal(vmh_check_image(&cfg, &out.define.image), -EPERM);
        image(&d.image, "/var/lib/tbx/images/..");
        assert_int_equal(vmh_check_image(&cfg, &d.image), -EPERM);
        image(&d.image, "/var/lib/tbx/images/tiny.disk.qcow2");
        snprintf(d.image.initrd_path, sizeof(d.image.initrd_path), "/var/lib/tbx/vms/x");
        assert_int_equal(vmh_check_image(&cfg, &d.image), -EPERM);
        image(&d.image, "/var/lib/tbx/images/tiny.disk.qcow2");
        /* the decoder's refusals */
        snprintf(d.name, sizeof(d.name), "VM 1'/>");
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), "define-bad-name"), -EBADMSG);
        snprintf(d.name, sizeof(d.name), "vm-1");
        d.memory_mib = 1;
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), -EBADMSG);
        d.memory_mib = 128;
        d.vcpus = 65;
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), -EBADMSG);
        d.vcpus = 1;
        /* metadata out of range: an entity that is no id, a lifecycle that does not exist or is
         * fleetd's (retired), a bool that is neither 0 nor 1, a string not terminated */
        snprintf(d.meta.entity, sizeof(d.meta.entity), "Acme Co'/>");
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), "define-bad-meta"), -EBADMSG);
        d.meta = meta();
        memcpy(&d.meta.lifecycle, &bad, sizeof(bad));
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), -EBADMSG);
        d.meta.lifecycle = VM_LC_RETIRED;
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), -EBADMSG);
        d.meta = meta();
        memset(&d.meta.has_pin, 2, 1);
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), -EBADMSG);
        d.meta = meta();
        memset(d.meta.pin.node_wg_key, 'a', sizeof(d.meta.pin.node_wg_key));
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d), NULL), -EBADMSG);
        d.meta = meta();
        /* a size other than the struct's is refused before any field is read */
        assert_int_equal(decode(VMH_DEFINE, &d, sizeof(d) - 1, NULL), -EMSGSIZE);
}

static void test_domain_ops(void **state)
{
        static const uint16_t ops[] = {VMH_LOOKUP,       VMH_START,    VMH_RESUME,
                                       VMH_MANAGED_SAVE, VMH_SHUTDOWN, VMH_DESTROY};
        static const char *const names[] = {"lookup",       "start",    "resume",
                                            "managed-save", "shutdown", "destroy"};
        struct vmh_name q;
        struct vmh_list_req l = {0};
        static struct vmh_disks_req dq;
        static struct vmh_set_meta sm;

        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
                memset(&q, 0, sizeof(q));
                snprintf(q.name, sizeof(q.name), "vm-1");
                assert_int_equal(decode(ops[i], &q, sizeof(q), names[i]), 0);
                snprintf(q.name, sizeof(q.name), "../vm");
                assert_int_equal(decode(ops[i], &q, sizeof(q), NULL), -EBADMSG);
        }
        assert_int_equal(decode(VMH_LIST, &l, sizeof(l), "list"), 0);
        assert_int_equal(decode(VMH_POOL_REFRESH, &l, sizeof(l), "pool-refresh"), 0);
        l.flags = VMH_LIST_CONTROL; /* the start-up pass's listing */
        assert_int_equal(decode(VMH_LIST, &l, sizeof(l), "list"), 0);
        assert_int_equal(decode(VMH_POOL_REFRESH, &l, sizeof(l), NULL), -EBADMSG);
        l.flags = 2; /* no such flag */
        assert_int_equal(decode(VMH_LIST, &l, sizeof(l), NULL), -EBADMSG);
        memset(&dq, 0, sizeof(dq));
        snprintf(dq.name, sizeof(dq.name), "vm-1");
        dq.vault_mib = 32;
        dq.meta = meta();
        image(&dq.image, "/var/lib/tbx/images/tiny.disk.qcow2");
        assert_int_equal(decode(VMH_MAKE_DISKS, &dq, sizeof(dq), "make-disks"), 0);
        /* the seed's metadata is checked as a define's */
        snprintf(dq.meta.entity, sizeof(dq.meta.entity), "Acme'/>");
        assert_int_equal(decode(VMH_MAKE_DISKS, &dq, sizeof(dq), "make-disks-bad-meta"), -EBADMSG);
        dq.meta = meta();
        dq.vault_mib = 1ULL << 40;
        assert_int_equal(decode(VMH_MAKE_DISKS, &dq, sizeof(dq), NULL), -EBADMSG);
        memset(&sm, 0, sizeof(sm));
        snprintf(sm.name, sizeof(sm.name), "vm-1");
        sm.meta = meta();
        assert_int_equal(decode(VMH_SET_META, &sm, sizeof(sm), "set-meta"), 0);
        snprintf(sm.meta.node_id, sizeof(sm.meta.node_id), "../x");
        assert_int_equal(decode(VMH_SET_META, &sm, sizeof(sm), NULL), -EBADMSG);
}

static void test_answers_and_events(void **state)
{
        static struct vmh_domain d;
        struct vmh_done done = {.result = -EIO};
        struct vmh_event e = {.event = VMH_EV_STARTED};
        struct vmh_result res = {0};

        memset(&d, 0, sizeof(d));
        snprintf(d.name, sizeof(d.name), "vm-1");
        snprintf(d.uuid, sizeof(d.uuid), "0f6c1f2e-8d2b-4c1a-9a53-1b2c3d4e5f60");
        snprintf(d.state, sizeof(d.state), "running");
        d.meta = meta();
        d.flags = VMH_DOM_ACTIVE | VMH_DOM_META;
        d.max_mem_kib = 131072;
        d.vcpus = 1;
        assert_int_equal(decode(VMH_DOMAIN, &d, sizeof(d), "domain"), 0);
        snprintf(d.state, sizeof(d.state), "exploded");
        assert_int_equal(decode(VMH_DOMAIN, &d, sizeof(d), NULL), -EBADMSG);
        snprintf(d.state, sizeof(d.state), "running");
        d.flags = 0x80;
        assert_int_equal(decode(VMH_DOMAIN, &d, sizeof(d), NULL), -EBADMSG);
        snprintf(done.detail, sizeof(done.detail), "start: failed");
        assert_int_equal(decode(VMH_DONE, &done, sizeof(done), "done"), 0);
        done.result = 1;
        assert_int_equal(decode(VMH_DONE, &done, sizeof(done), NULL), -EBADMSG);
        assert_int_equal(decode(VMH_LIST_END, &res, sizeof(res), "list-end"), 0);
        snprintf(e.name, sizeof(e.name), "vm-1");
        assert_int_equal(decode(VMH_EVENT, &e, sizeof(e), "event"), 0);
        e.event = VMH_EV_COUNT;
        assert_int_equal(decode(VMH_EVENT, &e, sizeof(e), "event-bad"), -EBADMSG);
}

/* A helper without a libvirt side answers every libvirt request, with -ENOTSUP, in a message its
 * caller decodes; the configuration sent again after the start ends it. */
static void test_handle_without_libvirt(void **state)
{
        static struct vmhost vh;
        struct vmh_helper h = {.vh = &vh};
        struct vmh_name q = {"vm-1"};
        static struct vmh_config c;
        static char back[sizeof(buf)];
        char err[256];
        uint16_t type = 0;
        int fds[2];
        ssize_t n;

        assert_int_equal(imsg_socketpair(fds), 0);
        assert_int_equal(
            vmh_handle(&h, fds[0], buf, frame(VMH_START, &q, sizeof(q)), err, sizeof(err)), 0);
        n = imsg_recv(fds[1], back, sizeof(back), 1000);
        assert_true(n > 0);
        assert_int_equal(vmh_decode(back, (size_t)n, &type, &out, err, sizeof(err)), 0);
        assert_int_equal(type, VMH_DONE);
        assert_int_equal(out.done.result, -ENOTSUP);
        snprintf(c.cfg.state_dir, sizeof(c.cfg.state_dir), "/var/lib/tbx");
        assert_int_equal(
            vmh_handle(&h, fds[0], buf, frame(VMH_CONFIG, &c, sizeof(c)), err, sizeof(err)),
            -EPROTO);
        close(fds[0]);
        close(fds[1]);
}

/* Sends one VMH_FILE to a helper (no libvirt) and returns its result; *ret_fd the descriptor. */
static int file_call(struct vmh_helper *h, uint32_t op, const char *name, int *ret_fd)
{
        struct vmh_file f = {.op = op};
        static char back[sizeof(buf)];
        char err[256];
        uint16_t type = 0;
        int fds[2];
        ssize_t n;

        snprintf(f.name, sizeof(f.name), "%s", name);
        assert_int_equal(imsg_socketpair(fds), 0);
        assert_int_equal(
            vmh_handle(h, fds[0], buf, frame(VMH_FILE, &f, sizeof(f)), err, sizeof(err)), 0);
        n = imsg_recv_fd(fds[1], back, sizeof(back), 1000, ret_fd);
        assert_true(n > 0);
        assert_int_equal(vmh_decode(back, (size_t)n, &type, &out, err, sizeof(err)), 0);
        assert_int_equal(type, VMH_FILE_IS);
        close(fds[0]);
        close(fds[1]);
        if (out.result.result < 0)
                assert_int_equal(*ret_fd, -1);
        return out.result.result;
}

static int listen_at(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 4), 0);
        return fd;
}

/* VMH_FILE, as a hostile vmhost (which owns state_dir) would use it: the helper connects the
 * channel and opens the vault through the directories it owns only, never through a link or a
 * directory others may write; the import never lands over a disk. */
static void test_files(void **state)
{
        static struct vmhost vh;
        struct vmh_helper h = {.vh = &vh};
        char dir[] = "/tmp/tbx-helper-files-XXXXXX", path[4300];
        struct vmh_file f = {.op = VMH_FILE_CHANNEL};
        int lfd, fd = -1, a;

        assert_non_null(mkdtemp(dir));
        snprintf(vh.cfg.state_dir, sizeof(vh.cfg.state_dir), "%s", dir);
        /* the decoder: an op out of range or a name that is no VM id */
        snprintf(f.name, sizeof(f.name), "vm-1");
        assert_int_equal(decode(VMH_FILE, &f, sizeof(f), "file-channel"), 0);
        f.op = VMH_FILE_OP_COUNT;
        assert_int_equal(decode(VMH_FILE, &f, sizeof(f), "file-bad-op"), -EBADMSG);
        f.op = VMH_FILE_VAULT;
        snprintf(f.name, sizeof(f.name), "../vms");
        assert_int_equal(decode(VMH_FILE, &f, sizeof(f), "file-bad-name"), -EBADMSG);
        /* no channels directory yet; then one that is a link to another directory */
        assert_int_equal(file_call(&h, VMH_FILE_CHANNEL, "vm-1", &fd), -ENOENT);
        snprintf(path, sizeof(path), "%s/elsewhere", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/channels", dir);
        assert_int_equal(symlink("elsewhere", path), 0);
        assert_true(file_call(&h, VMH_FILE_CHANNEL, "vm-1", &fd) < 0);
        assert_int_equal(unlink(path), 0);
        /* one others may write to */
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(chmod(path, 0777), 0);
        assert_int_equal(file_call(&h, VMH_FILE_CHANNEL, "vm-1", &fd), -EPERM);
        assert_int_equal(chmod(path, 0700), 0);
        /* the real one: a connected socket comes up */
        snprintf(path, sizeof(path), "%s/channels/vm-1.sock", dir);
        lfd = listen_at(path);
        assert_int_equal(file_call(&h, VMH_FILE_CHANNEL, "vm-1", &fd), 0);
        assert_true(fd >= 0);
        a = accept(lfd, NULL, NULL);
        assert_true(a >= 0);
        assert_int_equal(write(a, "x", 1), 1);
        usleep(10000);
        assert_int_equal(read(fd, path, 1), 1);
        close(a);
        close(fd);
        close(lfd);
        /* the vault: none, then an import made, committed, and never a second over it */
        snprintf(path, sizeof(path), "%s/vms", dir);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(file_call(&h, VMH_FILE_VAULT, "vm-1", &fd), -ENOENT);
        assert_int_equal(file_call(&h, VMH_FILE_VAULT_NEW, "vm-1", &fd), 0);
        assert_int_equal(write(fd, "disk", 4), 4);
        close(fd);
        assert_int_equal(file_call(&h, VMH_FILE_VAULT_COMMIT, "vm-1", &fd), 0);
        assert_int_equal(fd, -1);
        assert_int_equal(file_call(&h, VMH_FILE_VAULT_NEW, "vm-1", &fd), -EEXIST);
        assert_int_equal(file_call(&h, VMH_FILE_VAULT, "vm-1", &fd), 0);
        assert_int_equal(read(fd, path, 4), 4);
        assert_memory_equal(path, "disk", 4);
        close(fd);
        assert_int_equal(file_call(&h, VMH_FILE_VAULT_DROP, "vm-1", &fd), 0);
        /* an image file vmhost's user made a link (to root's file) is refused at use */
        {
                static struct vmh_image img;

                memset(&img, 0, sizeof(img));
                snprintf(img.disk_path, sizeof(img.disk_path), "%s/vms/vm-1-vault.img", dir);
                assert_int_equal(vmh_image_files_real(&img), 0);
                snprintf(img.disk_path, sizeof(img.disk_path), "%s/channels", dir);
                assert_int_equal(vmh_image_files_real(&img), -EPERM);
                snprintf(img.disk_path, sizeof(img.disk_path), "%s/link.qcow2", dir);
                assert_int_equal(symlink("/etc/passwd", img.disk_path), 0);
                assert_int_equal(vmh_image_files_real(&img), -EPERM);
        }
        /* a vault that is a link is not opened */
        snprintf(path, sizeof(path), "%s/vms/vm-2-vault.img", dir);
        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_true(file_call(&h, VMH_FILE_VAULT, "vm-2", &fd) < 0);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir);
        assert_int_equal(system(path), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_define),
            cmocka_unit_test(test_domain_ops),
            cmocka_unit_test(test_answers_and_events),
            cmocka_unit_test(test_handle_without_libvirt),
            cmocka_unit_test(test_files),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
