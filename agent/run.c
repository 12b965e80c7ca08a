/* `totebox-agent run`: the daemon. One thread runs a poll() loop over the signalfd, inotify on
 * the inbox and the host channel, with two timers (inbox rescan, full verification). Seals are
 * reported at once; full verifications at start, on schedule and on request. Hashing during a
 * full verification runs on worker threads; the loop waits for it (the channel queue keeps what
 * arrives meanwhile). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/log.h"

struct agent {
        struct agent_config cfg;
        struct vault v;
        struct channel ch;
        struct diode dio;
        struct verify_result last;
        int inotify_fd;
        uint64_t next_scan_ms, next_verify_ms;
        char vault_id[128];
        int last_scan_error; /* logged once until it changes: a refusal lasts until an operator acts
                              */
};

static void agent_send(struct agent *a, char *line, const char *what)
{
        if (!line) {
                log_error("cannot build the %s message; not sent", what);
                return;
        }
        if (channel_send(&a->ch, line) < 0)
                log_warn("cannot queue the %s message for '%s'", what, a->ch.path);
        free(line);
        channel_flush(&a->ch, clock_monotonic_ms());
}

static void agent_report(struct agent *a, const char *trigger, const char *request_id,
                         const struct verify_result *vr)
{
        struct sth s;

        /* a ledger that does not verify against the stored head keeps that head: evidence */
        if (vault_report_sth(&a->v, clock_realtime_ms(), &s) < 0)
                log_warn("cannot store the signed tree head in '%s/" AGENT_STATE_DIR "'", a->v.dir);
        agent_send(a, report_build(trigger, request_id, a->vault_id, a->v.sk, &s, vr), "report");
}

static void agent_verify(struct agent *a, const char *trigger, const char *request_id)
{
        struct verify_result vr;

        verify_vault(&a->v, (unsigned)a->cfg.verify_threads, NULL, NULL, &vr);
        log_info("full verification (%s): %" PRIu64 " records, %" PRIu64 " bytes, %" PRIu64
                 " ms, %" PRIu64 " mismatches",
                 trigger, vr.records, vr.bytes, vr.duration_ms, vr.mm.total);
        for (size_t i = 0; i < vr.mm.n && i < 20; i++)
                log_warn("mismatch %s '%s': %s", vr.mm.items[i].kind, vr.mm.items[i].path,
                         vr.mm.items[i].detail);
        if (a->v.head_ok &&
            (mismatch_has_ledger_kind(&vr.mm) || mismatch_count_kind(&vr.mm, "unsigned"))) {
                a->v.head_ok = false;
                snprintf(a->v.head_why, sizeof(a->v.head_why),
                         "the ledger on disk differs from what the agent sealed");
                log_error("vault '%s': the ledger on disk differs from what the agent sealed; "
                          "sealing stops and the signed tree head is kept",
                          a->v.dir);
        }
        verify_result_done(&a->last);
        a->last = vr;
        malloc_trim(0); /* the re-read ledger and hash buffers are gone; give the pages back */
        agent_report(a, trigger, request_id, &a->last);
        a->next_verify_ms = clock_monotonic_ms() + a->cfg.verify_interval_ms;
}

static void agent_scan(struct agent *a)
{
        uint64_t start = clock_monotonic_ms();
        struct mismatch_list log;
        struct seal_result sr;
        struct verify_result view;
        int r;

        mismatch_list_init(&log);
        r = seal_scan_inbox(&a->v, a->cfg.max_record_bytes, &sr, &log);
        if (r < 0 && r != -EROFS && r != a->last_scan_error)
                log_warn("inbox of '%s' not sealed: %s", a->v.dir,
                         r == -EUCLEAN  ? "the ledger does not end with a newline"
                         : r == -EAGAIN ? "an interrupted seal is not resolved"
                         : r == -ENOTRECOVERABLE
                             ? "the ledger does not verify against the last signed tree head"
                             : agent_strerror(r));
        if (r == -ENOTRECOVERABLE && r != a->last_scan_error)
                log_warn("vault '%s': %s; nothing is sealed and the head is kept", a->v.dir,
                         a->v.head_why);
        a->last_scan_error = r;
        for (size_t i = 0; i < log.n; i++) {
                const struct mismatch *m = &log.items[i];

                if (!strcmp(m->kind, "seal-failed"))
                        log_error("cannot seal '%s': %s", m->path, m->detail);
                else
                        log_warn("%s '%s': %s", m->kind, m->path, m->detail);
        }
        mismatch_list_done(&log);
        a->next_scan_ms = clock_monotonic_ms() + a->cfg.scan_interval_ms;
        if (r < 0 || sr.sealed == 0)
                return;
        log_info("sealed %zu records (ledger size %zu)", sr.sealed, a->v.ledger.n);
        view = a->last; /* the last full verification's mismatches still stand */
        view.records = a->v.ledger.n;
        view.bytes = a->v.ledger.bytes;
        view.duration_ms = clock_monotonic_ms() - start;
        agent_report(a, "seal", NULL, &view);
}

/* After a deposit: the host accepts the new head with a consistency proof, as after a scan. */
static void agent_seal_report(struct agent *a)
{
        struct verify_result view = a->last;

        view.records = a->v.ledger.n;
        view.bytes = a->v.ledger.bytes;
        view.duration_ms = 0;
        agent_report(a, "seal", NULL, &view);
}

static void agent_on_line(void *ctx, const char *line, size_t len)
{
        struct agent *a = ctx;
        struct agent_request req;
        char err[320];
        char *answer;

        if (!line) {
                agent_send(a, report_build_error(NULL, "line longer than 65536 bytes; discarded"),
                           "error");
                return;
        }
        if (len == 0)
                return;
        switch (diode_on_line(&a->dio, line, len)) {
        case 2:
                agent_seal_report(a);
                return;
        case 1:
                return;
        default:
                break;
        }
        if (agent_request_parse(line, len, &req, err, sizeof(err)) < 0) {
                log_warn("bad request from the host: %s", err);
                agent_send(a, report_build_error(req.request_id, err), "error");
                return;
        }
        if (req.type == AGENT_REQ_VERIFY) {
                agent_verify(a, "request", req.request_id);
                return;
        }
        answer = report_answer_consistency(&a->v.ledger, &req, err, sizeof(err));
        agent_send(a, answer ? answer : report_build_error(req.request_id, err),
                   answer ? "consistency" : "error");
}

static void agent_on_data(void *ctx, const char *id, uint64_t offset, const uint8_t *p, size_t n,
                          bool last)
{
        struct agent *a = ctx;

        diode_on_data(&a->dio, id, offset, p, n, last);
}

static void agent_on_bad(void *ctx, const char *why)
{
        struct agent *a = ctx;

        log_warn("bad data frame from the host: %s", why);
        diode_abort(&a->dio, why);
}

static const struct diode_frame_ops agent_frame_ops = {
    .line = agent_on_line, .data = agent_on_data, .bad = agent_on_bad};

static void agent_channel(struct agent *a, short revents)
{
        uint64_t now = clock_monotonic_ms();

        if (revents & POLLIN)
                channel_read(&a->ch, now, &agent_frame_ops, a);
        else if (revents & (POLLHUP | POLLERR))
                channel_reset(&a->ch, now);
        if (a->ch.fd < 0)
                diode_abort(&a->dio, "the channel closed");
        if (a->ch.fd >= 0)
                channel_flush(&a->ch, now);
}

static int agent_timeout(const struct agent *a)
{
        uint64_t now = clock_monotonic_ms(), next = now + 1000;

        if (a->next_scan_ms < next)
                next = a->next_scan_ms;
        if (a->next_verify_ms < next)
                next = a->next_verify_ms;
        return next > now ? (int)(next - now) : 0;
}

/* Empties the inotify queue: its events only say "scan now". A buffer of one event with the
 * longest name is enough for every read (inotify(7)); the loop reads until none is left. */
static void agent_inotify_drain(int fd)
{
        char buf[sizeof(struct inotify_event) + NAME_MAX + 1];

        while (read(fd, buf, sizeof(buf)) > 0)
                ;
}

static int agent_loop(struct agent *a, int sfd)
{
        for (;;) {
                struct pollfd fds[3] = {{.fd = sfd, .events = POLLIN},
                                        {.fd = a->inotify_fd, .events = POLLIN},
                                        {.fd = -1}};

                channel_ensure_open(&a->ch, clock_monotonic_ms());
                fds[2].fd = a->ch.fd;
                fds[2].events = channel_poll_events(&a->ch);
                if (poll(fds, 3, agent_timeout(a)) < 0 && errno != EINTR)
                        return -errno;
                if (fds[0].revents & POLLIN) {
                        struct signalfd_siginfo si;

                        if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGHUP) {
                                log_info("signal %u: shutting down", si.ssi_signo);
                                return 0;
                        }
                }
                if (fds[1].revents & POLLIN) {
                        agent_inotify_drain(a->inotify_fd);
                        agent_scan(a);
                }
                if (fds[2].fd >= 0 && fds[2].revents)
                        agent_channel(a, fds[2].revents);
                if (clock_monotonic_ms() >= a->next_scan_ms)
                        agent_scan(a);
                if (clock_monotonic_ms() >= a->next_verify_ms)
                        agent_verify(a, "schedule", NULL);
        }
}

static int agent_setup(struct agent *a)
{
        struct mismatch_list scratch;
        char err[512], *inbox = NULL;
        uint64_t kept = 0;
        int r;

        mismatch_list_init(&scratch);
        r = vault_open(&a->v, a->cfg.vault_dir, a->cfg.key_file, false, &scratch, err, sizeof(err));
        mismatch_list_done(&scratch);
        if (r == 0)
                r = agent_drop_privileges(agent_caps_daemon, &kept, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                return r;
        }
        log_info("capabilities kept: 0x%" PRIx64
                 " (of immutable, fowner, dac_override, lease, chown); "
                 "no_new_privs set",
                 kept);
        if (a->cfg.vault_id[0])
                snprintf(a->vault_id, sizeof(a->vault_id), "%s", a->cfg.vault_id);
        else if (gethostname(a->vault_id, sizeof(a->vault_id) - 1) < 0)
                snprintf(a->vault_id, sizeof(a->vault_id), "unknown");
        log_info("vault '%s' open: %zu ledger entries, ledger %s", a->v.dir, a->v.ledger.n,
                 a->v.ledger_append_only ? "append-only" : "without the append-only flag");
        r = channel_init(&a->ch, a->cfg.channel, a->cfg.queue_max);
        if (r < 0)
                return r;
        a->v.seal_batch = (unsigned)a->cfg.seal_batch;
        diode_init(&a->dio, &a->v, &a->ch, a->cfg.max_record_bytes);
        if (asprintf(&inbox, "%s/app-console-input", a->v.dir) < 0) {
                log_error("out of memory");
                return -ENOMEM;
        }
        a->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (a->inotify_fd < 0 ||
            inotify_add_watch(a->inotify_fd, inbox, IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
                log_warn("no inotify on '%s' (%s): rescanning every %" PRIu64 " ms", inbox,
                         strerror(errno), a->cfg.scan_interval_ms);
        free(inbox);
        channel_ensure_open(&a->ch, clock_monotonic_ms());
        agent_scan(a);
        agent_verify(a, "start", NULL);
        return 0;
}

/* `run --vault DIR --channel PATH` are shorthands for --set vault_dir=DIR / channel=PATH. */
static int agent_rewrite_args(int argc, char **argv, char **out, char bufs[][4200], int max)
{
        int n = 0, k = 0;

        for (int i = 0; i < argc && n < max - 1; i++) {
                const char *key = !strcmp(argv[i], "--vault")     ? "vault_dir"
                                  : !strcmp(argv[i], "--channel") ? "channel"
                                                                  : NULL;
                if (key && i + 1 < argc && n < max - 2 && k < 8) {
                        snprintf(bufs[k], sizeof(bufs[k]), "%s=%s", key, argv[++i]);
                        out[n++] = "--set";
                        out[n++] = bufs[k++];
                } else {
                        out[n++] = argv[i];
                }
        }
        out[n] = NULL;
        return n;
}

int agent_cmd_run(int argc, char **argv)
{
        static struct agent a = {
            .inotify_fd = -1, .ch = {.fd = -1, .src_fd = -1}, .dio = {.dep = {.fd = -1}}};
        static char bufs[8][4200];
        char *args[128];
        const struct daemon_args d = {
            .program = "totebox-agent run",
            .summary = "Seal records into the vault, keep its ledger and tree heads, verify "
                       "it and report to the host.\n  --vault DIR and --channel PATH are "
                       "short for --set vault_dir=DIR and --set channel=PATH.",
            .table = agent_config_table,
            .cfg = &a.cfg,
            .default_config = "/etc/totebox/agent.conf",
        };
        enum log_level level = LOG_LEVEL_INFO;
        int n = agent_rewrite_args(argc, argv, args, bufs, 128), r, sfd;

        r = daemon_parse_args(&d, n, args);
        if (r != 0)
                return r < 0 ? 2 : 0;
        if (log_level_parse(a.cfg.log_level, &level) < 0) {
                fprintf(stderr, "totebox-agent: unknown log_level '%s'\n", a.cfg.log_level);
                return 2;
        }
        log_init("totebox-agent", level);
        sfd = daemon_signalfd();
        r = sfd < 0 ? sfd : agent_setup(&a);
        if (r == 0)
                r = agent_loop(&a, sfd);
        for (int i = 0; i < 20 && a.ch.q_count && a.ch.fd >= 0; i++) {
                channel_flush(&a.ch, clock_monotonic_ms());
                poll(NULL, 0, 50);
        }
        diode_done(&a.dio);
        channel_done(&a.ch);
        verify_result_done(&a.last);
        if (a.v.dir[0])
                vault_close(&a.v);
        if (a.inotify_fd >= 0)
                close(a.inotify_fd);
        return r < 0 ? 1 : 0;
}
