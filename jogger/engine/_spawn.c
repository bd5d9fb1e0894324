/* Start a job's process, placed in its cgroups before any code of the job runs.
 *
 * spawn(executables, argv, envp, cwd, stdin_fd, output_fd, cgroup_procs_fds, cgroup_fd,
 *       credentials, home, pid_fd) -> pid
 *
 * The child is created with clone(CLONE_VM | CLONE_VFORK), as glibc's posix_spawn does: it
 * shares our memory on its own stack, and this thread waits until it has exec'd or died.
 * That wait is as long as the child makes it: once it has switched users any process of
 * its new uid may stop it (SIGSTOP), and its chdir or exec may hang on a mount. So call
 * this from a worker thread, never from an event loop, and give it a pid_fd: the write end
 * of a pipe (close-on-exec) to which the child writes its pid, a native int, as its very
 * first action, so that another thread can SIGKILL it if it takes too long. (-1: none.)
 * Between clone and exec it runs only the system calls below, never Python: Python code
 * there is unsafe in a process with threads (subprocess's preexec_fn), and a Python shim
 * would cost a second interpreter start. In order, the child
 *   - writes its pid to pid_fd;
 *   - resets every signal to its default disposition, with all signals blocked, so no
 *     handler of the server can run in it and nothing the server ignores stays ignored;
 *   - becomes a session and process group leader (setsid);
 *   - takes stdin_fd as stdin and output_fd as stdout and stderr;
 *   - writes "0" to each cgroup.procs fd: the kernel moves the writer, the child itself,
 *     and its future children with it (v1: one fd per hierarchy; v2: one), unless it was
 *     born in its cgroup (cgroup_fd, below);
 *   - sets its oom_score_adj to 0 (best effort: lowering it needs CAP_SYS_RESOURCE);
 *   - if `credentials` is (uid, gid, groups), becomes that user. First it marks our shared
 *     mm non-dumpable, so that no process of that uid may ptrace it or read its memory
 *     while it still is the server's (whatever fs.suid_dumpable says), and joins a new
 *     session keyring, so that the job does not possess the server's (its keys); the
 *     keyring is made as root, so it is charged to root's key quota, which the jobs of
 *     that uid cannot exhaust, and other processes of that uid cannot view it (the job
 *     possesses it). A kernel without keyrings (ENOSYS), or a sandbox that forbids keyctl
 *     (EPERM: Docker's default seccomp profile), is no failure: the job inherits that
 *     filter and cannot use the server's keyring either. Then setgroups(groups),
 *     setresgid(gid) and setresuid(uid) (real, effective and saved alike, so nothing can
 *     switch back; a non-root uid also loses every capability). After the placement and
 *     oom_score_adj, which need the server's privileges; before the chdir, so that the
 *     working directory is checked as the job's user;
 *   - changes to cwd; with no cwd but a `home`, to home, or to / if it cannot;
 *   - marks every other fd close-on-exec, unblocks every signal and tries execve on each
 *     of `executables` in turn (the PATH candidates the caller computed, like execvp
 *     without its fallback to /bin/sh).
 * A failure is sent back as (step, errno) through a close-on-exec pipe and raised here as
 * OSError (filename: cwd for "cwd", else argv[0]; filename2: the step, "exec", "cwd",
 * "cgroup", "setup", "user" or "keyring"); the child has then exited. Without a pid_fd it
 * has also been reaped; with one, the caller reaps it (it has the pid from pid_fd), so
 * that until then the pid cannot be reused under a kill from its other thread.
 *
 * cgroup_fd (-1: none) is a cgroup v2 directory: on x86_64 the child is then created inside
 * it by clone3(CLONE_INTO_CGROUP) (Linux 5.7), and writes none of the cgroup.procs fds.
 * Moving a process with a write to cgroup.procs takes the kernel's cgroup threadgroup
 * rwsem for writing, which waits out every fork in flight on the host: beside a fork bomb
 * of another user, 5.5 s a move in a 2-CPU VM, where a clone3 into the group took 99 ms.
 * A kernel without clone3 (ENOSYS, or a seccomp filter that says so) or without
 * CLONE_INTO_CGROUP (E2BIG) gets the writes instead, from then on; so pass the same
 * group's cgroup.procs among cgroup_procs_fds. The fork into the group is charged to its
 * pids limit: EAGAIN there is reported as the "cgroup" step.
 *
 * Changing credentials in a child that shares our memory (CLONE_VM) has one effect on us:
 * the shared mm is non-dumpable until the child execs (see above). The parent puts its
 * own dumpable flag back once no such child shares the mm any more (several threads may
 * spawn at once: the last one out restores the flag the first one in saw), and the exec
 * gives the job a new mm.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__linux__)
#include <stdint.h>
#define HAVE_CLONE3 1
#else
#define HAVE_CLONE3 0
#endif

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

#define STACK_SIZE (64 * 1024)

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
    Py_ssize_t n_groups;
    int stdin_fd;
    int output_fd;
    int *procs_fds;
    Py_ssize_t n_procs;
    int placed; /* born in its cgroup (clone3): no cgroup.procs writes */
    int error_fd;
    int pid_fd;
    sigset_t old_mask;
};

/* The child calls the kernel through syscall(2) only: glibc's wrappers for write, open,
 * close and fcntl are cancellation points, which consult the (suspended) parent thread's
 * state, as posix_spawn avoids too. syscall() sets errno, which the child shares with the
 * parent thread; the parent reads errno only after its own calls. */

static void report(int fd, int step, int err) {
    int message[2] = {step, err};
    syscall(SYS_write, fd, message, sizeof message);
    syscall(SYS_exit_group, 127);
    _exit(127);
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

/* Our dumpable flag while children that switch users share our mm (see the top). */
static pthread_mutex_t dumpable_lock = PTHREAD_MUTEX_INITIALIZER;
static int switching = 0;        /* spawns whose child may have left the mm non-dumpable */
static int dumpable_before = -1; /* the flag when the first of them began */

static void switch_begins(void) {
    pthread_mutex_lock(&dumpable_lock);
    if (switching++ == 0)
        dumpable_before = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
}

static void switch_ends(void) {
    pthread_mutex_lock(&dumpable_lock);
    if (--switching == 0 && dumpable_before >= 0 &&
        prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable_before)
        prctl(PR_SET_DUMPABLE, dumpable_before, 0, 0, 0);
    pthread_mutex_unlock(&dumpable_lock);
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

#if HAVE_CLONE3
#define JOGGER_CLONE_INTO_CGROUP 0x200000000ULL

/* The kernel's struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2), spelled out so
 * that older kernel headers build it too. */
struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};

/* clone3(args, size), the child running fn(arg) on args->stack and exiting with what it
 * returns; the parent gets the child's pid, or -errno. No C wrapper can do this: on its new
 * stack the child has no frame to return to. As glibc's (private) __clone3 does, in
 * x86_64 assembly: the kernel keeps rdx (fn) and r8 (arg) across the system call. */
long jogger_clone3(struct clone3_args *args, size_t size, int (*fn)(void *), void *arg)
    __attribute__((visibility("hidden")));
__asm__(".pushsection .text\n" /* and .popsection: the compiler's own section stays */
        ".globl jogger_clone3\n"
        ".hidden jogger_clone3\n"
        ".type jogger_clone3, @function\n"
        "jogger_clone3:\n"
        "    mov %rcx, %r8\n"
        "    mov $435, %eax\n" /* SYS_clone3 */
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jz 1f\n"
        "    ret\n"
        "1:  xor %ebp, %ebp\n"
        "    and $-16, %rsp\n"
        "    mov %r8, %rdi\n"
        "    call *%rdx\n"
        "    mov %eax, %edi\n"
        "    mov $60, %eax\n" /* exit */
        "    syscall\n"
        "    hlt\n"
        ".size jogger_clone3, .-jogger_clone3\n"
        ".popsection\n");

/* Cleared once the kernel has said it cannot clone into a cgroup; read and written by
 * spawning threads without a lock: the worst a race costs is one more try. */
static volatile int clone3_usable = 1;
#endif

static int child_main(void *raw) {
    struct child_args *a = raw;
    /* First of all, before the switch makes us stoppable by others: our pid, for whoever
     * must kill us should we never reach exec. Should this fail (it cannot on a fresh pipe),
     * exit: the parent then returns our pid as if we had exec'd, and the job has exited 127. */
    if (a->pid_fd >= 0) {
        int self = (int)syscall(SYS_getpid);
        if (syscall(SYS_write, a->pid_fd, &self, sizeof self) != (long)sizeof self)
            syscall(SYS_exit_group, 127);
    }
    /* Every signal to its default: the server's handlers, and whatever the server itself
     * inherited as ignored (nohup's SIGHUP, Python's SIGPIPE, a supervisor's realtime
     * signals), which exec would otherwise pass on. The raw system call, because glibc
     * refuses its own reserved signals (32, 33); an all-zero kernel sigaction is SIG_DFL
     * with no flags and an empty mask on every architecture. */
    unsigned long zero[8] = {0}; /* bigger than any architecture's kernel sigaction */
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, zero, NULL, (size_t)(NSIG / 8));
    }
    /* Lift every fd we still need off 0-2 (a server started with those closed gets them
     * from pipe2 and open) before 0-2 are overwritten: the error pipe first. The new fds
     * live in this process's own fd table; the array is ours to update (CLONE_VM). */
    if ((a->error_fd = lift(a->error_fd)) < 0)
        syscall(SYS_exit_group, 127);
    if ((a->stdin_fd = lift(a->stdin_fd)) < 0 || (a->output_fd = lift(a->output_fd)) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    for (Py_ssize_t i = 0; i < a->n_procs; i++) {
        if ((a->procs_fds[i] = lift(a->procs_fds[i])) < 0)
            report(a->error_fd, STEP_CGROUP, errno);
    }
    if (syscall(SYS_setsid) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    if (take_fd(a->stdin_fd, 0) < 0 || take_fd(a->output_fd, 1) < 0 ||
        take_fd(a->output_fd, 2) < 0)
        report(a->error_fd, STEP_SETUP, errno);
    for (Py_ssize_t i = 0; i < a->n_procs && !a->placed; i++) {
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
    }
    if (a->cwd != NULL) {
        if (syscall(SYS_chdir, a->cwd) < 0)
            report(a->error_fd, STEP_CWD, errno);
    } else if (a->home != NULL && syscall(SYS_chdir, a->home) < 0 &&
               syscall(SYS_chdir, "/") < 0) {
        report(a->error_fd, STEP_CWD, errno);
    }
    cloexec_from(3);
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
    return 127;
}

/* Whether `obj` is bytes without an embedded NUL. */
static int c_string(PyObject *obj) {
    return PyBytes_Check(obj) &&
           (Py_ssize_t)strlen(PyBytes_AS_STRING(obj)) == PyBytes_GET_SIZE(obj);
}

/* A NULL-terminated array of the bytes objects' buffers (which stay owned by `seq`). */
static char **byte_strings(PyObject *seq, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **out = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    if (out == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!c_string(item)) {
            PyErr_Format(PyExc_ValueError, "%s must be bytes without NUL", what);
            PyMem_Free(out);
            Py_DECREF(fast);
            return NULL;
        }
        out[i] = PyBytes_AS_STRING(item);
    }
    Py_DECREF(fast); /* the caller's sequence still holds every item */
    return out;
}

static PyObject *spawn(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *executables, *argv, *envp, *cwd_obj, *procs, *credentials, *home_obj;
    int stdin_fd, output_fd, cgroup_fd, pid_fd;
    if (!PyArg_ParseTuple(args, "O!O!O!OiiO!iOOi", &PyTuple_Type, &executables, &PyTuple_Type,
                          &argv, &PyTuple_Type, &envp, &cwd_obj, &stdin_fd, &output_fd,
                          &PyTuple_Type, &procs, &cgroup_fd, &credentials, &home_obj, &pid_fd))
        return NULL;
    if (PyTuple_GET_SIZE(executables) == 0 || PyTuple_GET_SIZE(argv) == 0) {
        PyErr_SetString(PyExc_ValueError, "executables and argv must not be empty");
        return NULL;
    }
    if (cwd_obj != Py_None && !c_string(cwd_obj)) {
        PyErr_SetString(PyExc_ValueError, "cwd must be bytes without NUL, or None");
        return NULL;
    }
    if (home_obj != Py_None && !c_string(home_obj)) {
        PyErr_SetString(PyExc_ValueError, "home must be bytes without NUL, or None");
        return NULL;
    }
    struct child_args a;
    memset(&a, 0, sizeof a);
    PyObject *group_list = NULL;
    if (credentials != Py_None) {
        unsigned int uid, gid;
        if (!PyArg_ParseTuple(credentials, "IIO!;credentials must be (uid, gid, groups)", &uid,
                              &gid, &PyTuple_Type, &group_list))
            return NULL;
        if (uid == (unsigned int)-1 || gid == (unsigned int)-1) {
            PyErr_SetString(PyExc_ValueError, "uid and gid must not be -1");
            return NULL;
        }
        a.switch_user = 1;
        a.uid = (uid_t)uid;
        a.gid = (gid_t)gid;
        a.n_groups = PyTuple_GET_SIZE(group_list);
    }
    PyObject *result = NULL;
    char *stack = NULL;
    int pipe_fds[2] = {-1, -1};
    a.cwd = cwd_obj == Py_None ? NULL : PyBytes_AS_STRING(cwd_obj);
    a.home = home_obj == Py_None ? NULL : PyBytes_AS_STRING(home_obj);
    a.stdin_fd = stdin_fd;
    a.output_fd = output_fd;
    a.pid_fd = pid_fd < 0 ? -1 : pid_fd;
    a.n_procs = PyTuple_GET_SIZE(procs);
    if ((a.executables = byte_strings(executables, "executables")) == NULL ||
        (a.argv = byte_strings(argv, "argv")) == NULL ||
        (a.envp = byte_strings(envp, "envp")) == NULL)
        goto done;
    a.procs_fds = PyMem_Calloc((size_t)a.n_procs + 1, sizeof(int));
    a.groups = PyMem_Calloc((size_t)a.n_groups + 1, sizeof(gid_t));
    stack = PyMem_Malloc(STACK_SIZE);
    if (a.procs_fds == NULL || a.groups == NULL || stack == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < a.n_procs; i++) {
        a.procs_fds[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(procs, i));
        if (PyErr_Occurred())
            goto done;
    }
    for (Py_ssize_t i = 0; i < a.n_groups; i++) {
        unsigned long group = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(group_list, i));
        if (PyErr_Occurred())
            goto done;
        if (group >= (unsigned int)-1) {
            PyErr_SetString(PyExc_ValueError, "a group id must be below 2**32 - 1");
            goto done;
        }
        a.groups[i] = (gid_t)group;
    }
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    a.error_fd = pipe_fds[1];

    sigset_t all;
    sigfillset(&all);
    pid_t pid = -1;
    int clone_errno = 0;
    int clone_step = 0; /* the failed clone3 was the placement (filename2 "cgroup") */
    int message[2];
    ssize_t got = 0;
    /* Without the GIL: this thread is suspended until the child has exec'd or died, which
     * the child, once switched, may put off at will (see the top); the other threads, the
     * one that can kill it among them, need the GIL meanwhile. Only other threads: the
     * one that called us waits. The child reads only the arrays built above, which the
     * argument tuples keep alive. */
    Py_BEGIN_ALLOW_THREADS
    if (a.switch_user)
        switch_begins();
    pthread_sigmask(SIG_SETMASK, &all, &a.old_mask);
#if HAVE_CLONE3
    if (cgroup_fd >= 0 && clone3_usable) {
        struct clone3_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_VM | CLONE_VFORK | JOGGER_CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.stack = (uint64_t)(uintptr_t)stack;
        ca.stack_size = STACK_SIZE;
        ca.cgroup = (uint64_t)cgroup_fd;
        a.placed = 1;
        long r = jogger_clone3(&ca, sizeof ca, child_main, &a);
        if (r == -ENOSYS || r == -E2BIG) {
            clone3_usable = 0;
            a.placed = 0;
        } else if (r < 0) {
            clone_errno = (int)-r;
            clone_step = STEP_CGROUP;
        } else {
            pid = (pid_t)r;
        }
    }
#endif
    if (pid < 0 && clone_step == 0) {
        pid = clone(child_main, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
        clone_errno = errno;
    }
    pthread_sigmask(SIG_SETMASK, &a.old_mask, NULL);
    close(pipe_fds[1]);
    pipe_fds[1] = -1;
    if (pid > 0) {
        do {
            got = read(pipe_fds[0], message, sizeof message);
        } while (got < 0 && errno == EINTR);
        /* The child failed before exec and has exited: collect it, unless the caller
         * may still signal its pid (pid_fd), and so must collect it itself. */
        if (got > 0 && a.pid_fd < 0)
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
    }
    /* The child has exec'd or died: it no longer shares our mm (see the top). */
    if (a.switch_user)
        switch_ends();
    Py_END_ALLOW_THREADS
    if (pid < 0 && clone_step != 0) {
        message[0] = clone_step;
        message[1] = clone_errno;
    } else if (pid < 0) {
        errno = clone_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    } else if (got <= 0) {
        /* EOF: exec'd, or killed by the caller that had its pid from pid_fd (who knows).
         * (A failed read cannot happen on our own pipe; were it to, the process has
         * exec'd or died, and the caller's pidfd tells which.) */
        result = PyLong_FromLong(pid);
        goto done;
    } else if (got != (ssize_t)sizeof message) {
        PyErr_SetString(PyExc_OSError, "the new process failed before exec");
        goto done;
    }
    /* OSError(errno, strerror, filename, winerror, filename2): filename2 names the step. */
    static const char *const steps[] = {"?", "exec", "cwd", "cgroup", "setup", "user", "keyring"};
    int step = message[0] >= STEP_EXEC && message[0] <= STEP_KEYRING ? message[0] : 0;
    /* (OSError drops filename2 when filename is None.) */
    PyObject *subject = step != STEP_CWD ? PyTuple_GET_ITEM(argv, 0)
                        : cwd_obj != Py_None ? cwd_obj
                                             : home_obj;
    PyObject *err_args =
        Py_BuildValue("(isOOs)", message[1], strerror(message[1]), subject, Py_None, steps[step]);
    if (err_args != NULL) {
        PyObject *exc = PyObject_Call(PyExc_OSError, err_args, NULL);
        Py_DECREF(err_args);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
    }

done:
    if (pipe_fds[0] >= 0)
        close(pipe_fds[0]);
    if (pipe_fds[1] >= 0)
        close(pipe_fds[1]);
    PyMem_Free(stack);
    PyMem_Free(a.procs_fds);
    PyMem_Free(a.groups);
    PyMem_Free(a.executables);
    PyMem_Free(a.argv);
    PyMem_Free(a.envp);
    return result;
}

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS,
     "spawn(executables, argv, envp, cwd, stdin_fd, output_fd, cgroup_procs_fds, credentials,"
     " home, pid_fd) -> pid"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_spawn",
    .m_doc = "Start a job's process inside its cgroups.", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__spawn(void) { return PyModule_Create(&module); }
