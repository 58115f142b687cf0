"""The plain-HTTP endpoint of a lockd service: /metrics, /healthz and /readyz.

Prometheus scrapes /metrics; kubelet, Docker's HEALTHCHECK (`lockd health`) and load
balancers probe /healthz (liveness: the process and its event loop run) and /readyz
(readiness, `lockd.domain.readiness`), all without a client certificate: the gRPC
ports require mTLS. The probes answer 200 or 503 with one line of text.

Served from a thread (so a probe still answers while the event loop is busy: liveness
asks the loop's own heartbeat instead of relying on the thread answering).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from lockd.domain.addresses import join_host_port, parse_host_port
from lockd.domain.errors import ValidationError
from lockd.domain.readiness import Readiness

HealthCheck = Callable[[], Readiness]
PROBE_PATHS = ("/healthz", "/readyz")
_ALWAYS = Readiness(True, "ok")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds: no access log line for each."""


class MetricsEndpoint:
    """An HTTP server for one registry, plus the probes of the service it belongs to.

    `addr` is host:port (`[::1]:3081` for IPv6); port 0 binds any free port, read back
    from `port` after `start()`. Without `ready`/`live` the probes answer 200.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        addr: str,
        *,
        ready: HealthCheck | None = None,
        live: HealthCheck | None = None,
    ) -> None:
        try:
            address = parse_host_port(addr, allow_port_zero=True)
        except ValidationError:
            raise ValidationError(f'invalid metrics address "{addr}": want host:port') from None
        self._host = address.host
        self._requested_port = address.port
        self._metrics = make_wsgi_app(registry)
        self._checks = {"/readyz": ready, "/healthz": live}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{join_host_port(self._host, self.port)}/metrics"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in PROBE_PATHS:
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        check = self._checks[path]
        readiness = _ALWAYS if check is None else check()
        body = (readiness.detail + "\n").encode()
        start_response(
            "200 OK" if readiness.ready else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def start(self) -> None:
        """Bind and serve; OSError when the address cannot be bound."""
        if self._server is not None:
            return
        server_class = _Server6 if ":" in self._host else _Server
        server = make_server(
            self._host,
            self._requested_port,
            self._app,
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="lockd-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; a no-op when not started."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
