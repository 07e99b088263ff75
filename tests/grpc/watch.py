"""Watches a prefix through coffer's gRPC Watch and prints each event as one
JSON line (after a line "ready" once the server has accepted the watch), for
the Rust cluster tests. Usage: watch.py ADDRESS TOKEN PREFIX"""

import json
import sys

import grpc

from coffer_grpc import Coffer


def main():
    address, token, prefix = sys.argv[1:4]
    client = Coffer(address, token=token)
    stream = client.watch(prefix=prefix)
    try:
        stream.initial_metadata()
        print("ready", flush=True)
        for message in stream:
            print(json.dumps(client.event(message)), flush=True)
    except grpc.RpcError as error:
        print(json.dumps({"error": error.code().name, "details": error.details()}), flush=True)


if __name__ == "__main__":
    main()
