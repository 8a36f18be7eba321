"""`agency_lib.server.agent_server`: ``langgraph dev`` started and stopped from Python.

It serves the agency end to end; it leaves no process, port or thread behind, also when the
body of the ``with`` raises; its readiness wait has a deadline and reports the server's log;
bad input gets an error that quotes the server's own message.

Each server start costs about 2 s of CPU (and notebook 10 starts one for its sections), so
the main suite starts only one that its deadline stops at once. The others, marked ``slow``,
start one server each: they run when ``AGENCY_SLOW_TESTS=1`` is set (``make test-slow``,
which ``.ci/run`` runs after the main suite).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest
from langgraph_sdk import get_client

from agency_lib.server import GRAPHS, AgentServerError, agent_server, start_agent_server
from agency_lib.service import start_service


def gone(pid: int) -> bool:
    """True when no process of the group `pid` is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def port_free(port: int) -> bool:
    """True when nothing listens on `port` (connections the server closed may linger in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


async def run_the_agency(url: str) -> dict:
    client = get_client(url=url)
    thread = await client.threads.create()
    return await client.runs.wait(thread["thread_id"], "agency", input={"topic": "async python"})


@pytest.mark.slow
def test_serves_the_agency_end_to_end_and_leaves_nothing_behind_after_a_failing_body():
    threads_before = set(threading.enumerate())
    service = start_service(seed=1)
    try:
        with pytest.raises(ZeroDivisionError):
            with agent_server() as server:
                pid, port = server.pid, server.port
                assert server.url == f"http://127.0.0.1:{port}"
                assert server.start_seconds < 30
                out = asyncio.run(run_the_agency(server.url))
                assert out["approved"] is True, out
                assert {f["source"] for f in out["findings"]} == {"web", "kb", "api"}, out["findings"]
                assert out["article"].startswith("# Async Python"), out["article"]
                stats = service.stats()
                assert stats.ok == 6, f"the served agency made 3 web + 3 api requests: {stats}"
                assert service.chat_stats().ok == 2, "the Writer and the Editor asked the local chat model"
                raise ZeroDivisionError("the body fails: the server must stop all the same")
        assert not server.running and gone(pid), "the server's process group outlived the with block"
        assert port_free(port), f"port {port} is still taken after the server stopped"
    finally:
        service.stop()
    assert not server.workdir.exists(), "the server's temporary folder was left behind"
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left behind: {left}"


def test_the_readiness_wait_has_a_deadline_and_reports_the_servers_log():
    with pytest.raises(AgentServerError, match=r"did not answer .*/ok within 0.3 s(.|\n)*the server's log") as err:
        with agent_server(timeout=0.3):
            pass
    assert "--- the server's log, last lines ---" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"port": 0}, ValueError, "port must be an int from 1 to 65535"),
        ({"port": "8123"}, ValueError, "port must be an int"),
        ({"n_jobs_per_worker": 0}, ValueError, "n_jobs_per_worker must be an int ≥ 1"),
        ({"timeout": 0}, ValueError, "timeout is seconds"),
        ({"graphs": {"agency": 3}}, TypeError, "graphs is a list of graph names, or a dict"),
        ({"graphs": "nap"}, TypeError, "graphs is a list of graph names"),
        (
            {"graphs": ["nap", "napp"]},
            ValueError,
            "no graph named 'napp': langgraph.json names agency, nap, blocking, busy",
        ),
        ({"graphs": GRAPHS, "config": "langgraph.json"}, TypeError, "a dict of graphs or config=, not both"),
        ({"config": "no-such.json"}, FileNotFoundError, "no such file"),
        ({"search_url": "127.0.0.1:80"}, ValueError, "search_url is the search service's base URL"),
        ({"env": {"N": 1}}, TypeError, "env must map names to strings"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(kwargs, error, message):
    with pytest.raises(error, match=message):
        with agent_server(**kwargs):
            pass


@pytest.mark.slow
def test_a_module_that_fails_to_import_quotes_the_servers_message(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_anywhere\n")
    with pytest.raises(AgentServerError, match=r"Graph 'broken' failed to load: ModuleNotFoundError"):
        with agent_server({"broken": f"{broken}:graph"}):
            pass


@pytest.mark.slow
def test_an_unknown_graph_variable_quotes_the_servers_message():
    spec = GRAPHS["agency"].replace(":agency", ":no_such_graph")
    with pytest.raises(AgentServerError, match=r"Graph 'agency' failed to load: .*no_such_graph"):
        with agent_server({"agency": spec}):
            pass


@pytest.mark.slow
def test_a_port_in_use_is_an_error_not_a_quiet_move_to_another_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            AgentServerError, match=rf"port {port} is taken, and the server said: 'Port {port} is already in use"
        ):
            with agent_server(["nap"], port=port):
                pass


@pytest.mark.slow
def test_an_unknown_graph_name_in_a_run_gets_the_servers_422_naming_the_graphs_it_has():
    async def ask() -> None:
        with agent_server(["nap"]) as server:
            await get_client(url=server.url).runs.wait(None, "no-such-graph", input={})

    with pytest.raises(Exception, match=r"422(.|\n)*Invalid assistant: 'no-such-graph'(.|\n)*registered graphs: nap"):
        asyncio.run(ask())


@pytest.mark.slow
def test_an_interrupted_body_stops_the_server_too():
    with pytest.raises(KeyboardInterrupt):
        with agent_server(["nap"]) as server:
            raise KeyboardInterrupt
    assert gone(server.pid), "the server outlived an interrupted with block"


@pytest.mark.slow
def test_serve_agency_prints_the_url_and_stops_both_servers_on_sigterm():
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "agency_lib", "serve-agency"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        first = proc.stdout.readline()
        assert "Agent Server on http://127.0.0.1:" in first, first
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no langgraph dev child process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        time.sleep(0.2)
        assert all(gone(int(pid)) for pid in children), "langgraph dev outlived `serve-agency`"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()


def test_start_agent_server_refuses_bad_arguments_before_stopping_anything():
    with pytest.raises(ValueError, match="n_jobs_per_worker must be an int ≥ 1"):
        start_agent_server(["nap"], n_jobs_per_worker=0)


@pytest.mark.slow
def test_start_agent_server_again_stops_the_previous_one_and_stop_is_idempotent():
    first = start_agent_server(["nap"])
    second = start_agent_server(["nap"], n_jobs_per_worker=2)
    try:
        assert gone(first.pid) and port_free(first.port), "a second start left the first server running"
        assert second.running and second.n_jobs_per_worker == 2
    finally:
        second.stop()
        second.stop()  # idempotent: no error, nothing to stop
    assert gone(second.pid) and port_free(second.port), "stop() left a process or the port behind"
    assert not second.workdir.exists(), "the server's temporary folder was left behind"
