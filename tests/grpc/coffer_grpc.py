"""A gRPC client for coffer built at run time from the server's reflection
service: no generated code and no .proto file on this side, so it exercises
what any grpcio program would see (grpcio, grpcio-reflection, protobuf).
"""

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "coffer.v1.Coffer"


def target_of(address):
    """`http://127.0.0.1:PORT` -> `127.0.0.1:PORT`; `unix://...` stays."""
    if address.startswith("http://"):
        return address[len("http://"):]
    return address


class Coffer:
    def __init__(self, address, token=None):
        target = target_of(address)
        # gRPC C-core sends a Unix socket's path as the :authority, which
        # HTTP/2 servers built on h2 refuse as malformed; name the host instead.
        options = [("grpc.default_authority", "localhost")] if target.startswith("unix:") else []
        self.channel = grpc.insecure_channel(target, options=options)
        self.reflection = ProtoReflectionDescriptorDatabase(self.channel)
        self.pool = descriptor_pool.DescriptorPool(self.reflection)
        self.service = self.pool.FindServiceByName(SERVICE)
        self.token = token

    def services(self):
        return list(self.reflection.get_services())

    def _stub(self, name):
        method = self.service.methods_by_name[name]
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        path = "/%s/%s" % (SERVICE, name)
        make = self.channel.unary_stream if method.server_streaming else self.channel.unary_unary
        return make(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString), request

    def _metadata(self, token):
        token = self.token if token is None else token
        return [("x-vault-token", token)] if token else []

    def call(self, name, token=None, timeout=30, **fields):
        """Calls RPC `name` with `fields` (as JSON) and returns the response as a dict."""
        stub, request_class = self._stub(name)
        request = json_format.ParseDict(fields, request_class())
        response = stub(request, metadata=self._metadata(token), timeout=timeout)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def watch(self, token=None, timeout=None, **fields):
        """Starts Watch; returns the call (iterate it for dicts; cancel() to stop)."""
        stub, request_class = self._stub("Watch")
        request = json_format.ParseDict(fields, request_class())
        return stub(request, metadata=self._metadata(token), timeout=timeout)

    def event(self, message):
        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    def raw(self, path, payload, token=None):
        """Sends `payload` bytes as the request message of `path` (for bad input)."""
        stub = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        return stub(payload, metadata=self._metadata(token), timeout=30)

    def close(self):
        self.channel.close()
