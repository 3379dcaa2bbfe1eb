"""A gRPC server for the bench: helloworld.Greeter/SayHello, unary, on raw
bytes (a generic handler: no generated stubs). grpcio's C core serves;
the handler runs in a thread pool, as typical Python services do."""
import sys
from concurrent import futures

import grpc


def say_hello(request, context):
    return b"hello " + request


server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "helloworld.Greeter", {"SayHello": grpc.unary_unary_rpc_method_handler(say_hello)}),))
server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
server.start()
server.wait_for_termination()
