/* jogger-supervise: the parent of one job, from its start until its end is on disk.
 *
 * The server starts one per job (supervisor.py) and may come and go while it runs: a
 * restart, an upgrade or a crash of the server leaves the job running, and the next server
 * adopts it. This program
 *   - spawns the job (the steps of spawn_child.h: its cgroup, its user, its cwd, its exec);
 *     an isolated job, through an init of its own (sandbox.h), which is then the job's main
 *     process as far as this program is concerned: it exits with the job's main process,
 *     passing on its wait status, and its exit ends the job's PID namespace;
 *   - is its parent, and the subreaper of all its descendants, so that every process of the
 *     job is a child of ours sooner or later: stop and kill reach a setsid double fork even
 *     without cgroups, and "no child left" means "no process of the job left";
 *   - owns the job's output pipe and writes the log with the server's rules: the output cap
 *     (later bytes dropped, "truncated"), the state dir's reserve and write errors (logging
 *     ends, the job does not: "disk-full", "output-error");
 *   - after each write, tells the server (a datagram on run/notify.sock; nobody there is no
 *     error: the next server reads the log's size itself);
 *   - keeps the log's time index, when the server asks for one (times_path), made at its
 *     first record: before each write into the log, a record of where it begins and when
 *     (times.h says how, and its bound);
 *   - once the main process has exited and the rest of the job is gone, writes the job's end
 *     (run/<id>.end: exit code or signal, end time, CPU, peak memory, output size and flags)
 *     with write, fsync, rename and fsync of the directory, and only then exits 0. The
 *     file (run/<id>.end.new until then) gets its blocks when the job starts, so that a
 *     full disk cannot refuse the end.
 *
 * Signals from the server (through a pidfd, so never to a reused pid):
 *   SIGTERM  the stop's first step: SIGTERM to the job's process group and to every other
 *            process that descends from us (a setsid'd one, say), and the job has
 *            the grace period to end on its own before SIGKILL: the si_value of a
 *            sigqueue'd SIGTERM in milliseconds, else stop_timeout_ms (an admin's plain
 *            kill). The server normally says when, with SIGUSR1; the deadline here covers a
 *            server that died mid-stop;
 *   SIGUSR1  SIGKILL to every process of the job, now.
 * A job with a timeout (timeout_ms) is stopped by us once that long has passed since its
 * exec, as if the server had sent SIGTERM: SIGTERM, stop_timeout_ms (the server's grace),
 * SIGKILL; and its end record says timed_out 1. We keep the time, not the server, so that
 * the deadline holds across a restart of the server, and with none running at all. It is
 * counted on CLOCK_BOOTTIME: a step of the wall clock (NTP, an admin) moves neither it nor
 * the job's end, and a suspended machine's sleep counts, as it does for the wall-clock
 * deadline the server records and shows (started_at plus the timeout).
 * Everything else is blocked or ignored: a signal meant for the server's process group, or
 * a SIGHUP when a terminal goes, must not end the supervisor. SIGKILL does, of course: the
 * server sees that on its pidfd, and kills the job's cgroup (SECURITY.md).
 *
 * Invocation: jogger-supervise JOB_ID, with
 *   fd 0-2  /dev/null (it holds nothing the server's end could break: no SIGPIPE, unlike
 *           Nomad's executor in hashicorp/nomad#5593);
 *   fd 3    the spec: "jogger-spec-1\0" then key\0value\0 pairs (below), read to EOF;
 *   fd 4    the report, a socket: one struct report. step 0: the job runs, with pid;
 *           else the step that failed and its errno, and the supervisor exits. Then the
 *           server says one byte once the job is on record. If it closes the socket
 *           without that (it died, or could not record the start), the job is killed:
 *           a start nobody acknowledged must not run on unseen;
 *   fd 5    the output log, open for writing, empty;
 *   the fds the spec names for the job's cgroup (procs_fd, cgroup_fd).
 * Spec keys: exe, arg, env, group, procs_fd (repeatable); search, cwd, home, uid, gid,
 * cgroup_fd, limit, run_dir, spawn_timeout_ms, stop_timeout_ms, kill_timeout_ms,
 * eof_grace_ms, timeout_ms, input ("pipe" or "terminal"; without it, /dev/null), rows, cols, isolate
 * (namespace kinds: "pid,mount,net,ipc,uts" or some), read_only_root, hostname. `exe`
 * names the file to run; without it, `search` is the PATH to look for
 * argv[0] in, as execvp does (the search is ours, not the server's: a PATH of many
 * thousand entries costs the server nothing).
 * It never reads argv beyond the job id, which `ps` shows to everyone.
 *
 * Input. A job with input gets a pipe as stdin, or a pseudo-terminal as its controlling
 * terminal and stdin, stdout and stderr (whose output we then read from the master instead
 * of a pipe). We listen on run_dir/<job id>.input (a SOCK_SEQPACKET socket, for the
 * server's uid only) and hand each connection the input's fd, with SCM_RIGHTS, in one
 * message: struct input_answer, kind 'p' (the pipe's write end) or 't' (the terminal's
 * master), or 'x' and no fd once there is no input to give. A pipe is given once, and we
 * close our end as we give it: its writer's end is the job's EOF, and a server that dies
 * writing takes the job's input with it (as ssh's). A terminal is ours for the job's life:
 * each server after a restart gets it again. We never read or write a byte of input
 * ourselves: the server writes it straight to the job.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sandbox.h"
#include "times.h"

#define SPEC_FD 3
#define REPORT_FD 4
#define LOG_FD 5

#define REPORT_MAGIC 0x4a475231u /* "JGR1" */
#define NOTE_MAGIC 0x4a474e31u   /* "JGN1" */
#define INPUT_MAGIC 0x4a474931u  /* "JGI1" */
#define STEP_TIMEOUT 7
#define STEP_SUPERVISOR 8

#define NOTE_TRUNCATED 1u
#define NOTE_DISK_FULL 2u
#define NOTE_ERROR 4u

#define MOVE_SIZE (1 << 20)
#define COPY_SIZE (64 * 1024)
#define RESERVE_MIN (256LL << 10)
#define RESERVE_MAX (64LL << 20)
#define NOTE_RETRY_MS 5

struct report {
    uint32_t magic;
    int32_t step;
    int32_t err;
    int32_t pid;
};

struct input_answer {
    uint32_t magic;
    uint32_t kind; /* 'p' a pipe, 't' a terminal (each with its fd), 'x' nothing to give */
};

enum input_kind { INPUT_NONE, INPUT_PIPE, INPUT_TERMINAL };

/* What the server hears after each write: the log's size and its flags. */
struct note {
    uint32_t magic;
    uint32_t flags;
    uint64_t size;
    char job_id[48];
};

static struct {
    const char *job_id;
    pid_t main;
    int main_exited;
    int status; /* main's wait status, once exited */
    int stopping, sent_term, sent_kill, killing;
    int timed_out;            /* the stop was the timeout's */
    int64_t timeout_deadline; /* on CLOCK_BOOTTIME (boot_ms); 0: no timeout */
    int gave_up; /* processes outlived SIGKILL for kill_timeout_ms */
    int64_t stop_deadline, kill_deadline, eof_deadline;
    int pipe_fd;
    uint64_t size, limit;
    int truncated, disk_full, use_splice;
    struct time_index times; /* the log's time index (times.h) */
    char error[160];
    char note[200];
    int run_dir, notify_fd, notify_pending, end_fd;
    int commit_fd; /* REPORT_FD until the server has said the start is on record */
    int status_fd; /* an isolated job's init writes the job's wait status here */
    int input_kind;
    int input_fd;  /* the pipe's write end until given, or the terminal's master */
    int listen_fd; /* run_dir/<id>.input, where the server asks for input_fd */
    char input_name[64];
    int committed;
    long stop_timeout_ms, kill_timeout_ms, eof_grace_ms, spawn_timeout_ms;
    long long timeout_ms;
} S = {.pipe_fd = -1,
     .times = {.fd = -1},
     .status_fd = -1,
     .input_fd = -1,
     .listen_fd = -1,
     .use_splice = 1,
     .run_dir = -1,
     .notify_fd = -1,
     .end_fd = -1,
     .commit_fd = -1};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Time that counts for a timeout: CLOCK_BOOTTIME goes on while the machine is suspended. */
static int64_t boot_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_report(int step, int err, pid_t pid) {
    struct report r = {REPORT_MAGIC, step, err, (int32_t)pid};
    ssize_t n;
    do {
        n = write(REPORT_FD, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
    if (step != 0)
        close(REPORT_FD);
}

static void forget_reserved_end(void);

static void stop_listening(void) {
    if (S.listen_fd < 0)
        return;
    close(S.listen_fd);
    S.listen_fd = -1;
    unlinkat(S.run_dir, S.input_name, 0);
}

static _Noreturn void fail_start(int step, int err) {
    forget_reserved_end(); /* no record will ever want it */
    stop_listening();
    send_report(step, err, 0);
    _exit(1);
}

/* ---- the spec -------------------------------------------------------------------------- */

struct spec {
    char **exes, **args, **envs;
    int n_exes, n_args, n_envs;
    struct child_args child;
    int cgroup_fd;
    char *run_dir;
    char *search;
    int input;
    unsigned short rows, cols;
    struct sandbox sandbox;
};

static char *read_all(int fd, size_t *len) {
    size_t cap = 64 * 1024, used = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    for (;;) {
        if (used == cap) {
            char *bigger = cap > (64u << 20) ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                errno = E2BIG;
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = pread(fd, buf + used, cap - used, (off_t)used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    *len = used;
    return buf;
}

static long number(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0')
        fail_start(STEP_SUPERVISOR, EINVAL);
    return v;
}

/* The paths execvp would try for argv[0] in sp->search, in order: each entry joined with
 * the command, an empty entry meaning the command itself (the current directory). */
static void search_path(struct spec *sp) {
    const char *command = sp->args[0];
    size_t entries = 1, length = strlen(command);
    for (const char *c = sp->search; *c; c++)
        entries += *c == ':';
    free(sp->exes);
    sp->exes = calloc(entries + 1, sizeof(char *));
    if (sp->exes == NULL)
        fail_start(STEP_SUPERVISOR, ENOMEM);
    for (const char *entry = sp->search;;) {
        const char *colon = strchr(entry, ':');
        size_t n = colon ? (size_t)(colon - entry) : strlen(entry);
        char *path = malloc(n + 1 + length + 1);
        if (path == NULL)
            fail_start(STEP_SUPERVISOR, ENOMEM);
        memcpy(path, entry, n);
        if (n > 0 && entry[n - 1] != '/')
            path[n++] = '/';
        memcpy(path + n, command, length + 1);
        sp->exes[sp->n_exes++] = path; /* (freed with the process) */
        if (colon == NULL)
            break;
        entry = colon + 1;
    }
}

/* The NS_* bits of a comma-separated list of namespace kinds ("pid,mount,net,ipc,uts"). */
static int namespace_kinds(const char *list) {
    static const struct {
        const char *name;
        int bit;
    } kinds[] = {{"pid", NS_PID}, {"mount", NS_MOUNT}, {"net", NS_NET}, {"ipc", NS_IPC},
                 {"uts", NS_UTS}};
    int bits = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        int known = 0;
        for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
            if (strlen(kinds[i].name) == n && strncmp(p, kinds[i].name, n) == 0) {
                bits |= kinds[i].bit;
                known = 1;
            }
        }
        if (!known)
            fail_start(STEP_SUPERVISOR, EINVAL);
        p += n;
        if (*p == ',')
            p++;
    }
    return bits;
}

/* Parse the spec in `buf` (which it points into, and so must outlive the spawn). */
static void parse_spec(char *buf, size_t len, struct spec *sp) {
    static const char magic[] = "jogger-spec-1";
    if (len < sizeof magic || memcmp(buf, magic, sizeof magic) != 0 || buf[len - 1] != '\0')
        fail_start(STEP_SUPERVISOR, EINVAL);
    int counts[3] = {0, 0, 0}, n_groups = 0, n_procs = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            sp->exes = calloc((size_t)counts[0] + 1, sizeof(char *));
            sp->args = calloc((size_t)counts[1] + 1, sizeof(char *));
            sp->envs = calloc((size_t)counts[2] + 1, sizeof(char *));
            sp->child.groups = calloc((size_t)n_groups + 1, sizeof(gid_t));
            sp->child.procs_fds = calloc((size_t)n_procs + 1, sizeof(int));
            if (!sp->exes || !sp->args || !sp->envs || !sp->child.groups ||
                !sp->child.procs_fds)
                fail_start(STEP_SUPERVISOR, ENOMEM);
        }
        char *p = buf + sizeof magic, *end = buf + len;
        while (p < end) {
            char *key = p;
            p += strlen(p) + 1;
            if (p >= end)
                fail_start(STEP_SUPERVISOR, EINVAL);
            char *value = p;
            p += strlen(p) + 1;
            if (strcmp(key, "exe") == 0) {
                if (pass)
                    sp->exes[sp->n_exes++] = value;
                else
                    counts[0]++;
            } else if (strcmp(key, "arg") == 0) {
                if (pass)
                    sp->args[sp->n_args++] = value;
                else
                    counts[1]++;
            } else if (strcmp(key, "env") == 0) {
                if (pass)
                    sp->envs[sp->n_envs++] = value;
                else
                    counts[2]++;
            } else if (strcmp(key, "group") == 0) {
                if (pass)
                    sp->child.groups[sp->child.n_groups++] = (gid_t)number(value);
                else
                    n_groups++;
            } else if (strcmp(key, "procs_fd") == 0) {
                if (pass)
                    sp->child.procs_fds[sp->child.n_procs++] = (int)number(value);
                else
                    n_procs++;
            } else if (pass == 0) {
                continue;
            } else if (strcmp(key, "input") == 0) {
                if (strcmp(value, "pipe") == 0)
                    sp->input = INPUT_PIPE;
                else if (strcmp(value, "terminal") == 0)
                    sp->input = INPUT_TERMINAL;
                else
                    fail_start(STEP_SUPERVISOR, EINVAL);
            } else if (strcmp(key, "isolate") == 0) {
                sp->sandbox.kinds = namespace_kinds(value);
            } else if (strcmp(key, "read_only_root") == 0) {
                sp->sandbox.read_only_root = (int)number(value);
            } else if (strcmp(key, "hostname") == 0) {
                sp->sandbox.hostname = value;
            } else if (strcmp(key, "rows") == 0) {
                sp->rows = (unsigned short)number(value);
            } else if (strcmp(key, "cols") == 0) {
                sp->cols = (unsigned short)number(value);
            } else if (strcmp(key, "search") == 0) {
                sp->search = value;
            } else if (strcmp(key, "cwd") == 0) {
                sp->child.cwd = value;
            } else if (strcmp(key, "home") == 0) {
                sp->child.home = value;
            } else if (strcmp(key, "uid") == 0) {
                sp->child.switch_user = 1;
                sp->child.uid = (uid_t)number(value);
            } else if (strcmp(key, "gid") == 0) {
                sp->child.gid = (gid_t)number(value);
            } else if (strcmp(key, "cgroup_fd") == 0) {
                sp->cgroup_fd = (int)number(value);
            } else if (strcmp(key, "times_path") == 0) {
                S.times.path = strdup(value); /* (the spec's buffer is freed) */
            } else if (strcmp(key, "limit") == 0) {
                S.limit = (uint64_t)number(value);
            } else if (strcmp(key, "run_dir") == 0) {
                sp->run_dir = value;
            } else if (strcmp(key, "spawn_timeout_ms") == 0) {
                S.spawn_timeout_ms = number(value);
            } else if (strcmp(key, "stop_timeout_ms") == 0) {
                S.stop_timeout_ms = number(value);
            } else if (strcmp(key, "kill_timeout_ms") == 0) {
                S.kill_timeout_ms = number(value);
            } else if (strcmp(key, "eof_grace_ms") == 0) {
                S.eof_grace_ms = number(value);
            } else if (strcmp(key, "timeout_ms") == 0) {
                S.timeout_ms = number(value);
                if (S.timeout_ms <= 0)
                    fail_start(STEP_SUPERVISOR, EINVAL);
            } else {
                fail_start(STEP_SUPERVISOR, EINVAL); /* a newer server: refuse, loudly */
            }
        }
    }
    if (sp->n_args == 0 || sp->run_dir == NULL ||
        (sp->sandbox.read_only_root && !(sp->sandbox.kinds & NS_MOUNT)))
        fail_start(STEP_SUPERVISOR, EINVAL);
    if (sp->n_exes == 0 && sp->search != NULL)
        search_path(sp);
    if (sp->n_exes == 0)
        fail_start(STEP_SUPERVISOR, EINVAL);
}

/* ---- children ------------------------------------------------------------------------- */

/* Our children (alive or zombies), from /proc/self/task/<tid>/children; the count, or -1. */
static int children(pid_t **out) {
    static char path[64];
    static pid_t *pids = NULL;
    static size_t cap = 0;
    static char *text = NULL;
    static size_t text_cap = 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t used = 0;
    for (;;) {
        if (text_cap - used < 4096) {
            size_t bigger = text_cap ? text_cap * 2 : 4096;
            char *t = realloc(text, bigger);
            if (t == NULL)
                break;
            text = t;
            text_cap = bigger;
        }
        ssize_t n = read(fd, text + used, text_cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    int count = 0;
    if (text == NULL)
        return 0;
    text[used] = '\0';
    for (char *p = text; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if ((size_t)count == cap) {
            size_t bigger = cap ? cap * 2 : 64;
            pid_t *more = realloc(pids, bigger * sizeof(pid_t));
            if (more == NULL)
                break;
            pids = more;
            cap = bigger;
        }
        pids[count++] = (pid_t)pid;
        p = end;
        while (*p == ' ' || *p == '\n')
            p++;
    }
    *out = pids;
    return count;
}

/* Reap every exited child but the main process (kept a zombie, so that its process group id
 * stays ours to signal until the end); the number of other children still alive. */
static int reap_others(void) {
    pid_t *pids;
    int n = children(&pids), alive = 0;
    for (int i = 0; i < n; i++) {
        if (pids[i] == S.main)
            continue;
        pid_t got;
        do {
            got = waitpid(pids[i], NULL, WNOHANG);
        } while (got < 0 && errno == EINTR);
        if (got == 0)
            alive++;
    }
    return n < 0 ? 0 : alive;
}

static void check_main(void) {
    if (S.main_exited)
        return;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)S.main, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == S.main) {
        S.main_exited = 1;
        S.status = info.si_code == CLD_EXITED ? W_EXITCODE(info.si_status, 0) : info.si_status;
        int status; /* an isolated job's: what its init heard (none if it was killed) */
        if (S.status_fd >= 0 && read(S.status_fd, &status, sizeof status) == sizeof status)
            S.status = status;
    }
}

/* The parent of `pid` from /proc/PID/stat, or -1 if it is gone; its process group in
 * *pgid. */
static pid_t parent_of(pid_t pid, pid_t *pgid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')'); /* the command name may hold anything */
    char state;
    int ppid, group;
    if (close_paren == NULL || sscanf(close_paren + 1, " %c %d %d", &state, &ppid, &group) != 3)
        return -1;
    *pgid = (pid_t)group;
    return state == 'Z' || state == 'X' ? -1 : (pid_t)ppid;
}

/* `sig` to every live descendant of ours, found through the parent links in /proc: also
 * the grandchildren of children that are still alive, which only become our own children
 * once their parents die (a fork bomb whose processes each call setsid refills faster than
 * a generation a pass). Each is signalled through a pidfd, after its parent is checked
 * again, so that no pid reused meanwhile is hit. Those in process group `skip_pgid` are
 * left out (they have had `sig` from a killpg: never signal anyone twice). */
static void signal_descendants(int sig, pid_t skip_pgid) {
    static pid_t *pids = NULL, *ppids = NULL;
    static size_t cap = 0;
    size_t n = 0;
    pid_t top = getpid();
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        return;
    for (struct dirent *e; (e = readdir(proc)) != NULL;) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        pid_t pgid;
        pid_t ppid = parent_of((pid_t)pid, &pgid);
        if (ppid < 0)
            continue;
        if (n == cap) {
            size_t bigger = cap ? cap * 2 : 1024;
            pid_t *p = realloc(pids, bigger * sizeof *p), *q = NULL;
            if (p != NULL)
                pids = p;
            q = p == NULL ? NULL : realloc(ppids, bigger * sizeof *q);
            if (q == NULL)
                break;
            ppids = q;
            cap = bigger;
        }
        pids[n] = (pid_t)pid;
        ppids[n++] = ppid;
        if ((pid_t)pid > top)
            top = (pid_t)pid;
    }
    closedir(proc);
    unsigned char *ours = calloc((size_t)top + 1, 1); /* whether a pid descends from us */
    if (ours == NULL)
        return;
    ours[getpid()] = 1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (!ours[pids[i]] && ppids[i] >= 0 && ppids[i] <= top && ours[ppids[i]]) {
                ours[pids[i]] = 1;
                changed = 1;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (pids[i] == getpid() || !ours[pids[i]])
            continue;
        int pidfd = (int)syscall(SYS_pidfd_open, pids[i], 0);
        if (pidfd < 0)
            continue;
        pid_t pgid;
        pid_t ppid = parent_of(pids[i], &pgid);
        if (ppid >= 0 && ppid <= top && ours[ppid] && (skip_pgid <= 0 || pgid != skip_pgid))
            syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
        close(pidfd);
    }
    free(ours);
}

/* SIGKILL to the process group and to every child (unreaped, so every pid is still ours),
 * then to every other descendant, stopped first so that none forks meanwhile. Orphans of
 * those become our children in turn: run again on each SIGCHLD.
 * The walk of /proc for the other descendants costs an open and a read per process on the
 * host, at every job's end: it is skipped when there can be none. We are the subreaper of
 * all of them, so a descendant whose parent has died is our child; a main process that has
 * exited handed its children to us before its exit could be seen (the kernel reparents
 * them before the zombie is visible to waitid). So with no child but that exited main
 * process, we have no descendant at all. */
static void kill_children(void) {
    kill(-S.main, SIGKILL);
    pid_t *pids;
    int n = children(&pids), others = 0;
    for (int i = 0; i < n; i++) {
        kill(pids[i], SIGKILL);
        others += pids[i] != S.main;
    }
    if (n < 0 || others > 0 || !S.main_exited) {
        signal_descendants(SIGSTOP, 0);
        signal_descendants(SIGKILL, 0);
    }
}

static void start_kill(int escalation) {
    if (S.killing)
        return;
    if (escalation)
        S.sent_kill = 1;
    S.killing = 1;
    S.kill_deadline = now_ms() + S.kill_timeout_ms;
    kill_children();
}

/* ---- the log ---------------------------------------------------------------------------- */

static void notify(void) {
    if (S.notify_fd < 0)
        return;
    struct note n;
    memset(&n, 0, sizeof n);
    n.magic = NOTE_MAGIC;
    n.size = S.size;
    n.flags = (S.truncated ? NOTE_TRUNCATED : 0) | (S.disk_full ? NOTE_DISK_FULL : 0) |
              (S.error[0] ? NOTE_ERROR : 0);
    snprintf(n.job_id, sizeof n.job_id, "%s", S.job_id);
    static char path[64];
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(path, sizeof path, "/proc/self/fd/%d/notify.sock", S.run_dir);
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    ssize_t sent = sendto(S.notify_fd, &n, sizeof n, MSG_DONTWAIT | MSG_NOSIGNAL,
                          (struct sockaddr *)&addr, sizeof addr);
    /* A full queue (a busy server): tell it again shortly, the newest size only. No server
     * (ENOENT, ECONNREFUSED): nobody to tell; the next one reads the size itself. */
    S.notify_pending = sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS);
}

/* read(2) of the job's output: a terminal's master reads EIO once the job's side is closed
 * by all, which is its EOF. */
static ssize_t read_output(int src, void *buf, size_t count) {
    ssize_t n = read(src, buf, count);
    if (n < 0 && errno == EIO && S.input_kind == INPUT_TERMINAL)
        return 0;
    return n;
}

static ssize_t drop(int src) {
    static char sink[COPY_SIZE];
    return read_output(src, sink, sizeof sink);
}

/* Bytes we may still write to the file system before its reserve (2% of it, between 256 KiB
 * and 64 MiB, kept for the job records); -1 with errno if that cannot be told. */
static int64_t free_space(int *err) {
    struct statvfs st;
    if (fstatvfs(LOG_FD, &st) < 0) {
        *err = errno;
        return -1;
    }
    int64_t total = (int64_t)st.f_blocks * (int64_t)st.f_frsize;
    int64_t reserve = total / 50;
    if (reserve < RESERVE_MIN)
        reserve = RESERVE_MIN;
    if (reserve > RESERVE_MAX)
        reserve = RESERVE_MAX;
    int64_t left = (int64_t)st.f_bavail * (int64_t)st.f_frsize - reserve;
    *err = ENOSPC;
    return left > 0 ? left : 0;
}

static void log_failed(int err) {
    S.disk_full = err == ENOSPC || err == EDQUOT;
    if (S.disk_full)
        snprintf(S.error, sizeof S.error,
                 "the state dir's file system is full; later output was dropped");
    else
        snprintf(S.error, sizeof S.error, "writing the output log failed: %s", strerror(err));
}

static ssize_t append(int src, size_t count) {
    if (S.use_splice) {
        loff_t offset = (loff_t)S.size;
        ssize_t n = splice(src, NULL, LOG_FD, &offset, count, SPLICE_F_NONBLOCK);
        if (n >= 0 || errno != EINVAL)
            return n;
        S.use_splice = 0; /* a file system without splice: copy from now on */
    }
    static char buf[COPY_SIZE];
    ssize_t n = read_output(src, buf, count < sizeof buf ? count : sizeof buf);
    if (n <= 0)
        return n;
    for (ssize_t done = 0; done < n;) {
        ssize_t w = pwrite(LOG_FD, buf + done, (size_t)(n - done), (off_t)(S.size + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* Bytes read and not written: logging ends here (as a failed splice would). */
            int err = w < 0 ? errno : EIO;
            S.size += (uint64_t)done;
            log_failed(err);
            return n;
        }
        done += w;
    }
    return n;
}

/* Move one batch from the pipe to the log; 0 at EOF, -1 with EAGAIN when it is empty. */
static ssize_t move(int src) {
    if (S.size >= S.limit || S.error[0]) {
        ssize_t dropped = drop(src);
        if (dropped > 0 && !S.error[0] && !S.truncated) {
            S.truncated = 1;
            notify();
        }
        return dropped;
    }
    uint64_t room = S.limit - S.size;
    int err;
    int64_t space = free_space(&err);
    if (space <= 0) { /* the reserve is reached, or fstatvfs failed */
        log_failed(err);
        notify();
        return drop(src);
    }
    if ((uint64_t)space < room)
        room = (uint64_t)space;
    uint64_t before = S.size;
    note_time(&S.times, S.size, now_ms());
    ssize_t moved = append(src, room < MOVE_SIZE ? (size_t)room : MOVE_SIZE);
    if (moved < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return -1;
        log_failed(errno);
        notify();
        return drop(src);
    }
    if (S.error[0]) { /* append's copy failed part way */
        notify();
        return moved;
    }
    S.size = before + (uint64_t)moved;
    if (moved > 0)
        notify();
    return moved;
}

/* ---- the end ---------------------------------------------------------------------------- */

static int write_end(void) {
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    struct timespec ended;
    clock_gettime(CLOCK_REALTIME, &ended);
    char text[1024];
    int len;
    if (!S.main_exited) /* (it outlived SIGKILL: no status to tell) */
        len = snprintf(text, sizeof text, "jogger-end 1\n");
    else if (WIFEXITED(S.status))
        len = snprintf(text, sizeof text, "jogger-end 1\nexit_code %d\n", WEXITSTATUS(S.status));
    else
        len = snprintf(text, sizeof text, "jogger-end 1\nsignal %d\n", WTERMSIG(S.status));
    len += snprintf(text + len, sizeof text - (size_t)len,
                    "ended_at %lld.%09ld\ncpu_seconds %.6f\nmemory_peak %lld\n"
                    "output_bytes %llu\noutput_truncated %d\ndisk_full %d\nsent_term %d\n"
                    "sent_kill %d\ntimed_out %d\noutput_error %s\nnote %s\n",
                    (long long)ended.tv_sec, ended.tv_nsec, cpu, (long long)ru.ru_maxrss * 1024,
                    (unsigned long long)S.size, S.truncated, S.disk_full, S.sent_term,
                    S.sent_kill, S.timed_out, S.error, S.note);
    if (len <= 0 || (size_t)len >= sizeof text)
        return -1;
    char name[128], tmp[140];
    snprintf(name, sizeof name, "%s.end", S.job_id);
    snprintf(tmp, sizeof tmp, "%s.end.new", S.job_id);
    int fd = S.end_fd;
    if (fd < 0)
        fd = openat(S.run_dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    S.end_fd = fd;
    /* Into the blocks reserved at the start: a full disk cannot refuse this write. */
    int ok = pwrite(fd, text, (size_t)len, 0) == len && ftruncate(fd, len) == 0 && fsync(fd) == 0;
    if (!ok)
        return -1;
    if (renameat(S.run_dir, tmp, S.run_dir, name) < 0) {
        if (errno == ENOENT) {
            /* Deleted under us (a server that took us for lost): made anew on the next
             * attempt, rather than renaming nothing for a minute. */
            close(fd);
            S.end_fd = -1;
        }
        return -1;
    }
    close(fd);
    S.end_fd = -1;
    return fsync(S.run_dir);
}

/* The end record's file, made and given its blocks now, while the job starts (best effort). */
static void reserve_end(void) {
    char tmp[140];
    snprintf(tmp, sizeof tmp, "%s.end.new", S.job_id);
    S.end_fd = openat(S.run_dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (S.end_fd >= 0)
        posix_fallocate(S.end_fd, 0, 4096);
}

/* The file reserve_end made, for a start that failed or was never recorded. */
static void forget_reserved_end(void) {
    if (S.run_dir < 0)
        return;
    char tmp[140];
    snprintf(tmp, sizeof tmp, "%s.end.new", S.job_id);
    unlinkat(S.run_dir, tmp, 0);
}

/* ---- the job ------------------------------------------------------------------------------ */

/* A new pseudo-terminal of the spec's size: its master (ours), and in *slave the job's
 * side, which belongs to the job's user (as sshd's terminals do). */
static int open_terminal(struct spec *sp, int *slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
        fail_start(STEP_SETUP, errno);
    char name[64];
    if (ptsname_r(master, name, sizeof name) != 0)
        fail_start(STEP_SETUP, errno);
    *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0)
        fail_start(STEP_SETUP, errno);
    if (sp->child.switch_user &&
        (fchown(*slave, sp->child.uid, (gid_t)-1) < 0 || fchmod(*slave, 0620) < 0))
        fail_start(STEP_SETUP, errno);
    struct winsize size = {.ws_row = sp->rows ? sp->rows : 24, .ws_col = sp->cols ? sp->cols : 80};
    if (ioctl(master, TIOCSWINSZ, &size) < 0)
        fail_start(STEP_SETUP, errno);
    return master;
}

/* Listen on run_dir/<id>.input (see the top of this file); through /proc/self/fd, since
 * the run dir's path may be longer than a socket address holds. */
static void listen_for_input(void) {
    snprintf(S.input_name, sizeof S.input_name, "%s.input", S.job_id);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", S.run_dir,
                     S.input_name);
    if (n < 0 || (size_t)n >= sizeof addr.sun_path)
        fail_start(STEP_SUPERVISOR, ENAMETOOLONG);
    S.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (S.listen_fd < 0)
        fail_start(STEP_SUPERVISOR, errno);
    unlinkat(S.run_dir, S.input_name, 0); /* (a job id is new: only ever a stray file) */
    mode_t old = umask(077);
    int bound = bind(S.listen_fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (bound < 0 || listen(S.listen_fd, 8) < 0)
        fail_start(STEP_SUPERVISOR, errno);
}

/* Answer whoever asks for the input: the server's uid only (the run dir is its alone, and
 * a job running as that uid could ptrace the server anyway). */
static void give_input(void) {
    for (;;) {
        int peer = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (peer < 0)
            return; /* EAGAIN: none left; anything else: the next poll tells */
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(peer, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
            cred.uid != geteuid()) {
            close(peer);
            continue;
        }
        struct input_answer answer = {INPUT_MAGIC, 'x'};
        if (S.input_fd >= 0)
            answer.kind = S.input_kind == INPUT_PIPE ? 'p' : 't';
        struct iovec iov = {.iov_base = &answer, .iov_len = sizeof answer};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof control);
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (S.input_fd >= 0) {
            msg.msg_control = control.buf;
            msg.msg_controllen = sizeof control.buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &S.input_fd, sizeof(int));
        }
        ssize_t sent = sendmsg(peer, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(peer);
        if (sent == (ssize_t)sizeof answer && S.input_kind == INPUT_PIPE && S.input_fd >= 0) {
            close(S.input_fd); /* given once: the writer's end is the job's EOF */
            S.input_fd = -1;
        }
    }
}

static pid_t spawn(struct spec *sp, int *error_read) {
    int error_pipe[2], out[2] = {-1, -1}, in[2] = {-1, -1}, slave = -1;
    if (pipe2(error_pipe, O_CLOEXEC) < 0)
        fail_start(STEP_SETUP, errno);
    int stdin_fd, output_fd;
    if (sp->input == INPUT_TERMINAL) {
        out[0] = open_terminal(sp, &slave);
        stdin_fd = output_fd = slave;
        S.input_fd = fcntl(out[0], F_DUPFD_CLOEXEC, 3);
        if (S.input_fd < 0)
            fail_start(STEP_SETUP, errno);
    } else {
        if (pipe2(out, O_CLOEXEC) < 0)
            fail_start(STEP_SETUP, errno);
        fcntl(out[0], F_SETPIPE_SZ, MOVE_SIZE); /* best effort: fewer wake-ups per byte */
        output_fd = out[1];
        if (sp->input == INPUT_PIPE) {
            if (pipe2(in, O_CLOEXEC) < 0)
                fail_start(STEP_SETUP, errno);
            stdin_fd = in[0];
            S.input_fd = in[1];
            fcntl(in[1], F_SETPIPE_SZ, MOVE_SIZE); /* best effort: fewer waits per byte */
        } else {
            stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        if (stdin_fd < 0)
            fail_start(STEP_SETUP, errno);
    }
    S.input_kind = sp->input;
    if (sp->input != INPUT_NONE)
        listen_for_input();
    struct child_args *a = &sp->child;
    a->terminal = sp->input == INPUT_TERMINAL;
    sp->exes[sp->n_exes] = NULL;
    sp->args[sp->n_args] = NULL;
    sp->envs[sp->n_envs] = NULL;
    a->executables = sp->exes;
    a->argv = sp->args;
    a->envp = sp->envs;
    a->stdin_fd = stdin_fd;
    a->output_fd = output_fd;
    a->error_fd = error_pipe[1];
    int err = 0, step = STEP_SETUP, status_pipe[2] = {-1, -1};
    pid_t pid;
    if (sp->sandbox.kinds) {
        if (pipe2(status_pipe, O_CLOEXEC) < 0)
            fail_start(STEP_SETUP, errno);
        sp->sandbox.status_fd = status_pipe[1];
        pid = spawn_isolated(a, &sp->sandbox, sp->cgroup_fd, &err, &step);
        close(status_pipe[1]);
        S.status_fd = status_pipe[0];
        fcntl(S.status_fd, F_SETFL, O_NONBLOCK);
    } else {
        pid = spawn_child(a, sp->cgroup_fd, &err);
        if (err == EAGAIN && sp->cgroup_fd >= 0)
            step = STEP_CGROUP;
    }
    if (pid < 0)
        fail_start(step, err);
    close(error_pipe[1]);
    /* Only the job holds its side: the master reads EIO (our EOF) once it has let go. */
    if (output_fd != stdin_fd)
        close(output_fd);
    close(stdin_fd);
    S.pipe_fd = out[0];
    fcntl(S.pipe_fd, F_SETFL, O_NONBLOCK);
    *error_read = error_pipe[0];
    return pid;
}

/* Wait for the child's exec (EOF on the error pipe) or its failure, for spawn_timeout_ms. */
static void await_exec(int error_read) {
    struct pollfd p = {.fd = error_read, .events = POLLIN};
    int64_t deadline = now_ms() + S.spawn_timeout_ms;
    int message[2];
    ssize_t got = -1;
    for (;;) {
        int64_t left = deadline - now_ms();
        int r = left > 0 ? poll(&p, 1, (int)(left > 60000 ? 60000 : left)) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 && now_ms() < deadline)
            continue;
        if (r == 0) {
            kill(S.main, SIGKILL);
            waitpid(S.main, NULL, 0);
            fail_start(STEP_TIMEOUT, ETIMEDOUT);
        }
        do {
            got = read(error_read, message, sizeof message);
        } while (got < 0 && errno == EINTR);
        break;
    }
    close(error_read);
    if (got == (ssize_t)sizeof message) {
        waitpid(S.main, NULL, 0);
        fail_start(message[0], message[1]);
    }
    if (got > 0) {
        waitpid(S.main, NULL, 0);
        fail_start(STEP_SETUP, EIO);
    }
}

/* A stop's first step: SIGTERM to the whole job, and SIGKILL once `grace` ms have passed. */
static void begin_stop(long grace) {
    S.stopping = 1;
    S.sent_term = 1;
    S.stop_deadline = now_ms() + grace;
    kill(-S.main, SIGTERM);              /* main is not reaped before the end: the id is ours */
    signal_descendants(SIGTERM, S.main); /* and those that left its process group */
}

static void handle_signals(int sigfd) {
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGTERM && !S.stopping && !S.killing) {
            long grace = S.stop_timeout_ms;
            if (si.ssi_code == SI_QUEUE && si.ssi_int >= 0)
                grace = si.ssi_int;
            begin_stop(grace);
        } else if (si.ssi_signo == SIGUSR1) {
            start_kill(!(S.main_exited && reap_others() == 0));
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2 || strlen(argv[1]) >= sizeof(((struct note *)0)->job_id)) {
        fprintf(stderr, "usage: jogger-supervise JOB_ID (started by jogger-server only)\n");
        return 2;
    }
    S.job_id = argv[1];
    S.kill_timeout_ms = 10000;
    S.eof_grace_ms = 2000;
    S.spawn_timeout_ms = 30000;
    S.stop_timeout_ms = 3600 * 1000;
    /* Signals first: a SIGTERM from the server may come as soon as the start is reported. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigfillset(&mask);
    sigprocmask(SIG_SETMASK, &mask, NULL); /* every signal blocked; these three read below */
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGCHLD);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGUSR1);
    int sigfd = signalfd(-1, &wanted, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0)
        fail_start(STEP_SUPERVISOR, errno);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        fail_start(STEP_SUPERVISOR, errno);
    setsid(); /* (posix_spawn made it a leader already: EPERM is fine) */
    fcntl(SPEC_FD, F_SETFD, FD_CLOEXEC);
    fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
    fcntl(LOG_FD, F_SETFD, FD_CLOEXEC);
    pid_t *unused;
    if (children(&unused) < 0) /* CONFIG_PROC_CHILDREN: how we find the job's processes */
        fail_start(STEP_SUPERVISOR, errno);

    size_t len = 0;
    char *buf = read_all(SPEC_FD, &len);
    if (buf == NULL)
        fail_start(STEP_SUPERVISOR, errno);
    close(SPEC_FD);
    struct spec sp;
    memset(&sp, 0, sizeof sp);
    sp.cgroup_fd = -1;
    parse_spec(buf, len, &sp);
    S.run_dir = open(sp.run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (S.run_dir < 0)
        fail_start(STEP_SUPERVISOR, errno);
    S.notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    reserve_end();
    int error_read;
    S.main = spawn(&sp, &error_read);
    await_exec(error_read);
    /* The job runs: what only the spawn needed goes (the spec holds its whole environment). */
    if (sp.cgroup_fd >= 0)
        close(sp.cgroup_fd);
    for (long i = 0; i < sp.child.n_procs; i++)
        close(sp.child.procs_fds[i]);
    free(sp.exes);
    free(sp.args);
    free(sp.envs);
    free(sp.child.groups);
    free(sp.child.procs_fds);
    explicit_bzero(buf, len);
    free(buf);
    malloc_trim(0);
    send_report(0, 0, S.main);
    S.commit_fd = REPORT_FD;
    if (S.timeout_ms > 0)
        S.timeout_deadline = boot_ms() + S.timeout_ms;

    int others = 0;
    for (;;) {
        check_main();
        others = reap_others();
        if (S.main_exited && !S.killing && !S.stopping)
            start_kill(0); /* what the main process left behind dies with it */
        /* A stop under way (the server's) is not the timeout's: it keeps its own grace. */
        int timing = S.timeout_deadline && !S.main_exited && !S.stopping && !S.killing;
        if (timing && boot_ms() >= S.timeout_deadline) {
            S.timed_out = 1;
            begin_stop(S.stop_timeout_ms);
            timing = 0;
        }
        if (S.stopping && !S.killing && now_ms() >= S.stop_deadline)
            start_kill(!(S.main_exited && others == 0));
        if (S.killing && others > 0)
            kill_children();
        int empty = S.main_exited && others == 0;
        if (!empty && S.killing && now_ms() >= S.kill_deadline) {
            snprintf(S.note, sizeof S.note,
                     "processes outlived SIGKILL for %ld s (uninterruptible sleep?)",
                     S.kill_timeout_ms / 1000);
            empty = 1;
            S.gave_up = 1;
        }
        if (empty && S.input_fd >= 0) { /* nobody left to read it */
            close(S.input_fd);
            S.input_fd = -1;
        }
        if (empty && S.pipe_fd >= 0 && S.eof_deadline == 0)
            S.eof_deadline = now_ms() + S.eof_grace_ms;
        if (S.pipe_fd >= 0 && S.eof_deadline && now_ms() >= S.eof_deadline) {
            /* Something outside the job holds its pipe: the log ends here. */
            close(S.pipe_fd);
            S.pipe_fd = -1;
        }
        /* (And once the server has said whether the start is on record: a job that
         * ends before that is recorded, or not, as the server says.) */
        if (empty && S.pipe_fd < 0 && S.commit_fd < 0)
            break;

        int64_t wake = -1, t = now_ms();
        if (S.stopping && !S.killing)
            wake = S.stop_deadline;
        if (timing) {
            /* (From the boot clock to ours; the 60 s cap on poll's wait below bounds the
             * drift a suspend brings: poll's clock stands still meanwhile.) */
            int64_t left = S.timeout_deadline - boot_ms();
            int64_t at = t + (left > 0 ? left : 0);
            wake = wake < 0 || at < wake ? at : wake;
        }
        if (S.killing && !empty)
            wake = wake < 0 || S.kill_deadline < wake ? S.kill_deadline : wake;
        if (S.eof_deadline)
            wake = wake < 0 || S.eof_deadline < wake ? S.eof_deadline : wake;
        if (S.notify_pending)
            wake = wake < 0 || t + NOTE_RETRY_MS < wake ? t + NOTE_RETRY_MS : wake;
        /* While killing, look again every 50 ms too: SIGCHLD for orphans that were never
         * ours comes only once they are reparented to us. */
        if (S.killing && !empty)
            wake = wake < 0 || t + 50 < wake ? t + 50 : wake;
        int timeout = wake < 0 ? -1 : (int)(wake > t ? (wake - t > 60000 ? 60000 : wake - t) : 0);
        /* (A negative fd is skipped by poll: the pipe at EOF, the commit said.) */
        struct pollfd fds[4] = {{.fd = sigfd, .events = POLLIN},
                                {.fd = S.pipe_fd, .events = POLLIN},
                                {.fd = S.commit_fd, .events = POLLIN},
                                {.fd = S.listen_fd, .events = POLLIN}};
        int r = poll(fds, 4, timeout);
        if (r < 0 && errno != EINTR)
            break; /* cannot happen with valid fds; end rather than spin */
        if (S.notify_pending)
            notify();
        if (r > 0 && fds[0].revents)
            handle_signals(sigfd);
        if (r > 0 && S.listen_fd >= 0 && fds[3].revents)
            give_input();
        if (r > 0 && S.commit_fd >= 0 && fds[2].revents) {
            char byte;
            ssize_t got = read(S.commit_fd, &byte, 1);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            close(S.commit_fd);
            S.commit_fd = -1;
            S.committed = got == 1;
            if (!S.committed)
                start_kill(1);
            else if (S.truncated || S.error[0])
                /* The server records the start once it knows the job, so this note finds it;
                 * those before may not have, and it reads the size from the file, but the
                 * flags only from a note. */
                notify();
        }
        if (r > 0 && S.pipe_fd >= 0 && fds[1].revents) {
            /* A few batches per pass, then the signals again. */
            for (int i = 0; i < 16; i++) {
                ssize_t moved = move(S.pipe_fd);
                if (moved == 0) {
                    close(S.pipe_fd);
                    S.pipe_fd = -1;
                    break;
                }
                if (moved < 0)
                    break;
            }
        }
    }
    stop_listening();
    if (S.notify_pending)
        notify();
    /* Collect the main process (its exit status is what we recorded), unless it outlived
     * SIGKILL (uninterruptible sleep): then its status is unknown, and it is left to init. */
    if (S.main_exited)
        while (waitpid(S.main, NULL, 0) < 0 && errno == EINTR)
            ;
    if (!S.committed) {
        /* A start nobody recorded: there is no record for an end to go to. */
        forget_reserved_end();
        return 0;
    }
    for (int attempt = 0; write_end() < 0; attempt++) {
        /* The end must be on disk before we go; the state dir's reserve makes room for it. */
        if (attempt == 60)
            return 1;
        sleep(1);
    }
    return 0;
}
