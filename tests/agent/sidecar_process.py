"""A small real sidecar for the tests: `python -m tests.agent.sidecar_process SOCKET`.

It uses the public client library (`AgentClient`, one channel) and takes JSON-line
commands on stdin, answering each with one JSON line on stdout:

* `{"cmd": "open", "prefix": P, "count": N, "user": U, "roles": [...]}` registers N
  sessions `P-0 … P-(N-1)` of user U in one batch → `{"allowed": n, "denied": m}`;
* `{"cmd": "ended"}` → `{"ended": {session_id: [reason, lock, cause]}, "messages": k}`,
  where k counts the termination messages they came in (sessions ended by one agent
  message share one termination object);
* `{"cmd": "live"}` → `{"live": n}` (sessions the library holds registered).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

from lockd.client import AgentClient, Session, SessionMetadata, SessionProtocol, SessionRequest
from lockd.client.session_handle import SessionTermination
from lockd.domain.backoff import Backoff
from lockd.domain.identity import Identity


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


async def main(socket: str) -> None:
    sidecar = Sidecar(socket)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        reply = await sidecar.handle(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    await sidecar.agent.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
