"""Server reflection with stock grpcio clients: grpcio-reflection's descriptor database (over
v1alpha, as it speaks it) and a plain v1 stream; every kind of request, and what we lack."""

import queue
from collections.abc import Iterator
from typing import Any

import grpc
import trio
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from jogger.rpc.errors import StatusCode
from jogger.standard.grpc.reflection.v1 import reflection_pb2 as v1
from tests.rpc.test_grpcio_interop import credentials
from tests.servers import Server

SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "jogger.v1.Jobs",
]
TIMEOUT = 30


def channel_to(server: Server) -> Any:
    return grpc.secure_channel(f"localhost:{server.port}", credentials(server, "alice"))


def discover_and_start(server: Server) -> dict[str, Any]:
    """What grpcio-reflection finds, and a Start built and called from it alone."""
    seen: dict[str, Any] = {}
    with channel_to(server) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        seen["services"] = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        start = pool.FindMethodByName("jogger.v1.Jobs.Start")
        seen["start"] = (start.input_type.full_name, start.output_type.full_name)
        watch = pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Watch"]
        seen["watch streams"] = watch.server_streaming
        # A message of another file, found through its imports: google.protobuf.Duration.
        stop = pool.FindMessageTypeByName("jogger.v1.StopRequest")
        grace = stop.fields_by_name["grace"].message_type
        seen["grace"] = grace.full_name if grace is not None else None
        # Built from the descriptor alone: no generated code of ours.
        request_class: Any = GetMessageClass(start.input_type)
        response_class = GetMessageClass(start.output_type)
        call = channel.unary_unary(
            "/jogger.v1.Jobs/Start",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        job = call(request_class(argv=["echo", "found by reflection"]), timeout=TIMEOUT)
        seen["owner"] = job.owner
        seen["argv"] = list(job.argv)
        try:
            pool.FindMessageTypeByName("jogger.v1.NoSuchMessage")
        except KeyError:
            seen["missing"] = "KeyError"
    return seen


async def test_grpcio_reflection_finds_our_services_and_builds_a_call(server: Server) -> None:
    with trio.fail_after(60):
        seen = await trio.to_thread.run_sync(discover_and_start, server)
    assert seen["services"] == SERVICES
    assert seen["start"] == ("jogger.v1.StartRequest", "jogger.v1.JobStatus")
    assert seen["watch streams"] is True
    assert seen["grace"] == "google.protobuf.Duration"
    assert seen["owner"] == "alice"
    assert seen["argv"] == ["echo", "found by reflection"]
    assert seen["missing"] == "KeyError"


REQUESTS = [
    v1.ServerReflectionRequest(host="h", list_services=""),
    v1.ServerReflectionRequest(file_by_filename="jogger/v1/jobs.proto"),
    v1.ServerReflectionRequest(file_containing_symbol="jogger.v1.Jobs.Output"),
    v1.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.HealthCheckResponse.SERVING"),
    v1.ServerReflectionRequest(file_containing_symbol="jogger.v1.NoSuchThing"),
    v1.ServerReflectionRequest(file_by_filename="no/such.proto"),
    v1.ServerReflectionRequest(
        file_containing_extension=v1.ExtensionRequest(
            containing_type="jogger.v1.StartRequest", extension_number=100
        )
    ),
    v1.ServerReflectionRequest(all_extension_numbers_of_type="jogger.v1.StartRequest"),
    v1.ServerReflectionRequest(all_extension_numbers_of_type="jogger.v1.NoSuchThing"),
    v1.ServerReflectionRequest(),
    v1.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
]


def ask_v1(server: Server) -> list[v1.ServerReflectionResponse]:
    """Every request of REQUESTS on one v1 stream, each sent once the one before is answered
    (as grpcurl does)."""
    turns: queue.Queue[None] = queue.Queue()

    def requests() -> Iterator[v1.ServerReflectionRequest]:
        for request in REQUESTS:
            yield request
            turns.get(timeout=TIMEOUT)  # its answer has come

    answers = []
    with channel_to(server) as channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=v1.ServerReflectionRequest.SerializeToString,
            response_deserializer=v1.ServerReflectionResponse.FromString,
        )
        for answer in info(requests(), timeout=TIMEOUT):
            answers.append(answer)
            turns.put(None)
    return answers


def file_names(response: v1.ServerReflectionResponse) -> list[str]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(data).name
        for data in response.file_descriptor_response.file_descriptor_proto
    ]


def error(response: v1.ServerReflectionResponse) -> tuple[int, str]:
    assert response.WhichOneof("message_response") == "error_response"
    return response.error_response.error_code, response.error_response.error_message


async def test_a_v1_stream_answers_every_kind_of_request_and_stays_open(server: Server) -> None:
    with trio.fail_after(60):
        answers = await trio.to_thread.run_sync(ask_v1, server)
    assert len(answers) == len(REQUESTS)
    for request, answer in zip(REQUESTS, answers, strict=True):
        assert answer.original_request == request
    listed, jobs, output, serving, symbol, filename, extension, numbers, unknown, empty, own = (
        answers
    )
    assert listed.valid_host == "h"
    assert [s.name for s in listed.list_services_response.service] == SERVICES
    # The file first, then what it imports.
    assert file_names(jobs) == [
        "jogger/v1/jobs.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/timestamp.proto",
    ]
    jobs_file = descriptor_pb2.FileDescriptorProto.FromString(
        jobs.file_descriptor_response.file_descriptor_proto[0]
    )
    assert [s.name for s in jobs_file.service] == ["Jobs"]
    assert file_names(output) == file_names(jobs)
    assert file_names(serving) == ["grpc/health/v1/health.proto"]
    assert file_names(own) == ["grpc/reflection/v1/reflection.proto"]
    assert error(symbol) == (StatusCode.NOT_FOUND.value, "symbol 'jogger.v1.NoSuchThing' not found")
    assert error(filename) == (StatusCode.NOT_FOUND.value, "file 'no/such.proto' not found")
    assert error(extension) == (
        StatusCode.NOT_FOUND.value,
        "extension 100 of 'jogger.v1.StartRequest' not found",
    )
    assert numbers.all_extension_numbers_response.base_type_name == "jogger.v1.StartRequest"
    assert list(numbers.all_extension_numbers_response.extension_number) == []
    assert error(unknown) == (
        StatusCode.NOT_FOUND.value,
        "message type 'jogger.v1.NoSuchThing' not found",
    )
    assert error(empty)[0] == StatusCode.INVALID_ARGUMENT.value
