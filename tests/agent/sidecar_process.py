"""A small real sidecar for the tests: `python -m tests.agent.sidecar_process SOCKET`.

It uses the public client library (`AgentClient`, one channel) and takes JSON-line
commands on stdin, answering each with one JSON line on stdout:

* `{"cmd": "open", "prefix": P, "count": N, "user": U, "roles": [...]}` registers N
  sessions `P-0 … P-(N-1)` of user U in one batch → `{"allowed": n, "denied": m}`;
* `{"cmd": "ended"}` → `{"ended": {session_id: [reason, lock, cause]}, "messages": k}`,
  where k counts the termination messages they came in (sessions ended by one agent
  message share one termination object);
* `{"cmd": "live"}` → `{"live": n}` (sessions the library holds registered).

`python -m tests.agent.sidecar_process SOCKET --raw` is a sidecar that stops reading its
channel: raw gRPC, no library.

* `{"cmd": "hello"}` opens the channel → `{"channel": channel_id}` from the welcome;
* `{"cmd": "open", "prefix": P, "count": N, "user": U}` registers and reads the answer
  → `{"allowed": n}`;
* `{"cmd": "flood"}` sends one RegisterSessions of 1,000 registrations whose 900-byte
  ids are invalid (the answer is ~1 MB) and reads nothing → `{"sent": true}`, or
  `{"sent": false}` once the agent has ended the stream;
* `{"cmd": "drain"}` reads to the end → `{"read": frames, "code": status name,
  "details": text}`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from lockd.client import AgentClient, Session, SessionMetadata, SessionProtocol, SessionRequest
from lockd.client.session_handle import SessionTermination
from lockd.domain.backoff import Backoff
from lockd.domain.identity import Identity
from lockd.v1 import agent_service_pb2 as pb
from lockd.v1 import resources_pb2 as pb_resources


class Handler(Protocol):
    async def handle(self, command: dict[str, object]) -> dict[str, object]: ...

    async def close(self) -> None: ...


class Sidecar:
    def __init__(self, socket: str) -> None:
        self.agent = AgentClient.connect(
            socket, sidecar="test-sidecar", backoff=Backoff(base=0.05, cap=0.3)
        )
        self.sessions: list[Session] = []
        self.ended: dict[str, SessionTermination] = {}

    def _recorder(self, session_id: str) -> Callable[[SessionTermination], None]:
        def record(termination: SessionTermination) -> None:
            self.ended[session_id] = termination

        return record

    async def handle(self, command: dict[str, object]) -> dict[str, object]:
        name = command["cmd"]
        if name == "open":
            count = int(str(command["count"]))
            roles = command.get("roles") or []
            assert isinstance(roles, list)
            identity = Identity(user=str(command["user"]), roles=tuple(map(str, roles)))
            metadata = SessionMetadata(SessionProtocol.SSH, "192.0.2.1:2222", "node-1")
            requests = [
                SessionRequest(identity, metadata, f"{command['prefix']}-{index}")
                for index in range(count)
            ]
            sessions = await self.agent.open_sessions(requests)
            allowed = [session for session in sessions if session.decision.allowed]
            for session in allowed:
                session.on_terminated(self._recorder(session.session_id))
            self.sessions += allowed
            return {"allowed": len(allowed), "denied": len(sessions) - len(allowed)}
        if name == "ended":
            return {
                "ended": {sid: [t.reason, t.lock_name, t.cause] for sid, t in self.ended.items()},
                "messages": len({id(t) for t in self.ended.values()}),
            }
        if name == "live":
            return {"live": self.agent.sessions.live_sessions}
        raise ValueError(f"unknown command {name!r}")

    async def close(self) -> None:
        await self.agent.close()


class RawSidecar:
    """A SessionChannel driven frame by frame, which reads only when told to."""

    def __init__(self, socket: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix:{socket}")
        method: Any = self.channel.stream_stream(
            "/lockd.v1.AgentService/SessionChannel",
            request_serializer=pb.SidecarMessage.SerializeToString,
            response_deserializer=pb.AgentMessage.FromString,
        )
        self.call: Any = method()
        self.request_ids = 0
        flood = [pb.SessionRegistration(session_id=f"{i:0900d}") for i in range(1000)]
        self.flood = pb.SidecarMessage(register=pb.RegisterSessions(sessions=flood))

    async def handle(self, command: dict[str, object]) -> dict[str, object]:
        name = command["cmd"]
        if name == "hello":
            await self.call.write(pb.SidecarMessage(hello=pb.ChannelHello(sidecar="stalled")))
            welcome = await self.call.read()
            return {"channel": welcome.welcome.channel_id}
        if name == "open":
            self.request_ids += 1
            identity = pb_resources.Identity(user=str(command["user"]))
            sessions = [
                pb.SessionRegistration(session_id=f"{command['prefix']}-{i}", identity=identity)
                for i in range(int(str(command["count"])))
            ]
            register = pb.RegisterSessions(request_id=self.request_ids, sessions=sessions)
            await self.call.write(pb.SidecarMessage(register=register))
            answer = await self.call.read()
            allowed = [r for r in answer.registered.results if r.decision.allowed]
            return {"allowed": len(allowed)}
        if name == "flood":
            try:
                await self.call.write(self.flood)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return {"sent": False}
            return {"sent": True}
        if name == "drain":
            read = 0
            try:
                while await self.call.read() is not grpc.aio.EOF:
                    read += 1
            except grpc.aio.AioRpcError as error:
                return {"read": read, "code": error.code().name, "details": error.details()}
            return {"read": read, "code": "OK", "details": ""}
        raise ValueError(f"unknown command {name!r}")

    async def close(self) -> None:
        await self.channel.close()


async def main(socket: str, raw: bool) -> None:
    sidecar: Handler = RawSidecar(socket) if raw else Sidecar(socket)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        reply = await sidecar.handle(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await sidecar.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--raw" in sys.argv[2:]))
