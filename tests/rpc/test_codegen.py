import os
import sys
from pathlib import Path

import trio

ROOT = Path(__file__).parents[2]
GENERATED = [
    "jobs_pb2.py",
    "jobs_pb2.pyi",
    "jobs_grpc.py",
    "health_pb2.py",
    "health_pb2.pyi",
    "health_grpc.py",
]


async def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    # The same command as `make grpc`, into a scratch directory.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    await trio.run_process(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--purerpc_out={tmp_path}",
            "proto/jogger/v1/jobs.proto",
            "proto/jogger/v1/health.proto",
        ],
        cwd=ROOT,
        env=env,
    )
    stale = [
        name
        for name in GENERATED
        if (tmp_path / "jogger/v1" / name).read_bytes() != (ROOT / "jogger/v1" / name).read_bytes()
    ]
    assert stale == [], f"run `make grpc`: stale generated files {stale}"
