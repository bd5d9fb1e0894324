"""Run pytest inside a QEMU VM that has a real cgroup v2 hierarchy with every controller.

    python tests/vm/run_in_vm.py [--memory 2G] [--cpus 2] [--timeout SECONDS] [--output FILE] \
        -- PYTEST_ARGS...
    python tests/vm/run_in_vm.py [...] --script bench/cgroups.py -- SCRIPT_ARGS...

Debian's kernel boots under TCG (no KVM needed) from a busybox initramfs that loads the virtio
and 9p modules, mounts the host's / read-only over 9p, adds proc, sys, cgroup2 on
/sys/fs/cgroup, devtmpfs, devpts, and tmpfs on /tmp, /run and /dev/shm, chroots into it and
runs `.venv/bin/python -m pytest PYTEST_ARGS` (or the --script) from this repository as root, with
JOGGER_IN_VM=1. The console (the pytest output among it) streams to stdout; pytest's exit code
and output come back through a second, writable 9p export, a temporary directory.

Exits with pytest's exit code; 124 if the VM ran out of time, 125 if it could not run the tests,
130 on Ctrl-C, 143 on SIGTERM. QEMU is killed on every way out (and dies with this process even
on SIGKILL), and the temporary directory is removed.

Needs root. Installs qemu-system-x86, linux-image-amd64 and busybox-static with apt-get when
the emulator, a kernel with its modules or a static busybox is missing.
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import lzma
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("qemu-system-x86", "linux-image-amd64", "busybox-static")
QEMU = "qemu-system-x86_64"
BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# What the guest needs to mount 9p over virtio-pci; their dependencies (virtio, virtio_ring,
# virtio_pci_{legacy,modern}_dev, 9pnet, netfs, fscache) come from modules.dep. Any of them
# may be built into the kernel instead.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
MSIZE = 512000
NR_OPEN = 1048576  # the kernel's default fs.nr_open: the most RLIMIT_NOFILE can be
WORK_PREFIX = "jogger-vm-"
OWNER_FILE = "owner-pid"

EXIT_TIMEOUT = 124
EXIT_VM_FAILED = 125
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

PR_SET_PDEATHSIG = 1
# SeaBIOS clears the serial terminal ("ESC c", "ESC [2J"...): dropped from the copy.
TERMINAL_CONTROL = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")

# Lines the guest prints, so that the host can tell how far it got and when.
MARK = "jogger-vm:"
MARK_INIT = f"{MARK} init"
MARK_PYTEST = f"{MARK} starting pytest"
MARK_DONE = f"{MARK} pytest exited"

INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo
echo "{mark_init} (uptime $(cut -d' ' -f1 /proc/uptime) s)"
fail() {{
    echo "{mark} FAILED: $*"
    poweroff -f
    sleep 10
    exit 1
}}
for m in {modules}; do
    insmod "/modules/$m.ko" || fail "insmod $m"
done
R=/newroot
OUT=$R/run/jogger-vm-out
mkdir -p $R
mount -t 9p -o trans=virtio,version=9p2000.L,msize={msize},ro,cache=loose host $R \\
    || fail "mount the host's / over 9p"
mount -t proc proc $R/proc || fail "mount proc"
mount -t sysfs sys $R/sys || fail "mount sysfs"
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "mount cgroup2"
mount -t devtmpfs dev $R/dev || fail "mount devtmpfs"
mkdir -p $R/dev/shm $R/dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm $R/dev/shm || fail "mount /dev/shm"
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts || fail "mount devpts"
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
# The tmpfs mounts below would hide a repository under /tmp or /run: keep it at hand.
mkdir -p /repo
mount --bind $R{repo} /repo || fail "bind {repo}"
mount -t tmpfs -o mode=1777 tmp $R/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=755 run $R/run || fail "mount /run"
if [ ! -d $R{repo} ]; then
    mkdir -p $R{repo} && mount --bind /repo $R{repo} || fail "bind {repo} back"
fi
mkdir -p $OUT
mount -t 9p -o trans=virtio,version=9p2000.L,msize={msize} out $OUT \\
    || fail "mount the output export"
ip link set lo up
ulimit -H -n {nofile_hard} && ulimit -S -n {nofile_soft} || fail "ulimit -n (as on the host)"
hostname jogger-vm
[ -d $R{repo} ] || fail "no {repo} in the guest"
{{
    echo "{mark} kernel $(uname -r), $(nproc) CPUs, $(free -m | awk '/Mem:/ {{print $2}}') MiB," \\
        "ulimit -n $(ulimit -n)"
    echo "{mark} cgroup.controllers: $(cat $R/sys/fs/cgroup/cgroup.controllers)"
    echo "{mark_pytest} (uptime $(cut -d' ' -f1 /proc/uptime) s)"
    chroot $R /usr/bin/env -i \\
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
        HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb \\
        JOGGER_IN_VM=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\
        /bin/sh -c 'cd "$1" && shift && exec "$@"' sh {repo} \\
        {python} {args} </dev/null
    rc=$?
    echo $rc > $OUT/rc.tmp && mv $OUT/rc.tmp $OUT/rc
    echo "{mark_done} $rc (uptime $(cut -d' ' -f1 /proc/uptime) s)"
}} 2>&1 | tee $OUT/output
sync
umount $OUT
poweroff -f
"""


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived."""


class VMError(Exception):
    """The VM could not be prepared or run."""


def main(argv: Sequence[str]) -> int:
    args, pytest_args = parse_args(argv)
    if os.geteuid() != 0:
        print("run_in_vm: needs root (apt-get, /boot, 9p export of /)", file=sys.stderr)
        return EXIT_VM_FAILED
    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        print(f"run_in_vm: no {python}: run `make venv` first", file=sys.stderr)
        return EXIT_VM_FAILED

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGHUP, terminated)
    started = time.monotonic()
    try:
        ensure_packages()
        kernel, version = find_kernel()
        remove_stale_work_dirs()
        with tempfile.TemporaryDirectory(prefix=WORK_PREFIX) as tmp:
            (Path(tmp) / OWNER_FILE).write_text(str(os.getpid()))
            return run(
                args,
                pytest_args,
                work=Path(tmp),
                kernel=kernel,
                version=version,
                python=python,
                started=started,
            )
    except VMError as error:
        print(f"run_in_vm: {error}", file=sys.stderr)
        return EXIT_VM_FAILED
    except KeyboardInterrupt:
        print("run_in_vm: interrupted; the VM was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as signame:
        print(f"run_in_vm: {signame}; the VM was stopped", file=sys.stderr)
        return EXIT_TERMINATED


def remove_stale_work_dirs() -> None:
    """Removes the temporary directories of runs that were SIGKILLed (their QEMU died too)."""
    for work in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        try:
            pid = int((work / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or still being set up
        try:
            alive = "run_in_vm" in Path(f"/proc/{pid}/cmdline").read_text()
        except OSError:
            alive = False
        if not alive:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    own, pytest_args = list(argv), []
    if "--" in own:
        split = own.index("--")
        own, pytest_args = own[:split], own[split + 1 :]
    parser = argparse.ArgumentParser(
        description="Run pytest inside a QEMU VM with a real cgroup2 hierarchy.",
        usage="%(prog)s [--memory 2G] [--cpus 2] [--timeout SECONDS] [--output FILE] [--script PY]"
        " -- ARGS...",
    )
    parser.add_argument("--memory", default="2G", help="the VM's memory, as QEMU's -m takes it")
    parser.add_argument(
        "--cpus",
        type=int,
        default=2,
        help="the VM's CPUs (default 2; 1 keeps the host from stealing time from a vCPU that"
        " the guest believes busy, which blurs CPU weights under TCG)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="stop the VM after this many seconds, counted from its start (default 1800)",
    )
    parser.add_argument("--output", type=Path, help="also copy pytest's output to this file")
    parser.add_argument(
        "--script",
        help="run this Python script of the repository (bench/cgroups.py, say) with the"
        " arguments after --, instead of pytest",
    )
    args = parser.parse_args(own)
    if args.script is not None:
        return args, [args.script, *pytest_args]
    return args, ["-m", "pytest", "-p", "no:cacheprovider", "--basetemp=/tmp/pytest", *pytest_args]


def run(
    args: argparse.Namespace,
    pytest_args: list[str],
    *,
    work: Path,
    kernel: Path,
    version: str,
    python: Path,
    started: float,
) -> int:
    setup = time.monotonic()
    out = work / "out"
    out.mkdir()
    initrd = build_initramfs(work, version, python, pytest_args)
    print(
        f"run_in_vm: kernel {version}; packages {setup - started:.1f} s,"
        f" initramfs {time.monotonic() - setup:.1f} s ({initrd.stat().st_size // 1024} KiB)",
        flush=True,
    )
    vm = boot(kernel, initrd, out, memory=args.memory, cpus=args.cpus, timeout=args.timeout)
    output = out / "output"
    if args.output is not None and output.exists():
        shutil.copyfile(output, args.output)
    rc_file = out / "rc"
    total = time.monotonic() - started
    if vm.timed_out:
        print(
            f"run_in_vm: FAILED: the VM ran past --timeout {args.timeout:g} s and was killed",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    rc_text = rc_file.read_text().strip() if rc_file.exists() else ""
    if not rc_text.isdigit():
        why = "it never reached pytest" if vm.marks.get(MARK_PYTEST) is None else "pytest died"
        if vm.marks.get(MARK_INIT) is None:
            why = "it did not boot (no init output)"
        print(
            f"run_in_vm: FAILED: the VM stopped (QEMU exit {vm.returncode}) without"
            f" a pytest exit code: {why}; see the console output above",
            file=sys.stderr,
        )
        return EXIT_VM_FAILED
    rc = int(rc_text)
    print(f"run_in_vm: pytest exited {rc}; {vm.timings()}, total {total:.1f} s", flush=True)
    return rc


def ensure_packages() -> None:
    """apt-get installs what is missing: QEMU, a kernel with modules, a static busybox."""
    missing = []
    if shutil.which(QEMU) is None:
        missing.append("qemu-system-x86")
    if not kernels():
        missing.append("linux-image-amd64")
    if find_busybox() is None:
        missing.append("busybox-static")
    if not missing:
        return
    print(f"run_in_vm: missing {', '.join(missing)}: installing {' '.join(PACKAGES)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    ):
        if subprocess.run(command, env=env, stdin=subprocess.DEVNULL, check=False).returncode:
            raise VMError(f"`{shlex.join(command)}` failed")


def kernels() -> list[tuple[Path, str]]:
    """Each /boot/vmlinuz-VERSION that has /lib/modules/VERSION/modules.dep, newest last."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version / "modules.dep").is_file():
            found.append((image, version))
    return sorted(found, key=lambda kv: version_key(kv[1]))


def version_key(version: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[^\d.\-+~]+", version)]


def find_kernel() -> tuple[Path, str]:
    found = kernels()
    if not found:
        raise VMError("no /boot/vmlinuz-* with a matching /lib/modules/*/modules.dep")
    return found[-1]


def find_busybox() -> Path | None:
    """A statically linked busybox: the initramfs has no libc."""
    for path in BUSYBOX_PATHS:
        if path.is_file() and is_static_elf(path):
            return path
    return None


def is_static_elf(path: Path) -> bool:
    """An x86-64 ELF with no PT_INTERP program header (no dynamic loader)."""
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:5] != b"\x7fELF\x02":
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(
        int.from_bytes(table[i : i + 4], "little") != pt_interp
        for i in range(0, len(table), phentsize)
    )


def module_name(path: str) -> str:
    name = Path(path).name
    name = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", name)
    return name.replace("-", "_")


def modules_to_load(version: str) -> list[Path]:
    """ROOT_MODULES and what they depend on, dependencies first; built-in ones left out."""
    base = Path("/lib/modules") / version
    deps: dict[str, tuple[Path, list[str]]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        target, _, rest = line.partition(":")
        deps[module_name(target)] = (base / target, [module_name(d) for d in rest.split()])
    builtin_file = base / "modules.builtin"
    builtin = (
        {module_name(line) for line in builtin_file.read_text().split()}
        if builtin_file.exists()
        else set()
    )
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in deps:
            raise VMError(f"kernel {version} has no module {name} (neither built in nor .ko)")
        path, needs = deps[name]
        for need in needs:
            visit(need)
        order.append(path)

    for name in ROOT_MODULES:
        visit(name)
    return order


def module_bytes(path: Path) -> bytes:
    """The module, decompressed: busybox's insmod takes plain .ko files only."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise VMError(f"{path} is zstd-compressed and there is no zstd to decompress it")
        return subprocess.run(["zstd", "-dcq", str(path)], capture_output=True, check=True).stdout
    return data


def build_initramfs(work: Path, version: str, python: Path, pytest_args: list[str]) -> Path:
    """An uncompressed newc cpio: busybox and its applet links, the modules, /init."""
    busybox = find_busybox()
    if busybox is None:
        raise VMError("no statically linked busybox (package busybox-static)")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    modules = modules_to_load(version)
    # The guest's processes get the host's open-file limit, not the kernel's default 1024.
    soft, hard = (
        NR_OPEN if v == resource.RLIM_INFINITY else v
        for v in resource.getrlimit(resource.RLIMIT_NOFILE)
    )
    init = INIT.format(
        mark=MARK,
        mark_init=MARK_INIT,
        mark_pytest=MARK_PYTEST,
        mark_done=MARK_DONE,
        modules=" ".join(module_name(str(m)) for m in modules),
        msize=MSIZE,
        nofile_soft=min(soft, NR_OPEN),
        nofile_hard=min(hard, NR_OPEN),
        repo=shlex.quote(str(REPO)),
        python=shlex.quote(str(python)),
        args=shlex.join(pytest_args),  # python's arguments: pytest's, or --script's
    )
    archive = work / "initramfs.cpio"
    with archive.open("wb") as f:
        cpio = Cpio(f)
        for directory in ("bin", "dev", "proc", "sys", "modules", "newroot"):
            cpio.directory(directory)
        cpio.device("dev/console", 0o600, 5, 1)
        cpio.device("dev/null", 0o666, 1, 3)
        cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in applets:
            if applet != "busybox":
                cpio.symlink(f"bin/{applet}", "busybox")
        for module in modules:
            cpio.file(f"modules/{module_name(str(module))}.ko", module_bytes(module), 0o644)
        cpio.file("init", init.encode(), 0o755)
        cpio.trailer()
    return archive


class Cpio:
    """Writes the newc ("070701") cpio format, which the kernel unpacks as an initramfs."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.ino = 0
        self.written = 0

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755, b"")

    def file(self, name: str, data: bytes, perm: int) -> None:
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def device(self, name: str, perm: int, major: int, minor: int) -> None:
        self._entry(name, 0o020000 | perm, b"", rdev=(major, minor))

    def trailer(self) -> None:
        self._entry("TRAILER!!!", 0, b"")

    def _entry(self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._write(b"070701" + b"".join(b"%08X" % field for field in fields) + encoded)
        self._write(data)

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        self.written += len(data)
        pad = -self.written % 4
        self.f.write(b"\0" * pad)
        self.written += pad


class VM:
    """What one run of QEMU did: its exit, whether it was killed, when the guest's marks came."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.returncode: int | None = None
        self.timed_out = False
        self.marks: dict[str, float] = {}

    def timings(self) -> str:
        init = self.marks.get(MARK_INIT)
        pytest = self.marks.get(MARK_PYTEST)
        done = self.marks.get(MARK_DONE)
        parts = []
        if init is not None:
            parts.append(f"boot {init:.1f} s")
            if pytest is not None:
                parts.append(f"modules and mounts {pytest - init:.1f} s")
                if done is not None:
                    parts.append(f"pytest {done - pytest:.1f} s")
        return ", ".join(parts) or "no marks from the guest"


def qemu_command(kernel: Path, initrd: Path, out: Path, memory: str, cpus: int) -> list[str]:
    return [
        QEMU,
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        str(cpus),
        "-m",
        memory,
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-nic",
        "none",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 panic=-1 quiet loglevel=3",
        "-virtfs",
        "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={out},mount_tag=out,security_model=none",
    ]


def die_with_parent() -> None:
    """In QEMU before exec: SIGKILL it if this process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def boot(kernel: Path, initrd: Path, out: Path, *, memory: str, cpus: int, timeout: float) -> VM:
    """Runs QEMU to its end, its console copied to stdout; kills it on timeout or any error."""
    vm = VM(time.monotonic())
    qemu = subprocess.Popen(
        qemu_command(kernel, initrd, out, memory, cpus),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 (no threads yet)
    )
    assert qemu.stdout is not None
    reader = threading.Thread(target=copy_console, args=(qemu.stdout, vm), daemon=True)
    try:
        reader.start()
        try:
            vm.returncode = qemu.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            vm.timed_out = True
    finally:
        if qemu.poll() is None:
            os.killpg(qemu.pid, signal.SIGKILL)
            qemu.wait()
        reader.join(timeout=5)
        qemu.stdout.close()
    return vm


def copy_console(stream: BinaryIO, vm: VM) -> None:
    """Copies the serial console to stdout line by line, noting when the guest's marks come."""
    for line in lines(stream):
        text = TERMINAL_CONTROL.sub("", line.decode(errors="replace"))
        for mark in (MARK_INIT, MARK_PYTEST, MARK_DONE):
            if mark in text and mark not in vm.marks:
                vm.marks[mark] = time.monotonic() - vm.started
        sys.stdout.write(text)
        sys.stdout.flush()


def lines(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's lines without the console's carriage returns; a partial line at the end."""
    pending = b""
    while chunk := os.read(stream.fileno(), 65536):
        pending += chunk.replace(b"\r", b"")
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending + b"\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
