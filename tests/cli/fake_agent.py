"""A minimal WatchLocks client standing in for the node agent in lockctl's tests.

It is a fake for what is not under test (the real agent lives in `lockd.agent`): it says
Hello with an empty epoch, reads the snapshot and whatever follows, and after each
message acknowledges the highest revision it has seen as SYNCED — until told to stop
acking, which is how a test makes an agent that never confirms a new lock.

It uses grpc's synchronous API on a background thread, so a test can run lockctl as a
subprocess while the fake stays connected.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc

from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import watch_service_pb2 as pb
from lockd.v1 import watch_service_pb2_grpc as watch_grpc


class FakeAgent:
    def __init__(self, address: str, agent_id: str) -> None:
        self.address = address
        self.agent_id = agent_id
        self.epoch = ""
        self.applied = 0
        self.acking = True
        self.synced = threading.Event()
        self.error: grpc.RpcError | None = None
        self._requests: queue.Queue[pb.WatchLocksRequest | None] = queue.Queue()
        self._channel = grpc.insecure_channel(address)
        self._call: Iterator[pb.WatchLocksResponse] | None = None
        self._thread = threading.Thread(target=self._read, name=f"fake-agent-{agent_id}")

    def start(self, timeout: float = 10.0) -> FakeAgent:
        """Connect, and return once the snapshot has been applied and acknowledged."""
        hello = pb.WatchHello(agent_id=self.agent_id, epoch="", applied_revision=0)
        self._requests.put(pb.WatchLocksRequest(hello=hello))
        stub = watch_grpc.WatchServiceStub(self._channel)
        self._call = stub.WatchLocks(iter(self._requests.get, None))
        self._thread.start()
        if not self.synced.wait(timeout):
            raise TimeoutError(f"{self.agent_id}: no snapshot within {timeout}s ({self.error})")
        return self

    def stop_acking(self) -> None:
        self.acking = False

    def close(self) -> None:
        self._requests.put(None)
        if isinstance(self._call, grpc.Future):
            self._call.cancel()
        if self._thread.is_alive():
            self._thread.join(10)
        self._channel.close()

    def _read(self) -> None:
        assert self._call is not None
        try:
            for response in self._call:
                self._apply(response)
                if self.acking:
                    self._ack()
                if response.WhichOneof("message") == "snapshot_end":
                    self.synced.set()
                if response.WhichOneof("message") == "reset":
                    return
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                self.error = error

    def _apply(self, response: pb.WatchLocksResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "snapshot_end":
            self.epoch = response.snapshot_end.epoch
            self.applied = response.snapshot_end.revision
        elif kind == "events":
            self.applied = max(self.applied, response.events.to_revision)
        elif kind == "heartbeat" and response.heartbeat.epoch == self.epoch:
            self.applied = max(self.applied, response.heartbeat.revision)

    def _ack(self) -> None:
        ack = pb.WatchAck(
            epoch=self.epoch,
            applied_revision=self.applied,
            state=cluster_pb.AGENT_SYNC_STATE_SYNCED,
        )
        self._requests.put(pb.WatchLocksRequest(ack=ack))
