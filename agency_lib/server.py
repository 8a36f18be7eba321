"""LangGraph's own Agent Server (``langgraph dev``, in memory), started and stopped from Python.

``with agent_server() as server:`` runs ``langgraph dev`` as a subprocess on 127.0.0.1 and a free
port, offline (no browser, no analytics, no version check, no reload unless asked), serving the
graphs that ``langgraph.json`` names (by default `agency_lib.served_agency`'s). It passes the local
search service's URL to the served graphs (``AGENCY_SEARCH_URL``, and the Writer and the Editor's
chat model at the same service), waits until the server answers ``GET /ok`` within a deadline,
and on exit stops the server's whole process group: also when the body raises, or is
interrupted, and at interpreter exit. The course drives it with ``langgraph_sdk.get_client``.

Bad input gets an error that quotes the server's own message (`AgentServerError`): a graph that
fails to import, a variable the module does not have, a port already in use (``langgraph dev``
would silently move to another port: here that is an error, since the caller asked for that one).

This module is scaffolding; the lesson (threads, runs, job slots) is in notebook 10.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "agent_server",
    "start_agent_server",
    "AgentServer",
    "AgentServerError",
    "GRAPHS",
    "START_TIMEOUT",
    "free_port",
    "installed_source_line",
]

ROOT = Path(__file__).resolve().parent.parent
_HERE = Path(__file__).resolve().parent
#: The graphs served by default: the repository's ``langgraph.json`` names the same ones.
GRAPHS = {
    "agency": f"{_HERE / 'served_agency.py'}:agency",
    **{name: f"{_HERE / 'served_naps.py'}:{name}" for name in ("nap", "blocking", "busy")},
}
#: Seconds to wait for the server to answer before giving up (it starts in about 2 s).
START_TIMEOUT = 30.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_live: dict[int, subprocess.Popen] = {}
_started: AgentServer | None = None  # the one start_agent_server() made last


class AgentServerError(RuntimeError):
    """The Agent Server did not start (or stopped): the message quotes the server's own words."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def installed_source_line(path: str, needle: str) -> str:
    """The first line of an installed package's file that contains `needle`, e.g. a server default.

    ``installed_source_line("langgraph_api/config/__init__.py", "N_JOBS_PER_WORKER =")``. The file
    is read, not imported (the server's config module reads its environment when imported).
    """
    for base in sys.path:
        file = Path(base or ".") / path
        if file.is_file():
            for line in file.read_text(errors="replace").splitlines():
                if needle in line:
                    return line.strip()
            raise LookupError(f"{path} has no line with {needle!r}: another version of the package?")
    raise FileNotFoundError(f"no installed file {path!r}: is langgraph-cli[inmem] installed?")


def _graphs_of(config: Path) -> dict[str, str]:
    """The graphs a ``langgraph.json`` names, their file paths made absolute."""
    spec = json.loads(config.read_text())
    graphs = spec.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise ValueError(
            f"{config.name} names no graphs: it needs a 'graphs' object, e.g. {{'agency': 'file.py:var'}}."
        )
    return {name: _absolute(path, config.parent) for name, path in graphs.items()}


def _absolute(path: str, base: Path) -> str:
    file, sep, var = str(path).rpartition(":")
    if not sep or not file.endswith(".py"):
        return str(path)  # a module path (package.module:var): the server imports it by name
    return f"{(base / file).resolve()}:{var}"


class AgentServer:
    """A running ``langgraph dev``: its ``url``, ``port``, ``pid``, ``start_seconds`` and its log."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, workdir: Path, n_jobs_per_worker: int):
        self.proc, self.port, self.log_path, self.workdir = proc, port, log_path, workdir
        self.n_jobs_per_worker = n_jobs_per_worker
        self.url = f"http://127.0.0.1:{port}"
        self.start_seconds = float("nan")
        self._final_log: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """The server's output so far (stdout and stderr), without colour codes; kept after it stopped."""
        if self._final_log is not None:
            return self._final_log
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL after `timeout` s); idempotent."""
        _kill_group(self.proc, timeout)
        if self._final_log is None:
            self._final_log = self.log()  # kept: the log can be read after the server stopped
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running else f"stopped ({self.proc.returncode})"
        return f"<AgentServer {self.url} {state}, {self.n_jobs_per_worker} job(s) per worker>"


def _kill_group(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever is left of the group (the server's children), and the server if it ignored SIGTERM
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    _live.pop(proc.pid, None)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live.values()):
        _kill_group(proc, 2.0)


def _server_message(log: str) -> str | None:
    """The line of the server's log that says why it did not start, if there is one."""
    patterns = [
        r"Port \d+ is already in use[^\n]*",
        r"Graph '[^']*' failed to load: [^\n\[]*",
        r"^Error: [^\n]*",
        r"^\w*Error: [^\n]*",
    ]
    for pattern in patterns:
        m = re.search(pattern, log, re.MULTILINE)
        if m:
            return m.group(0).strip()
    return None


def _check_env(env: object) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise TypeError(f"env must map names to strings, e.g. {{'MY_KNOB': '1'}}, not {env!r}.")
    return dict(env)


def _search_service(search_url: str | None) -> tuple[str | None, int | None]:
    """The search service's base URL and capacity: the URL given (capacity unknown), else this process's service."""
    if search_url is not None:
        if not isinstance(search_url, str) or not search_url.startswith("http"):
            raise ValueError(f"search_url is the search service's base URL (service.url), not {search_url!r}.")
        return search_url.rstrip("/"), None
    from .service import current_service

    try:
        service = current_service()
        return service.url, service.capacity
    except RuntimeError:
        return None, None  # the served agency then says clearly that it has no search service


def start_agent_server(*args, **kwargs) -> AgentServer:
    """Start ``langgraph dev`` (the arguments of `agent_server`) and return it running; ``.stop()`` ends it.

    For a server that lives across the cells of a section: start it in a setup cell, stop it
    at the section's end. Run again (the setup cell re-run, or Run All twice in one kernel), it
    first stops the server it started before, so a kernel never holds two of them; and whatever
    is still running stops at interpreter exit. Bad arguments raise before the old one stops.
    """
    global _started
    launch = _launch(*args, **kwargs)
    next(launch)  # validates the arguments; starts nothing yet
    if _started is not None:
        _started.stop()
        _started = None
    server = next(launch)
    _started = server
    return server


@contextmanager
def agent_server(*args, **kwargs) -> Iterator[AgentServer]:
    """Run ``langgraph dev`` for the body of a ``with``; yields the running `AgentServer` (see `_launch`)."""
    launch = _launch(*args, **kwargs)
    next(launch)  # validates the arguments
    server = next(launch)
    try:
        yield server
    finally:
        server.stop()


def _launch(
    graphs: Mapping[str, str] | Sequence[str] | None = None,
    *,
    config: str | Path | None = None,
    search_url: str | None = None,
    port: int | None = None,
    n_jobs_per_worker: int | None = None,
    allow_blocking: bool = False,
    reload: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[AgentServer | None]:
    """The first ``next()`` validates the arguments (yields None); the second starts ``langgraph dev``
    and yields it running (the arguments are `agent_server`'s and `start_agent_server`'s).

    * ``graphs``: the names of the graphs to serve, of those ``config`` names (the repository's
      ``langgraph.json``, else `GRAPHS`), e.g. ``["nap"]``: fewer graphs start faster (the
      agency's imports take a second); or ``{name: "path/to/file.py:variable"}``. Default: all.
    * ``search_url``: where the served graphs find the search service; default: the one this
      process started (``start_service()``), if any, and then its capacity as well, which the served
      agency's limiter takes (``AGENCY_SEARCH_CAPACITY``; 4 when the service has none).
    * ``port``: default a free one. ``n_jobs_per_worker``: ``langgraph dev``'s own default is 1.
    * ``allow_blocking``: switch the server's blocking-call detector off (``--allow-blocking``).
    * ``timeout``: seconds to wait for the server to answer.
    """
    if graphs is None or (isinstance(graphs, Sequence) and not isinstance(graphs, str)):
        path = Path(config) if config is not None else ROOT / "langgraph.json"
        if config is not None and not path.is_file():
            raise FileNotFoundError(f"config: no such file {str(path)!r} (a langgraph.json).")
        known = _graphs_of(path) if path.is_file() else dict(GRAPHS)
        names = list(known) if graphs is None else list(graphs)
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ValueError(
                f"no graph named {', '.join(map(repr, unknown)) or '(none)'}: {path.name} names {', '.join(known)}."
            )
        graphs = {n: known[n] for n in names}
    elif config is not None:
        raise TypeError("give a dict of graphs or config=, not both.")
    if not isinstance(graphs, Mapping) or not graphs or not all(isinstance(v, str) for v in graphs.values()):
        raise TypeError(f"graphs is a list of graph names, or a dict of names to 'file.py:variable', not {graphs!r}.")
    graphs = {name: _absolute(spec, Path.cwd()) for name, spec in graphs.items()}
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise ValueError(f"port must be an int from 1 to 65535 (or None for a free one), not {port!r}.")
    if n_jobs_per_worker is not None and (
        not isinstance(n_jobs_per_worker, int) or isinstance(n_jobs_per_worker, bool) or n_jobs_per_worker < 1
    ):
        raise ValueError(
            f"n_jobs_per_worker must be an int ≥ 1 (or None for langgraph dev's default, 1), not {n_jobs_per_worker!r}."
        )
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout is seconds to wait for the server (> 0), not {timeout!r}.")
    extra_env = _check_env(env)
    url, capacity = _search_service(search_url)
    yield None  # the arguments are good: the next next() starts the server

    workdir = Path(tempfile.mkdtemp(prefix="agency-server-"))
    config_path = workdir / "langgraph.json"
    config_path.write_text(json.dumps({"dependencies": [str(ROOT)], "graphs": graphs, "disable_persistence": True}))
    chosen = port if port is not None else free_port()
    cmd = [sys.executable, "-m", "langgraph_cli", "dev", "--config", str(config_path)]
    cmd += ["--host", "127.0.0.1", "--port", str(chosen), "--no-browser"]
    cmd += [] if reload else ["--no-reload"]
    cmd += ["--n-jobs-per-worker", str(n_jobs_per_worker)] if n_jobs_per_worker is not None else []
    cmd += ["--allow-blocking"] if allow_blocking else []
    child_env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if url is not None:
        from .agency import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL
        from .chat import LOCAL_MODEL
        from .served_agency import CAPACITY_ENV, SEARCH_URL_ENV

        child_env[SEARCH_URL_ENV] = url
        if capacity is not None:  # the served agency's limiter holds what the service holds
            child_env[CAPACITY_ENV] = str(capacity)
        if not (os.environ.get(ENV_MODEL) or os.environ.get(ENV_BASE_URL)):  # else: the learner's provider
            child_env.update({ENV_BASE_URL: f"{url}/v1", ENV_MODEL: LOCAL_MODEL, ENV_API_KEY: "local"})
    child_env.update(extra_env)

    log_path = workdir / "server.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=child_env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _live[proc.pid] = proc
    server = AgentServer(proc, chosen, log_path, workdir, n_jobs_per_worker or 1)
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.perf_counter() - t0
    yield server


def _wait_ready(server: AgentServer, timeout: float) -> None:
    """Wait for the server's banner (it names the port it really took), then for ``GET /ok``."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    bound = False
    while True:
        log = server.log()
        if not bound:
            banner = re.search(r"API: http://127\.0\.0\.1:(\d+)", log)
            if banner and int(banner.group(1)) != server.port:
                said = _server_message(log) or banner.group(0)
                raise AgentServerError(
                    f"port {server.port} is taken, and the server said: {said!r} "
                    "Pass another port, or none for a free one."
                )
            bound = banner is not None
        if not server.running:
            said = _server_message(log)
            raise AgentServerError(
                f"the Agent Server stopped while starting (exit code {server.proc.returncode})"
                + (f"; it said: {said!r}" if said else "")
                + f"\n--- the server's log, last lines ---\n{server.log_tail()}"
            )
        if bound:
            try:
                with opener.open(f"{server.url}/ok", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
        if time.monotonic() > deadline:
            raise AgentServerError(
                f"the Agent Server did not answer {server.url}/ok within {timeout:g} s (a busy machine? "
                f"try timeout=60)\n--- the server's log, last lines ---\n{server.log_tail()}"
            )
        time.sleep(0.05)
