"""DSQL Local's endpoints in a process of their own (``own_process=True``).

The relays are Python threads: in the process of a test suite they share its
GIL with the tests. With ``own_process``, `DsqlLocal` keeps the backend, the
certificates and the controls, and a child process (``python -c`` calling
`main` here) runs the endpoints: TLS, tokens, relays. The parent
speaks to it over the child's stdin and stdout, one JSON line per request and
one per answer: the settings first (the key pair among them, which is never
written anywhere else), then each control (faults, latency, outages) as a call
on one endpoint. `RemoteEndpoint` stands for an `Endpoint` in the parent.

The child stops when its stdin closes, so it does not outlive its parent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._errors import DsqlLocalError

if TYPE_CHECKING:
    from ._launch import Settings

logger = logging.getLogger("dsql_local")

# The controls the parent may call, on an endpoint or on its faults.
_ENDPOINT_CALLS = frozenset(
    {
        "inject_conflicts",
        "inject_commit_drops",
        "drop_connections",
        "suspend",
        "resume",
        "cut",
        "set_latency",
        "listening",
    }
)
_FAULT_CALLS = frozenset({"refuse_connections", "server_unavailable"})
_START_TIMEOUT = 60.0


class EndpointProcess:
    """The child process running the endpoints, and the pipe to it."""

    def __init__(self) -> None:
        """Start the child: it imports what it needs while the backend starts."""
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {
            **os.environ,
            # The same package as this one, wherever it was imported from.
            "PYTHONPATH": package_root + (os.pathsep + path if path else ""),
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from dsql_local._process import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            # Ctrl-C reaches the parent, which stops the child in order.
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self.ports: dict[str, int] = {}

    def start(self, settings: Settings) -> None:
        """Have the child start the endpoints `settings` describe."""
        answer = self._ask({"settings": dict(settings)}, _START_TIMEOUT)
        self.ports = {region: int(port) for region, port in answer.items()}

    def _ask(self, request: Mapping[str, Any], timeout: float | None = None) -> Any:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        with self._lock:
            try:
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
            except (OSError, ValueError):
                raise DsqlLocalError(
                    "DSQL Local's endpoint process has ended: start DsqlLocal again"
                ) from None
            line = _read_line(stdout, timeout)
        if not line:
            raise DsqlLocalError(
                "DSQL Local's endpoint process ended without an answer (see its"
                " log on stderr); start DsqlLocal again"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise DsqlLocalError(answer["error"])
        return answer.get("result")

    def call(self, region: str, name: str, *args: Any) -> Any:
        """Call the control `name` of `region`'s endpoint in the child."""
        return self._ask({"region": region, "call": name, "args": list(args)})

    def stop(self) -> None:
        """Close every connection and end the child (it stops its endpoints)."""
        proc = self._proc
        if proc.returncode is not None:
            return  # stopped already
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _read_line(stream: IO[str], timeout: float | None) -> str:
    """A line from `stream`, or "" if none comes within `timeout` seconds."""
    if timeout is None:
        return stream.readline()
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(stream.readline()))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    return found[0] if found else ""


class RemoteFaults:
    """The faults of an endpoint in the child process."""

    def __init__(self, process: EndpointProcess, region: str) -> None:
        self._process = process
        self._region = region

    def refuse_connections(
        self, reason: str, count: int | None, seconds: float | None
    ) -> None:
        self._process.call(
            self._region, "faults.refuse_connections", reason, count, seconds
        )

    def server_unavailable(
        self,
        statements: int,
        commits: int,
        commit_fraction: float,
        committed: bool | None,
    ) -> None:
        self._process.call(
            self._region,
            "faults.server_unavailable",
            statements,
            commits,
            commit_fraction,
            committed,
        )


class RemoteEndpoint:
    """An `Endpoint` in the child process, as `DsqlLocal` uses one."""

    def __init__(
        self, process: EndpointProcess, region: str, latency: float, *, owner: bool
    ) -> None:
        self._process = process
        self._region = region
        self._latency = latency
        self._owner = owner  # the first stops the process
        self.port = process.ports[region]
        self.faults = RemoteFaults(process, region)

    @property
    def latency(self) -> float:
        """Seconds added to every client round trip (as last set)."""
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._process.call(self._region, "set_latency", value)
        self._latency = value

    @property
    def listening(self) -> bool:
        return bool(self._process.call(self._region, "listening"))

    def inject_conflicts(self, count: int, code: str) -> None:
        self._process.call(self._region, "inject_conflicts", count, code)

    def inject_commit_drops(self, count: int) -> None:
        self._process.call(self._region, "inject_commit_drops", count)

    def drop_connections(self) -> None:
        self._process.call(self._region, "drop_connections")

    def suspend(self) -> None:
        self._process.call(self._region, "suspend")

    def resume(self) -> None:
        self._process.call(self._region, "resume")

    def cut(self, seconds: float) -> None:
        self._process.call(self._region, "cut", seconds)

    def stop(self) -> None:
        if self._owner:
            self._process.stop()


# -- the child --------------------------------------------------------------


def _serve(settings: Settings) -> None:
    """Run the endpoints `settings` describe; answer the parent's calls."""
    # Imported here: it imports this module (already loaded by `main`).
    from ._launch import load_policy, start_here  # noqa: PLC0415

    endpoints = start_here(settings, load_policy(settings["strict"]))
    try:
        _answer({"result": {r: e.port for r, e in endpoints.items()}})
        for line in sys.stdin:
            request = json.loads(line)
            try:
                result = _call(endpoints[request["region"]], request)
            except DsqlLocalError as exc:  # a control's refusal, for the parent
                _answer({"error": str(exc)})
            except Exception as exc:
                logger.exception("DSQL Local's endpoint process failed a control")
                _answer({"error": f"{type(exc).__name__}: {exc}"})
            else:
                _answer({"result": result})
    finally:
        for endpoint in endpoints.values():
            endpoint.stop()


def _call(endpoint: Any, request: Mapping[str, Any]) -> Any:
    name: str = request["call"]
    args = request["args"]
    if name.startswith("faults."):
        name = name.removeprefix("faults.")
        if name not in _FAULT_CALLS:
            raise ValueError(f"no such control: {name}")
        return getattr(endpoint.faults, name)(*args)
    if name not in _ENDPOINT_CALLS:
        raise ValueError(f"no such control: {name}")
    if name == "set_latency":
        endpoint.latency = args[0]
        return None
    if name == "listening":
        return endpoint.listening
    return getattr(endpoint, name)(*args)


# Where the answers go: stdout as it was at the start; what else would be
# written to stdout goes to stderr, so that it cannot garble an answer.
_answers: list[IO[str]] = []


def _answer(answer: Mapping[str, Any]) -> None:
    _answers[0].write(json.dumps(answer) + "\n")
    _answers[0].flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent says when
    _answers.append(os.fdopen(os.dup(1), "w"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s (endpoint process): %(message)s",
    )
    # What the endpoints need, loaded while the parent starts the backend.
    from . import _certs, _endpoint, _launch, _sigv4  # noqa: F401, PLC0415

    with contextlib.suppress(ImportError):
        from . import strict  # noqa: F401, PLC0415
    line = sys.stdin.readline()
    if not line:
        return
    try:
        _serve(json.loads(line)["settings"])
    except Exception as exc:
        _answer({"error": f"DSQL Local's endpoint process failed: {exc}"})
        raise
