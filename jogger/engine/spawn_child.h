/* The steps of a job's process between its clone and its exec: spawn_child(), used by the
 * supervisor (supervise.c). Only system calls, in this order; the child
 *   - resets every signal to its default disposition, with all signals blocked, so nothing
 *     the supervisor blocks or ignores stays so;
 *   - dies with the supervisor until its exec (die_with_parent);
 *   - becomes a session and process group leader (setsid);
 *   - takes stdin_fd as stdin and output_fd as stdout and stderr;
 *   - writes "0" to each cgroup.procs fd: the kernel moves the writer, the child itself,
 *     and its future children with it (v1: one fd per hierarchy; v2: one), unless it was
 *     born in its cgroup (clone3's CLONE_INTO_CGROUP, below);
 *   - sets its oom_score_adj to 0 (best effort: lowering it needs CAP_SYS_RESOURCE);
 *   - if switch_user, becomes (uid, gid, groups). First it marks itself non-dumpable, so
 *     that no process of that uid may ptrace it or read its memory (the spec, with the
 *     job's environment) before its exec, and joins a new session keyring, so that the job
 *     does not possess the server's (its keys); the keyring is made as root, so it is
 *     charged to root's key quota, which the jobs of that uid cannot exhaust. A kernel
 *     without keyrings (ENOSYS), or a sandbox that forbids keyctl (EPERM: Docker's default
 *     seccomp profile), is no failure. Then setgroups, setresgid and setresuid (real,
 *     effective and saved alike, so nothing can switch back). After the placement and
 *     oom_score_adj, which need the server's privileges; before the chdir, so that the
 *     working directory is checked as the job's user;
 *   - changes to cwd; with no cwd but a home, to home, or to / if it cannot;
 *   - marks every other fd close-on-exec, unblocks every signal and tries execve on each
 *     of `executables` in turn (the PATH candidates the supervisor computed, like execvp
 *     without its fallback to /bin/sh).
 * A failure is sent back as (step, errno) through error_fd (close-on-exec: EOF means the
 * exec happened), and the child exits 127.
 *
 * With a cgroup v2 directory fd, the child is created inside it by clone3(CLONE_INTO_CGROUP)
 * (Linux 5.7). Moving a process with a write to cgroup.procs takes the kernel's cgroup
 * threadgroup rwsem for writing, which waits out every fork in flight on the host: beside
 * a fork bomb of another user, 5.5 s a move in a 2-CPU VM, where a clone3 into the group
 * took 99 ms. A kernel without clone3 (ENOSYS, or a seccomp filter that says so) or without
 * CLONE_INTO_CGROUP (E2BIG) gets the writes instead; so the same group's cgroup.procs should
 * be among procs_fds. The fork into the group is charged to its pids limit: EAGAIN.
 *
 * The supervisor is single-threaded and small, so the child is a plain fork (clone3 without
 * a stack): no shared memory, no thread of the parent suspended meanwhile.
 */
#ifndef JOGGER_SPAWN_CHILD_H
#define JOGGER_SPAWN_CHILD_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

#define JOGGER_CLONE_INTO_CGROUP 0x200000000ULL

/* The 32-bit-id system calls: the plain ones take 16-bit ids on i386 and 32-bit ARM. */
#ifdef SYS_setresuid32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETRESGID SYS_setresgid32
#define SYS_SETRESUID SYS_setresuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETRESGID SYS_setresgid
#define SYS_SETRESUID SYS_setresuid
#endif

enum step {
    STEP_EXEC = 1,
    STEP_CWD = 2,
    STEP_CGROUP = 3,
    STEP_SETUP = 4,
    STEP_USER = 5,
    STEP_KEYRING = 6,
};

struct child_args {
    char **executables;
    char **argv;
    char **envp;
    const char *cwd;
    const char *home;
    int switch_user;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    long n_groups;
    int stdin_fd;
    int output_fd;
    int terminal; /* stdin_fd is a terminal's side: make it the controlling terminal */
    int *procs_fds;
    long n_procs;
    int placed; /* born in its cgroup (clone3): no cgroup.procs writes */
    int error_fd;
    long parent; /* the supervisor's pid: the child dies with it until its exec */
};

/* The child calls the kernel through syscall(2) only: it runs on a copy of a process whose
 * C library state (its cached thread id, its locks) is not its own after a raw clone3. */

static void report(int fd, int step, int err) {
    int message[2] = {step, err};
    syscall(SYS_write, fd, message, sizeof message);
    syscall(SYS_exit_group, 127);
    _exit(127);
}

/* Until its exec the child dies with its parent, the supervisor: a supervisor killed
 * before it reports the start (an admin, the OOM killer, the server giving up on it) must
 * not leave a job nobody knows of, and the child holds the report's socket, whose EOF is how
 * the server learns of that death. (PR_SET_PDEATHSIG is cleared by a change of user, and
 * must not reach the job: a job whose supervisor dies later is the server's to kill, by
 * cgroup or by session, which needs its main process alive.) */
static int die_with_parent(struct child_args *a, int sig) {
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, sig, 0, 0, 0) < 0)
        return -1;
    if (syscall(SYS_getppid) != a->parent) /* it died before we asked */
        syscall(SYS_exit_group, 127);
    return 0;
}

static int lift(int fd) {
    return fd > 2 ? fd : (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3);
}

static int take_fd(int fd, int target) {
    if (fd == target) /* a dup would keep FD_CLOEXEC: clear it */
        return (int)syscall(SYS_fcntl, fd, F_SETFD, 0);
    return syscall(SYS_dup3, fd, target, 0) < 0 ? -1 : 0;
}

static void cloexec_from(int lowest) {
    if (syscall(SYS_close_range, (unsigned)lowest, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    struct rlimit64 limit;
    long top = 65536;
    if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &limit) == 0 &&
        limit.rlim_cur != RLIM64_INFINITY && (long)limit.rlim_cur < top)
        top = (long)limit.rlim_cur;
    for (long fd = lowest; fd < top; fd++)
        syscall(SYS_fcntl, (int)fd, F_SETFD, FD_CLOEXEC);
}

/* Leave the server's session keyring for a new, anonymous one. */
static int detach_keyring(void) {
#ifdef SYS_keyctl
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS &&
        errno != EPERM)
        return -1;
#endif
    return 0;
}

/* The kernel's struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2), spelled out so
 * that older kernel headers build it too. */
struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};

static _Noreturn void child_main(struct child_args *a) {
    /* Every signal to its default: the supervisor's, and whatever the server
     * inherited as ignored (nohup's SIGHUP, Python's SIGPIPE, a supervisor's realtime
     * signals), which exec would otherwise pass on. The raw system call, because glibc
     * refuses its own reserved signals (32, 33); an all-zero kernel sigaction is SIG_DFL
     * with no flags and an empty mask on every architecture. */
    unsigned long zero[8] = {0}; /* bigger than any architecture's kernel sigaction */
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, zero, NULL, (size_t)(NSIG / 8));
    }
    if (die_with_parent(a, SIGKILL) < 0)
        syscall(SYS_exit_group, 127);
    /* Lift every fd we still need off 0-2 (a server started with those closed gets them
     * from pipe2 and open) before 0-2 are overwritten: the error pipe first. */
    if ((a->error_fd = lift(a->error_fd)) < 0)
        syscall(SYS_exit_group, 127);
    if ((a->stdin_fd = lift(a->stdin_fd)) < 0 || (a->output_fd = lift(a->output_fd)) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    for (long i = 0; i < a->n_procs; i++) {
        if ((a->procs_fds[i] = lift(a->procs_fds[i])) < 0)
            report(a->error_fd, STEP_CGROUP, errno);
    }
    if (syscall(SYS_setsid) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    if (a->terminal && syscall(SYS_ioctl, a->stdin_fd, TIOCSCTTY, 0) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    if (take_fd(a->stdin_fd, 0) < 0 || take_fd(a->output_fd, 1) < 0 ||
        take_fd(a->output_fd, 2) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    for (long i = 0; i < a->n_procs && !a->placed; i++) {
        if (syscall(SYS_write, a->procs_fds[i], "0", 1) != 1)
            report(a->error_fd, STEP_CGROUP, errno);
    }
    { /* oom_score_adj 0: not the server's protection (or exposure), whatever it is */
        long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            syscall(SYS_write, fd, "0", 1);
            syscall(SYS_close, fd);
        }
    }
    /* The raw system calls change this process only; glibc's wrappers would try to change
     * every thread of the process they believe they are in: the server's. */
    if (a->switch_user) {
        if (syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
            report(a->error_fd, STEP_USER, errno);
        if (detach_keyring() < 0)
            report(a->error_fd, STEP_KEYRING, errno);
        if (syscall(SYS_SETGROUPS, (size_t)a->n_groups, a->groups) < 0 ||
            syscall(SYS_SETRESGID, a->gid, a->gid, a->gid) < 0 ||
            syscall(SYS_SETRESUID, a->uid, a->uid, a->uid) < 0)
            report(a->error_fd, STEP_USER, errno);
        if (die_with_parent(a, SIGKILL) < 0) /* the switch cleared it */
            report(a->error_fd, STEP_USER, errno);
    }
    if (a->cwd != NULL) {
        if (syscall(SYS_chdir, a->cwd) < 0)
            report(a->error_fd, STEP_CWD, errno);
    } else if (a->home != NULL && syscall(SYS_chdir, a->home) < 0 &&
               syscall(SYS_chdir, "/") < 0) {
        report(a->error_fd, STEP_CWD, errno);
    }
    cloexec_from(3);
    /* The job itself does not die with its supervisor (see die_with_parent). From here to
     * the report a supervisor's death goes unseen: the exec's own time. */
    if (die_with_parent(a, 0) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    /* Jobs start with nothing blocked, whatever the spawning thread blocks. */
    unsigned long none[2] = {0, 0};
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, none, NULL, (size_t)(NSIG / 8));
    int saved = 0, last = ENOENT;
    for (char **path = a->executables; *path != NULL; path++) {
        syscall(SYS_execve, *path, a->argv, a->envp);
        last = errno;
        if (saved == 0 && last != ENOENT && last != ENOTDIR)
            saved = last;
    }
    report(a->error_fd, STEP_EXEC, saved ? saved : last);
    _exit(127);
}

/* Fork the job's process, which runs child_main and never returns here: its pid, or -1 with
 * *err set. With cgroup_fd >= 0 it is born in that cgroup v2 directory where the kernel
 * can do that, else it moves itself there through a->procs_fds. */
static pid_t spawn_child(struct child_args *a, int cgroup_fd, int *err) {
    long pid = -1;
    a->placed = 0;
    a->parent = (long)getpid();
    if (cgroup_fd >= 0) {
        struct clone3_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = JOGGER_CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)cgroup_fd;
        pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) {
            a->placed = 1;
            child_main(a);
        }
        if (pid < 0 && errno != ENOSYS && errno != E2BIG) {
            *err = errno;
            return -1;
        }
    }
    if (pid < 0) {
        pid = fork();
        if (pid == 0)
            child_main(a);
        if (pid < 0) {
            *err = errno;
            return -1;
        }
    }
    return (pid_t)pid;
}

#endif
