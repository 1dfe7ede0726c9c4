#!/usr/bin/env python3
"""A gRPC model server and client for veer's end-to-end tests (tests/e2e/grpc.rs).

    model.py serve --port 0 --version v1 [--fail-code 14]
    model.py call --target 127.0.0.1:8080 --user u1 [--user u2 ...]
                  --method unary|stream [--count N]

`serve` prints `listening 127.0.0.1:PORT` once bound (port 0 picks a free one), so a
test waits on that line rather than sleeping. `call` makes `--count` calls for each
`--user`, all on one channel (one HTTP/2 connection, as a real client would), and
prints one JSON line per call: the versions received, the final status code and the
trailing metadata keys.

The stubs are built from model.proto at run time (grpc.protos_and_services, which
needs grpcio-tools), so nothing generated is committed.
"""

import argparse
import json
import os
import sys
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
protos, services = grpc.protos_and_services("model.proto")

# Replies on a server stream: more than one, so the test sees the body stream.
STREAM_LENGTH = 3
# Channel options: never through an http_proxy from the environment, since the
# test means to reach veer (or a backend) directly.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


def status_code(number):
    """The grpc.StatusCode whose number is `number`."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    raise SystemExit(f"no gRPC status code {number}")


class Model(services.ModelServicer):
    def __init__(self, version, fail_code):
        self.version = version
        self.fail_code = fail_code

    def _user(self, context):
        return dict(context.invocation_metadata()).get("x-user-id", "")

    def Predict(self, request, context):
        # Set before any abort, so an error answer carries it too.
        context.set_trailing_metadata([("x-model-version", self.version)])
        if self.fail_code is not None:
            context.abort(status_code(self.fail_code), f"{self.version} fails on purpose")
        return protos.Reply(version=self.version, index=0, user=self._user(context))

    def PredictStream(self, request, context):
        context.set_trailing_metadata([("x-model-version", self.version)])
        if self.fail_code is not None:
            context.abort(status_code(self.fail_code), f"{self.version} fails on purpose")
        user = self._user(context)
        for i in range(STREAM_LENGTH):
            yield protos.Reply(version=self.version, index=i, user=user)


def serve(args):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    services.add_ModelServicer_to_server(Model(args.version, args.fail_code), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    if port == 0:
        raise SystemExit(f"cannot bind 127.0.0.1:{args.port}")
    server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def one_call(stub, args, user, n):
    """Makes `user`'s call number `n`; returns what the test checks, as a dict."""
    metadata = [("x-user-id", user)]
    request = protos.Request(input=f"{user}-{n}")
    replies, code, details, trailers = [], grpc.StatusCode.OK, "", ()
    if args.method == "unary":
        try:
            reply, call = stub.Predict.with_call(
                request, metadata=metadata, timeout=args.timeout
            )
            replies.append(reply)
            trailers = call.trailing_metadata()
        except grpc.RpcError as e:
            code, details, trailers = e.code(), e.details(), e.trailing_metadata()
    else:
        call = stub.PredictStream(request, metadata=metadata, timeout=args.timeout)
        try:
            for reply in call:
                replies.append(reply)
        except grpc.RpcError:
            pass
        code, details, trailers = call.code(), call.details(), call.trailing_metadata()
    return {
        "user": user,
        "call": n,
        "code": code.value[0],
        "status": code.name,
        "details": details or "",
        "versions": [r.version for r in replies],
        "seen_users": [r.user for r in replies],
        "trailers": sorted({k for k, _ in (trailers or ())}),
        "trailer_version": dict(trailers or ()).get("x-model-version"),
    }


def call(args):
    with grpc.insecure_channel(args.target, options=CHANNEL_OPTIONS) as channel:
        stub = services.ModelStub(channel)
        for user in args.user:
            for n in range(args.count):
                print(json.dumps(one_call(stub, args, user, n)), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    s = modes.add_parser("serve", help="run an insecure model server on loopback")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--version", required=True, help="the name every reply carries")
    s.add_argument("--fail-code", type=int, help="abort every call with this status")
    c = modes.add_parser("call", help="call a model server, one JSON line per call")
    c.add_argument("--target", required=True, help="HOST:PORT")
    c.add_argument(
        "--user", required=True, action="append", help="sent as x-user-id metadata; repeatable"
    )
    c.add_argument("--method", choices=["unary", "stream"], default="unary")
    c.add_argument("--count", type=int, default=1, help="calls per user")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds, per call")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args)
    else:
        call(args)


if __name__ == "__main__":
    main()
