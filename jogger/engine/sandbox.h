/* An isolated job's namespaces, and the small init that is process 1 of its PID namespace:
 * spawn_isolated(), used by the supervisor (supervise.c) in place of spawn_child() when the
 * spec asks for isolation. See docs/rfd-3-sandbox.md for the design.
 *
 * The supervisor clones the init with the job's new namespaces (and, where the kernel can,
 * into the job's cgroup, as spawn_child does). The init, still with the server's
 * privileges,
 *   - dies with the supervisor (PR_SET_PDEATHSIG, kept for its whole life: an isolated job
 *     whose supervisor is killed goes with it, namespace and all);
 *   - leads its own session, and moves itself into the job's cgroup unless born there;
 *   - makes the mounts: first every mount a slave of the host's (ours never leak out);
 *     with read_only_root every mount read-only except those under /dev and /proc, and
 *     then the job's working directory writable again (a bind mount of it); with MOUNT a
 *     tmpfs on /tmp, /var/tmp and /dev/shm (a working directory in one of them is bound
 *     back in, at its path: it is the one directory of the host's there); with PID a new /proc for the new PID namespace,
 *     with /proc/sys, /proc/sysrq-trigger, /proc/irq and /proc/bus read-only (as bubblewrap
 *     does);
 *   - sets the hostname (UTS), and brings up lo (NET: the namespace has nothing else);
 *   - forks the job, which takes the steps of spawn_child.h from the setsid on, and so
 *     leads a session of its own in the namespace;
 *   - lets go of every fd but status_fd (so that the job's pipes and terminal end with the
 *     job, and the supervisor sees the exec), and waits: it reaps whatever is orphaned in
 *     the namespace, and once the job's main process exits, writes its wait status to
 *     status_fd and exits. Its exit is the namespace's end: the kernel SIGKILLs what is
 *     left in it, and the init's exit is complete only once all of that is gone. So the
 *     supervisor, which sees the init as the job's main process, reads "the main process
 *     has exited" only when no process of the job is left.
 * The init blocks every signal: a signal sent to it from inside the namespace is dropped
 * (the kernel's rule for a namespace's init with no handler), so `kill -9 -1` in the job
 * reaches every process of the job but the init, and the job cannot end its namespace but
 * by exiting. From outside, only SIGKILL reaches it: the supervisor's kill.
 * A failure before the job's exec is reported as (step, errno) on error_fd, as spawn_child's
 * are; STEP_ISOLATE for the namespaces' own steps.
 *
 * Like spawn_child, the init calls the kernel through syscall(2) only (it is a raw clone of
 * the supervisor), and allocates nothing: the mount table is read into a static buffer.
 */
#ifndef JOGGER_SANDBOX_H
#define JOGGER_SANDBOX_H

#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/wait.h>

#include "spawn_child.h"

#define STEP_ISOLATE 9

enum {
    NS_PID = 1,
    NS_MOUNT = 2,
    NS_NET = 4,
    NS_IPC = 8,
    NS_UTS = 16,
};

struct sandbox {
    int kinds; /* NS_* */
    int read_only_root;
    const char *hostname; /* with NS_UTS */
    int status_fd;        /* the init's: where the job's wait status goes */
};

#ifndef MS_SLAVE
#define MS_SLAVE (1 << 19)
#endif
#define JOGGER_MOUNT_ATTR_RDONLY 0x1ULL
#define JOGGER_AT_RECURSIVE 0x8000

struct jogger_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* mount_setattr(2) (Linux 5.12); ENOSYS where it is not. */
static long set_mount_attr(const char *path, int recursive, uint64_t set, uint64_t clear) {
#ifdef SYS_mount_setattr
    struct jogger_mount_attr attr = {set, clear, 0, 0};
    return syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? JOGGER_AT_RECURSIVE : 0,
                   &attr, sizeof attr);
#else
    (void)path, (void)recursive, (void)set, (void)clear;
    errno = ENOSYS;
    return -1;
#endif
}

static int under(const char *path, const char *top) {
    size_t n = strlen(top);
    return strncmp(path, top, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The flags a remount must repeat so as not to drop them (statfs's f_flags). */
static unsigned long kept_flags(const char *path) {
    struct statfs st;
    if (syscall(SYS_statfs, path, &st) < 0)
        return (unsigned long)-1;
    unsigned long keep = 0;
    if (st.f_flags & ST_NOSUID)
        keep |= MS_NOSUID;
    if (st.f_flags & ST_NODEV)
        keep |= MS_NODEV;
    if (st.f_flags & ST_NOEXEC)
        keep |= MS_NOEXEC;
    if (st.f_flags & ST_NOATIME)
        keep |= MS_NOATIME;
    if (st.f_flags & ST_NODIRATIME)
        keep |= MS_NODIRATIME;
    if (st.f_flags & ST_RELATIME)
        keep |= MS_RELATIME;
    if (st.f_flags & ST_RDONLY)
        keep |= MS_RDONLY;
    return keep;
}

/* Make one mount (not those below it) read-only, or writable: 0, or -1 with errno. */
static long make_mount(const char *path, int read_only) {
    long r = set_mount_attr(path, 0, read_only ? JOGGER_MOUNT_ATTR_RDONLY : 0,
                            read_only ? 0 : JOGGER_MOUNT_ATTR_RDONLY);
    if (r == 0 || errno != ENOSYS)
        return r;
    unsigned long flags = kept_flags(path);
    if (flags == (unsigned long)-1)
        return -1;
    flags = read_only ? flags | MS_RDONLY : flags & ~(unsigned long)MS_RDONLY;
    return syscall(SYS_mount, NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL);
}

/* ---- the mount table ---------------------------------------------------------------- */

#define MOUNTS_MAX 4096
static char mount_text[1 << 20];
static char *mount_paths[MOUNTS_MAX];
static char mount_rw[MOUNTS_MAX];
static int n_mounts;

/* mountinfo's octal escapes (\040 for a space, and so on), undone in place. */
static void unescape(char *s) {
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/* Read /proc/self/mountinfo: each mount's path, and whether it is mounted read-write. */
static int read_mounts(void) {
    long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t used = 0;
    for (;;) {
        if (used == sizeof mount_text - 1) {
            syscall(SYS_close, fd);
            errno = E2BIG;
            return -1;
        }
        long n = syscall(SYS_read, fd, mount_text + used, sizeof mount_text - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            syscall(SYS_close, fd);
            return -1;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    syscall(SYS_close, fd);
    mount_text[used] = '\0';
    n_mounts = 0;
    for (char *line = mount_text; *line;) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        /* id parent major:minor root mount-point options ... */
        char *field[6];
        int found = 0;
        for (char *p = line; found < 6 && *p;) {
            while (*p == ' ')
                p++;
            field[found++] = p;
            while (*p && *p != ' ')
                p++;
            if (*p)
                *p++ = '\0';
        }
        if (found == 6) {
            if (n_mounts == MOUNTS_MAX) {
                errno = E2BIG;
                return -1;
            }
            unescape(field[4]);
            mount_paths[n_mounts] = field[4];
            mount_rw[n_mounts++] = strncmp(field[5], "rw", 2) == 0 &&
                                   (field[5][2] == '\0' || field[5][2] == ',');
        }
        if (end == NULL)
            break;
        line = end + 1;
    }
    return 0;
}

/* Every mount read-only but those under /dev and /proc. */
static int read_only_root(void) {
    if (read_mounts() < 0)
        return -1;
    if (set_mount_attr("/", 1, JOGGER_MOUNT_ATTR_RDONLY, 0) == 0) {
        /* All of it in one call: then give /dev and /proc back what they had. */
        for (int i = 0; i < n_mounts; i++) {
            const char *path = mount_paths[i];
            if ((under(path, "/dev") || under(path, "/proc")) && mount_rw[i] &&
                make_mount(path, 0) < 0 && errno != ENOENT)
                return -1;
        }
        return 0;
    }
    if (errno != ENOSYS)
        return -1;
    for (int i = 0; i < n_mounts; i++) { /* an older kernel: one remount each */
        const char *path = mount_paths[i];
        if (under(path, "/dev") || under(path, "/proc") || !mount_rw[i])
            continue;
        if (make_mount(path, 1) < 0 && errno != ENOENT)
            return -1;
    }
    return 0;
}

/* The job's working directory, writable in a read-only root: a bind mount of it (unless
 * it is / itself, or under /dev or /proc, which stay as they are). Writable only if it
 * was: a directory on a read-only mount stays read-only. */
static int writable_cwd(const char *cwd, int was_writable) {
    if (cwd == NULL || strcmp(cwd, "/") == 0 || under(cwd, "/dev") || under(cwd, "/proc"))
        return 0;
    if (syscall(SYS_mount, cwd, cwd, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    return was_writable ? (int)make_mount(cwd, 0) : 0;
}

static int private_tmp(const char *path) {
    if (syscall(SYS_mount, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0)
        return 0;
    return errno == ENOENT ? 0 : -1; /* a host without it: nothing to hide */
}

static int read_only_bind(const char *path) {
    if (syscall(SYS_mount, path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
        return errno == ENOENT ? 0 : -1;
    if (set_mount_attr(path, 1, JOGGER_MOUNT_ATTR_RDONLY, 0) == 0)
        return 0;
    return errno == ENOSYS ? (int)make_mount(path, 1) : -1;
}

static int new_proc(void) {
    if (syscall(SYS_mount, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -1;
    static const char *const guarded[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
                                          "/proc/bus"};
    for (size_t i = 0; i < sizeof guarded / sizeof *guarded; i++) {
        if (read_only_bind(guarded[i]) < 0)
            return -1;
    }
    return 0;
}

static int loopback_up(void) {
    long s = syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    long r = syscall(SYS_ioctl, s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = syscall(SYS_ioctl, s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    syscall(SYS_close, s);
    errno = saved;
    return r < 0 ? -1 : 0;
}

/* The directory the job will start in (child_main's choice, bar its fallback to /). */
static const char *job_cwd(const struct child_args *a) {
    return a->cwd != NULL ? a->cwd : a->home;
}

static int under_private_tmp(const char *path) {
    return path != NULL && (under(path, "/tmp") || under(path, "/var/tmp") ||
                            under(path, "/dev/shm"));
}

/* mkdir -p of `path`'s directories in a private tmp (root's, 0755), and `dir` bound there. */
static int bind_back(int dir, char *path) {
    for (char *slash = strchr(path + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        long r = syscall(SYS_mkdirat, AT_FDCWD, path, 0755);
        *slash = '/';
        if (r < 0 && errno != EEXIST)
            return -1;
    }
    if (syscall(SYS_mkdirat, AT_FDCWD, path, 0755) < 0 && errno != EEXIST)
        return -1;
    char source[64];
    int n = 0;
    for (int v = dir, digits[12], k = 0;; v /= 10) { /* "/proc/self/fd/<dir>", by hand */
        digits[k++] = v % 10;
        if (v < 10) {
            memcpy(source, "/proc/self/fd/", 14);
            n = 14;
            while (k > 0)
                source[n++] = (char)('0' + digits[--k]);
            source[n] = '\0';
            break;
        }
    }
    return (int)syscall(SYS_mount, source, path, NULL, MS_BIND | MS_REC, NULL);
}

static void make_namespaces(struct child_args *a, struct sandbox *sb) {
    int fd = a->error_fd;
    const char *cwd = job_cwd(a);
    if ((sb->kinds & (NS_MOUNT | NS_PID)) &&
        syscall(SYS_mount, NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        report(fd, STEP_ISOLATE, errno);
    if (sb->read_only_root) {
        unsigned long was = cwd != NULL ? kept_flags(cwd) : (unsigned long)-1;
        if (was == (unsigned long)-1 && a->cwd != NULL)
            report(fd, STEP_CWD, errno);
        if (read_only_root() < 0)
            report(fd, STEP_ISOLATE, errno);
        /* (A home that cannot be entered is no error: the job starts in /, read-only.) */
        if (was != (unsigned long)-1 && writable_cwd(cwd, !(was & MS_RDONLY)) < 0)
            report(fd, a->cwd != NULL ? STEP_CWD : STEP_ISOLATE, errno);
    }
    if (sb->kinds & NS_MOUNT) {
        /* A working directory in a temporary directory stays where it is: it is bound
         * back into the private one, at the same path. */
        static char path[4096];
        int dir = -1;
        if (under_private_tmp(cwd) && strlen(cwd) < sizeof path) {
            memcpy(path, cwd, strlen(cwd) + 1);
            dir = (int)syscall(SYS_openat, AT_FDCWD, cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (dir < 0 && a->cwd != NULL)
                report(fd, STEP_CWD, errno);
        }
        if (private_tmp("/tmp") < 0 || private_tmp("/var/tmp") < 0 ||
            private_tmp("/dev/shm") < 0)
            report(fd, STEP_ISOLATE, errno);
        if (dir >= 0 && bind_back(dir, path) < 0)
            report(fd, STEP_CWD, errno);
        if (dir >= 0)
            syscall(SYS_close, dir);
    }
    if ((sb->kinds & NS_PID) && new_proc() < 0)
        report(fd, STEP_ISOLATE, errno);
    if ((sb->kinds & NS_UTS) && sb->hostname != NULL &&
        syscall(SYS_sethostname, sb->hostname, strlen(sb->hostname)) < 0)
        report(fd, STEP_ISOLATE, errno);
    if ((sb->kinds & NS_NET) && loopback_up() < 0)
        report(fd, STEP_ISOLATE, errno);
}

/* Close every fd but `keep`. */
static void close_all_but(int keep) {
    if (keep > 0)
        syscall(SYS_close_range, 0U, (unsigned)keep - 1, 0);
    if (syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0) == 0)
        return;
    for (int fd = 0; fd < 65536; fd++) /* a kernel before 5.9 */
        if (fd != keep)
            syscall(SYS_close, fd);
}

/* die_with_parent for the init, whose parent is outside its PID namespace, so that
getppid() says 0 whether the parent lives or not: the status pipe tells instead, whose read
end the supervisor holds (a pipe's writer sees POLLERR once no reader is left). */
static void die_with_supervisor(struct sandbox *sb) {
    struct pollfd p = {.fd = sb->status_fd, .events = POLLOUT};
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 ||
        syscall(SYS_ppoll, &p, 1UL, &(struct timespec){0, 0}, NULL, (size_t)(NSIG / 8)) < 0 ||
        (p.revents & POLLERR))
        syscall(SYS_exit_group, 127);
}

static _Noreturn void init_main(struct child_args *a, struct sandbox *sb) {
    die_with_supervisor(sb);
    if ((a->error_fd = lift(a->error_fd)) < 0)
        syscall(SYS_exit_group, 127);
    if (syscall(SYS_setsid) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    for (long i = 0; i < a->n_procs && !a->placed; i++) {
        if (syscall(SYS_write, a->procs_fds[i], "0", 1) != 1)
            report(a->error_fd, STEP_CGROUP, errno);
    }
    a->placed = 1; /* the job is born where its init is */
    syscall(SYS_prctl, PR_SET_NAME, "jogger-init", 0, 0, 0);
    make_namespaces(a, sb);
    /* The job: a plain fork (not a glibc one: see spawn_child.h). */
    a->parent = syscall(SYS_getpid);
    long job = syscall(SYS_clone, (unsigned long)SIGCHLD, 0, 0, 0, 0);
    if (job == 0)
        child_main(a);
    if (job < 0)
        report(a->error_fd, errno == EAGAIN ? STEP_CGROUP : STEP_SETUP, errno);
    /* The job's environment is the job's: not left in our memory for its life. */
    for (char **env = a->envp; *env != NULL; env++)
        for (volatile char *c = *env; *c; c++)
            *c = 0;
    close_all_but(sb->status_fd);
    for (;;) {
        int status = 0;
        long pid = syscall(SYS_wait4, -1, &status, 0, NULL);
        if (pid == job) {
            syscall(SYS_write, sb->status_fd, &status, sizeof status);
            syscall(SYS_exit_group, 0);
        }
        if (pid < 0 && errno != EINTR)
            syscall(SYS_exit_group, 127); /* (no child: cannot be, the job was one) */
    }
}

static uint64_t clone_flags(int kinds) {
    uint64_t flags = 0;
    if (kinds & (NS_PID | NS_MOUNT))
        flags |= CLONE_NEWNS; /* a PID namespace needs a /proc of its own */
    if (kinds & NS_PID)
        flags |= CLONE_NEWPID;
    if (kinds & NS_NET)
        flags |= CLONE_NEWNET;
    if (kinds & NS_IPC)
        flags |= CLONE_NEWIPC;
    if (kinds & NS_UTS)
        flags |= CLONE_NEWUTS;
    return flags;
}

/* Clone the init of an isolated job, in its namespaces (and in cgroup_fd, where the
 * kernel can): its pid, or -1 with *err and *step set. */
static pid_t spawn_isolated(struct child_args *a, struct sandbox *sb, int cgroup_fd, int *err,
                            int *step) {
    uint64_t flags = clone_flags(sb->kinds);
    long pid = -1;
    a->placed = 0;
    a->parent = (long)getpid();
    struct clone3_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = flags | (cgroup_fd >= 0 ? JOGGER_CLONE_INTO_CGROUP : 0);
    ca.exit_signal = SIGCHLD;
    ca.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
    pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0 && cgroup_fd >= 0 && errno == E2BIG) { /* no CLONE_INTO_CGROUP */
        ca.flags = flags;
        ca.cgroup = 0;
        pid = syscall(SYS_clone3, &ca, sizeof ca);
    } else if (pid == 0) {
        a->placed = cgroup_fd >= 0;
    }
    if (pid < 0 && errno == ENOSYS) /* no clone3: the old clone, with no stack (a fork) */
        pid = syscall(SYS_clone, (unsigned long)flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        init_main(a, sb);
    if (pid < 0) {
        *err = errno;
        *step = errno == EAGAIN && cgroup_fd >= 0 ? STEP_CGROUP
                : errno == ENOMEM                 ? STEP_SETUP
                                                  : STEP_ISOLATE;
        return -1;
    }
    return (pid_t)pid;
}

#endif
