import sys
from pathlib import Path

import trio

ROOT = Path(__file__).parents[2]
STANDARD = [
    "proto/grpc/health/v1/health.proto",
    "proto/grpc/reflection/v1/reflection.proto",
    "proto/grpc/reflection/v1alpha/reflection.proto",
]
"""gRPC's own, generated into jogger/standard, each into a descriptor pool of its own."""
STANDARD_MODULES = [
    "jogger/standard/" + proto.removeprefix("proto/").removesuffix(".proto") + "_pb2"
    for proto in STANDARD
]
GENERATED = [
    name + suffix
    for name in ["jogger/v1/jobs_pb2", *STANDARD_MODULES]
    for suffix in (".py", ".pyi")
]


async def protoc(out: Path, *protos: str) -> None:
    await trio.Path(out).mkdir(parents=True, exist_ok=True)
    await trio.run_process(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", "-I", "proto"),
            *(f"--python_out={out}", f"--pyi_out={out}", *protos),
        ],
        cwd=ROOT,
    )


async def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    # What `make grpc` does, into a scratch directory.
    await protoc(tmp_path, "proto/jogger/v1/jobs.proto")
    await protoc(tmp_path / "jogger/standard", *STANDARD)
    for name in STANDARD_MODULES:
        module = trio.Path(tmp_path / f"{name}.py")
        text = await module.read_text()
        await module.write_text(
            text.replace("_descriptor_pool.Default()", "_descriptor_pool.DescriptorPool()")
        )
    stale = [
        name for name in GENERATED if (tmp_path / name).read_bytes() != (ROOT / name).read_bytes()
    ]
    assert stale == [], f"run `make grpc`: stale generated files {stale}"


def test_the_standard_protos_load_beside_grpcios_own() -> None:
    # Their own descriptor pools: grpcio's packages register the same names in the default one.
    import grpc_health.v1.health_pb2  # noqa: PLC0415 - the point is what this import does
    import grpc_reflection.v1alpha.reflection_pb2  # noqa: PLC0415

    from jogger.standard.grpc.health.v1 import health_pb2  # noqa: PLC0415
    from jogger.standard.grpc.reflection.v1alpha import reflection_pb2  # noqa: PLC0415

    ours = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
    theirs = grpc_health.v1.health_pb2.HealthCheckResponse.FromString(ours.SerializeToString())
    assert theirs.status == grpc_health.v1.health_pb2.HealthCheckResponse.NOT_SERVING
    assert (
        reflection_pb2.ServerReflectionRequest.DESCRIPTOR.full_name
        == grpc_reflection.v1alpha.reflection_pb2.ServerReflectionRequest.DESCRIPTOR.full_name
    )
