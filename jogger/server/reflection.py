"""Server reflection (grpc/grpc doc/server-reflection.md), ``grpc.reflection.v1`` and its
older name ``v1alpha``: the services we serve and the proto files that declare them, so that
grpcurl and grpcio-reflection clients need no copy of our protos.

A file is answered with every file it imports, transitively (the protocol allows it, and a
client then needs one round trip, not one per import). Only the files of the services we
serve, and their imports, are known: nothing else the process has loaded is shown. A
request for what we do not have gets an error response (NOT_FOUND), not the end of the
stream, as the protocol asks.
"""

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    ServiceDescriptor,
)

from ..rpc.errors import StatusCode
from ..rpc.method import Call, Method, service_methods
from ..standard.grpc.reflection.v1 import reflection_pb2 as v1
from ..standard.grpc.reflection.v1alpha import reflection_pb2 as v1alpha

REFLECTION = v1.DESCRIPTOR.services_by_name["ServerReflection"]
REFLECTION_V1ALPHA = v1alpha.DESCRIPTOR.services_by_name["ServerReflection"]


class ReflectionService:
    """Reflection of ``services`` and of itself (both versions)."""

    def __init__(self, services: Sequence[ServiceDescriptor]) -> None:
        served = [*services, REFLECTION, REFLECTION_V1ALPHA]
        self._names = sorted(service.full_name for service in served)
        self._files: dict[str, FileDescriptor] = {}
        for service in served:
            self._add(service.file)
        self._symbols = {
            symbol: file.name for file in self._files.values() for symbol in _declared(file)
        }
        self._messages = {
            message.full_name: message
            for file in self._files.values()
            for message in _messages(file.message_types_by_name.values())
        }
        self._extensions = {
            (extension.containing_type.full_name, extension.number): file.name
            for file in self._files.values()
            for extension in _extensions(file)
            if extension.containing_type is not None
        }

    def _add(self, file: FileDescriptor) -> None:
        if file.name not in self._files:
            self._files[file.name] = file
            for dependency in file.dependencies:
                self._add(dependency)

    def answer(self, request: v1.ServerReflectionRequest) -> v1.ServerReflectionResponse:
        """The response to one request: what it asks for, or an error response."""
        response = v1.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        if kind == "list_services":
            listed = response.list_services_response.service
            listed.extend(v1.ServiceResponse(name=name) for name in self._names)
        elif kind == "file_by_filename":
            name = request.file_by_filename
            self._answer_file(response, name, f"file {name[:200]!r}")
        elif kind == "file_containing_symbol":
            symbol = request.file_containing_symbol
            self._answer_file(response, self._symbols.get(symbol), f"symbol {symbol[:200]!r}")
        elif kind == "file_containing_extension":
            wanted = request.file_containing_extension
            self._answer_file(
                response,
                self._extensions.get((wanted.containing_type, wanted.extension_number)),
                f"extension {wanted.extension_number} of {wanted.containing_type[:200]!r}",
            )
        elif kind == "all_extension_numbers_of_type":
            name = request.all_extension_numbers_of_type
            if name in self._messages:
                numbers = response.all_extension_numbers_response
                numbers.base_type_name = name
                numbers.extension_number.extend(
                    number for (extended, number) in self._extensions if extended == name
                )
            else:
                _error(response, StatusCode.NOT_FOUND, f"message type {name[:200]!r} not found")
        else:
            _error(response, StatusCode.INVALID_ARGUMENT, "the request asks for nothing we know")
        return response

    def _answer_file(
        self, response: v1.ServerReflectionResponse, name: str | None, what: str
    ) -> None:
        """Answer with the file named ``name`` and its imports, or say that ``what`` (the
        request's words for it) was not found."""
        file = self._files.get(name) if name is not None else None
        if file is None:
            _error(response, StatusCode.NOT_FOUND, f"{what} not found")
            return
        response.file_descriptor_response.file_descriptor_proto.extend(
            found.serialized_pb for found in _with_imports(file)
        )

    async def info(
        self, call: Call, requests: AsyncIterator[v1.ServerReflectionRequest]
    ) -> AsyncIterator[v1.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)

    async def info_v1alpha(
        self, call: Call, requests: AsyncIterator[v1alpha.ServerReflectionRequest]
    ) -> AsyncIterator[v1alpha.ServerReflectionResponse]:
        # The same messages on the wire, field for field, under the older package's names.
        async for request in requests:
            answer = self.answer(v1.ServerReflectionRequest.FromString(request.SerializeToString()))
            yield v1alpha.ServerReflectionResponse.FromString(answer.SerializeToString())

    def methods(self) -> dict[str, Method]:
        return {
            **service_methods(
                REFLECTION,
                {"ServerReflectionInfo": Method(v1.ServerReflectionRequest, bidi=self.info)},
            ),
            **service_methods(
                REFLECTION_V1ALPHA,
                {
                    "ServerReflectionInfo": Method(
                        v1alpha.ServerReflectionRequest, bidi=self.info_v1alpha
                    )
                },
            ),
        }


def _error(response: v1.ServerReflectionResponse, code: StatusCode, message: str) -> None:
    response.error_response.error_code = code.value
    response.error_response.error_message = message


def _with_imports(file: FileDescriptor) -> list[FileDescriptor]:
    """``file`` first, then every file it imports, transitively, each once."""
    found: dict[str, FileDescriptor] = {}
    pending = [file]
    while pending:
        next_file = pending.pop(0)
        if next_file.name not in found:
            found[next_file.name] = next_file
            pending.extend(next_file.dependencies)
    return list(found.values())


def _messages(messages: Iterable[Descriptor]) -> Iterator[Descriptor]:
    """``messages`` and the messages nested in them, at any depth."""
    for message in messages:
        yield message
        yield from _messages(message.nested_types)


def _enum_symbols(enum: EnumDescriptor) -> Iterator[str]:
    yield enum.full_name
    # An enum's values are named in the scope that holds the enum, as in C++.
    scope = enum.full_name.rpartition(".")[0]
    for value in enum.values:
        yield f"{scope}.{value.name}" if scope else value.name


def _declared(file: FileDescriptor) -> Iterator[str]:
    """The full name of everything ``file`` declares: its messages (and their fields, oneofs,
    nested messages and enums), enums and their values, services and their methods, and
    extensions."""
    for message in _messages(file.message_types_by_name.values()):
        yield message.full_name
        yield from (field.full_name for field in message.fields)
        yield from (oneof.full_name for oneof in message.oneofs)
        for enum in message.enum_types:
            yield from _enum_symbols(enum)
    for enum in file.enum_types_by_name.values():
        yield from _enum_symbols(enum)
    for service in file.services_by_name.values():
        yield service.full_name
        yield from (method.full_name for method in service.methods)
    yield from (extension.full_name for extension in _extensions(file))


def _extensions(file: FileDescriptor) -> Iterator[FieldDescriptor]:
    """The extensions ``file`` declares, at its top level and nested in its messages."""
    yield from file.extensions_by_name.values()
    for message in _messages(file.message_types_by_name.values()):
        yield from message.extensions
