import purerpc
import jogger.v1.jobs_pb2 as jogger_dot_v1_dot_jobs__pb2
import google.protobuf.duration_pb2 as google_dot_protobuf_dot_duration__pb2
import google.protobuf.timestamp_pb2 as google_dot_protobuf_dot_timestamp__pb2


class JobsServicer(purerpc.Servicer):
    async def Start(self, input_message):
        raise NotImplementedError()

    async def Stop(self, input_message):
        raise NotImplementedError()

    async def Status(self, input_message):
        raise NotImplementedError()

    async def Output(self, input_message):
        raise NotImplementedError()

    async def List(self, input_message):
        raise NotImplementedError()

    async def Write(self, input_messages):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "jogger.v1.Jobs"
        )
        service_obj.add_method(
            "Start",
            self.Start,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.StartRequest,
                jogger_dot_v1_dot_jobs__pb2.JobStatus,
            )
        )
        service_obj.add_method(
            "Stop",
            self.Stop,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.StopRequest,
                jogger_dot_v1_dot_jobs__pb2.JobStatus,
            )
        )
        service_obj.add_method(
            "Status",
            self.Status,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.StatusRequest,
                jogger_dot_v1_dot_jobs__pb2.JobStatus,
            )
        )
        service_obj.add_method(
            "Output",
            self.Output,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_STREAM,
                jogger_dot_v1_dot_jobs__pb2.OutputRequest,
                jogger_dot_v1_dot_jobs__pb2.OutputChunk,
            )
        )
        service_obj.add_method(
            "List",
            self.List,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.ListRequest,
                jogger_dot_v1_dot_jobs__pb2.ListResponse,
            )
        )
        service_obj.add_method(
            "Write",
            self.Write,
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_UNARY,
                jogger_dot_v1_dot_jobs__pb2.WriteRequest,
                jogger_dot_v1_dot_jobs__pb2.WriteResponse,
            )
        )
        return service_obj


class JobsStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "jogger.v1.Jobs",
            channel
        )
        self.Start = self._client.get_method_stub(
            "Start",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.StartRequest,
                jogger_dot_v1_dot_jobs__pb2.JobStatus,
            )
        )
        self.Stop = self._client.get_method_stub(
            "Stop",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.StopRequest,
                jogger_dot_v1_dot_jobs__pb2.JobStatus,
            )
        )
        self.Status = self._client.get_method_stub(
            "Status",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.StatusRequest,
                jogger_dot_v1_dot_jobs__pb2.JobStatus,
            )
        )
        self.Output = self._client.get_method_stub(
            "Output",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_STREAM,
                jogger_dot_v1_dot_jobs__pb2.OutputRequest,
                jogger_dot_v1_dot_jobs__pb2.OutputChunk,
            )
        )
        self.List = self._client.get_method_stub(
            "List",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                jogger_dot_v1_dot_jobs__pb2.ListRequest,
                jogger_dot_v1_dot_jobs__pb2.ListResponse,
            )
        )
        self.Write = self._client.get_method_stub(
            "Write",
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_UNARY,
                jogger_dot_v1_dot_jobs__pb2.WriteRequest,
                jogger_dot_v1_dot_jobs__pb2.WriteResponse,
            )
        )