def spawn(
    executables: tuple[bytes, ...],
    argv: tuple[bytes, ...],
    envp: tuple[bytes, ...],
    cwd: bytes | None,
    stdin_fd: int,
    output_fd: int,
    cgroup_procs_fds: tuple[int, ...],
    cgroup_fd: int,
    credentials: tuple[int, int, tuple[int, ...]] | None,
    home: bytes | None,
    pid_fd: int,
    /,
) -> int: ...
