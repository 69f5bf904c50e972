"""The container's install and start steps, run here as the image runs them (no Docker engine
runs on these machines): scripts/docker-entrypoint.sh configured by environment variables
alone against a real model upstream on loopback (readiness, metrics, the access log, and a
SIGTERM that lets a stream in flight finish), scripts/docker-install.sh into a scratch
environment from the built wheel, and the Dockerfile, compose file and langgraph.json checked
against the scripts and options they name."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from _loopback import free_port, serve
from specguard.server.echo_upstream import create_echo_upstream

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTRYPOINT = ROOT / "scripts" / "docker-entrypoint.sh"
INSTALL = ROOT / "scripts" / "docker-install.sh"
KEY = "sg-container-test-key"
ANSWER = "Bread needs flour, water, salt and yeast; knead, rise, shape and bake."


def _env(tmp: Path, upstream: str, **extra) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPECGUARD_")}
    return {**base, "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
            "SPECGUARD_THREADS": "1", "SPECGUARD_ENCODER_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "SPECGUARD_BACKEND": "openai:echo", "SPECGUARD_API_BASE": upstream + "/v1",
            "SPECGUARD_STORE": str(tmp / "specguard.db"), "SPECGUARD_API_KEY": KEY,
            "SPECGUARD_HOST": "127.0.0.1", "SPECGUARD_SHUTDOWN_GRACE_S": "20", **extra}


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(url + "/readyz", timeout=2)
            if r.status_code == 200:
                return r.json()
            assert r.json()["status"] in {"loading", "unavailable"}
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"not ready in {timeout} s:\n{log.read_text()[-3000:]}")


def test_entrypoint_serves_from_the_environment_and_finishes_streams_on_sigterm(tmp_path):
    slow = create_echo_upstream(answer=ANSWER, pieces=12, piece_delay_s=0.25)  # a ~3 s stream
    with serve(slow) as upstream:
        port = free_port()
        log = tmp_path / "server.log"
        # Chunked output protection: checked text streams while the model still writes.
        policy = tmp_path / "policy.yaml"
        policy.write_text("defaults: {stream_protection: chunked, stream_holdback_chars: 8}\n"
                          "tenants: {default: {}}\n")
        env = _env(tmp_path, upstream, SPECGUARD_PORT=str(port), SPECGUARD_POLICY=str(policy))
        # The container's start step, no arguments: everything comes from the environment.
        proc = subprocess.Popen(["sh", str(ENTRYPOINT)], cwd=tmp_path, env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            ready = _wait_ready(proc, url, log)
            assert ready["checks"] == {"model": "ok", "guard": "ok", "store": "ok"}
            assert ready["model"].endswith("echo")
            auth = {"authorization": f"Bearer {KEY}"}
            body = {"model": "specguard", "messages": [{"role": "user", "content": "How is bread made?"}]}
            plain = httpx.post(url + "/v1/chat/completions", json=body, headers=auth, timeout=60)
            assert plain.status_code == 200, plain.text
            assert httpx.post(url + "/v1/chat/completions", json=body, timeout=10).status_code == 401

            # A stream in flight when SIGTERM arrives runs to its end ([DONE]); the server
            # takes no new connection meanwhile and exits cleanly afterwards.
            events: list[str] = []
            started = threading.Event()

            def read_stream():
                with httpx.stream("POST", url + "/v1/chat/completions", headers=auth, timeout=60,
                                  json={**body, "stream": True}) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            events.append(line[6:])
                            started.set()

            reader = threading.Thread(target=read_stream)
            reader.start()
            assert started.wait(30), log.read_text()[-2000:]
            scrape = httpx.get(url + "/metrics", timeout=10).text
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.TransportError):
                httpx.get(url + "/healthz", timeout=2)
            reader.join(60)
            # uvicorn re-raises the signal once it has shut down cleanly.
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == ANSWER
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # The metrics scraped while the stream was in flight.
    assert re.search(r'specguard_requests_total\{method="POST",route="/v1/chat/completions",'
                     r'status="200"\} 1\.0', scrape), scrape
    assert re.search(r"^specguard_requests_in_flight 1\.0$", scrape, re.MULTILINE), scrape
    # One JSON access line per chat request on stdout, the stream's written when it ended.
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"ts"')]
    chats = [x for x in lines if x["route"] == "/v1/chat/completions"]
    assert [x["status"] for x in chats] == [200, 401, 200]
    assert chats[0]["report"]["action"] == chats[2]["report"]["action"] == "allowed"
    assert chats[2]["report"]["stream_protection"] and chats[2]["ms"] > 2000
    assert all(x["tenant"] == "default" for x in (chats[0], chats[2]))


def test_entrypoint_runs_other_commands_and_flags_win_over_the_environment(tmp_path):
    env = _env(tmp_path, "http://127.0.0.1:9", COLUMNS="400")
    out = subprocess.run(["sh", str(ENTRYPOINT), "serve", "--help"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "SPECGUARD_WORKERS" in out.stdout and "Run the guarded" in out.stdout
    assert {"SPECGUARD_BACKEND", "SPECGUARD_STORE", "SPECGUARD_WORKERS", "SPECGUARD_PORT",
            "SPECGUARD_OTEL_EXPORTER", "SPECGUARD_SHUTDOWN_GRACE_S", "SPECGUARD_ACCESS_LOG",
            "SPECGUARD_POLICY", "SPECGUARD_ROLES", "SPECGUARD_API_KEY"} <= _serve_envvars()
    # A flag wins: an unknown exporter given as a flag fails, though the environment says none.
    bad = subprocess.run(["sh", str(ENTRYPOINT), "--otel-exporter", "jaeger"],
                         env={**env, "SPECGUARD_OTEL_EXPORTER": "none",
                              "SPECGUARD_PORT": str(free_port())},
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert bad.returncode != 0 and "Unknown trace exporter 'jaeger'" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_install_script_installs_the_wheel_the_image_serves(tmp_path):
    """The image's install step from the built wheel into a scratch environment (dependencies
    from this environment: --no-deps --no-index, nothing downloaded), then its console script."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob("specguard-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "deps.pth").write_text(ours + "\n")  # after the scratch site: its specguard wins
    env = {**os.environ, "PYTHON": str(venv / "bin" / "python"),
           "SPECGUARD_PIP_ARGS": "--no-deps --no-index", "SPECGUARD_EXTRAS": "server,guard"}
    done = subprocess.run(["sh", str(INSTALL), str(wheel)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed with extras: server,guard" in done.stdout
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import specguard, specguard.specs as s; print(specguard.__file__); "
                            "print(s.__file__)"], capture_output=True, text=True, check=True)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout
    cli = subprocess.run([str(venv / "bin" / "specguard"), "serve", "--help"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "400"})
    assert cli.returncode == 0 and "SPECGUARD_WORKERS" in cli.stdout, cli.stdout + cli.stderr


def _serve_envvars() -> set[str]:
    """The environment variables `specguard serve` reads, from its options."""
    import typer
    from specguard.agents.cli import serve

    app = typer.Typer()
    app.command()(serve)
    command = typer.main.get_command(app)
    return {p.envvar for p in command.params if isinstance(p.envvar, str)}


def test_dockerfile_and_compose_use_the_tested_scripts_and_known_settings():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "sh /opt/specguard/docker-install.sh" in dockerfile
    assert 'ENTRYPOINT ["/opt/specguard/docker-entrypoint.sh"]' in dockerfile
    assert re.search(r"^USER specguard$", dockerfile, re.MULTILINE)  # never root
    assert "/readyz" in dockerfile and "-slim" in dockerfile
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in copied.split():
            assert (ROOT / path).exists(), path
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert set(compose["services"]) == {"specguard", "postgres", "vllm"}
    app = compose["services"]["specguard"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["environment"]["SPECGUARD_STORE"].startswith("postgresql+psycopg://")
    assert compose["services"]["vllm"]["profiles"] == ["vllm"]
    # Every SPECGUARD_* variable the compose file sets is one the server or its scripts read.
    scripts = ENTRYPOINT.read_text() + INSTALL.read_text()
    read = _serve_envvars()
    for var in app["environment"]:
        if var.startswith("SPECGUARD_"):
            assert var in read or var in scripts, f"{var} is read by nothing"
    for arg in app["build"]["args"]:
        assert f"ARG {arg}" in dockerfile


def test_langgraph_json_names_importable_graphs():
    config = json.loads((ROOT / "langgraph.json").read_text())
    import importlib

    from langgraph.pregel import Pregel

    for name, ref in config["graphs"].items():
        module, attr = ref.split(":")
        graph = getattr(importlib.import_module(module), attr)
        assert isinstance(graph, Pregel), name
        nodes = set(graph.get_graph().nodes)
        assert {"input_check", "generate", "output_check", "respond", "refuse"} <= nodes
    extras = re.search(r"\.\[(.+)\]", config["dependencies"][0]).group(1).split(",")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert all(re.search(rf"^{e} = \[", pyproject, re.MULTILINE) for e in extras)


def test_workers_share_the_port_and_the_store(tmp_path):
    """`--workers 2` (SPECGUARD_WORKERS): two server processes behind one port, each with its
    own models, one store (created once by the parent), one generated key for both and their
    metrics added up; SIGTERM stops them all."""
    with serve(create_echo_upstream(answer=ANSWER)) as upstream:
        port = free_port()
        log = tmp_path / "server.log"
        env = _env(tmp_path, upstream, SPECGUARD_PORT=str(port), SPECGUARD_WORKERS="2")
        del env["SPECGUARD_API_KEY"]  # one is generated and shared by the workers
        proc = subprocess.Popen(["sh", str(ENTRYPOINT)], cwd=tmp_path, env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, url, log)
            workers = _children(proc.pid)
            assert len(workers) == 2, (workers, log.read_text()[-2000:])
            key = (tmp_path / ".specguard-api-key").read_text().strip()
            body = {"model": "specguard", "messages": [{"role": "user", "content": "How is bread made?"}]}
            for _ in range(6):  # a new connection each time: any worker may take it
                r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60,
                               headers={"authorization": f"Bearer {key}"})
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == ANSWER
            assert sorted(_children(proc.pid)) == sorted(workers)  # none died on the way
            # Whichever worker answers a scrape reports both workers' requests, added up.
            for _ in range(4):
                scrape = httpx.get(url + "/metrics", timeout=10).text
                assert re.search(r'specguard_requests_total\{method="POST",route="/v1/chat/'
                                 r'completions",status="200"\} 6\.0', scrape), scrape
                assert re.search(r'specguard_node_duration_seconds_count\{node="generate"\} '
                                 r'6\.0', scrape), scrape
                assert re.search(r"^specguard_requests_in_flight 0\.0$", scrape, re.MULTILINE), scrape
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert log.read_text().count("generated one for this run") == 1


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # uvicorn's workers are multiprocessing children (not its resource tracker).
        if int(fields[1]) == pid and b"spawn_main" in Path(stat.parent, "cmdline").read_bytes():
            out.append(int(stat.parent.name))
    return out


async def test_the_studio_graph_runs_a_request_with_a_json_context(tmp_path, monkeypatch):
    """What LangGraph Studio does with langgraph.json's graph: messages as JSON objects and a
    tenant/user context; the runtime comes from the SPECGUARD_* variables."""
    from specguard import studio

    with serve(create_echo_upstream(answer=ANSWER)) as upstream:
        monkeypatch.setenv("SPECGUARD_BACKEND", "openai:echo")
        monkeypatch.setenv("SPECGUARD_API_BASE", upstream + "/v1")
        monkeypatch.setenv("SPECGUARD_STORE", str(tmp_path / "specguard.db"))
        monkeypatch.setattr(studio, "_runtime", None)
        out = await studio.graph.ainvoke(
            {"messages": [{"role": "user", "content": "How is bread made?"}]},
            context=studio.StudioContext(tenant="default"))
    report = out["result"].report
    assert out["result"].answer == ANSWER and report.action.value == "allowed"
    assert [s.name for s in report.steps] == ["input_check", "generate", "output_check"]
    assert not studio._contexts  # the run's context is dropped when it ends
    from specguard.graph import build_chat_graph

    # Studio draws the same graph, routes included.
    assert studio.graph.get_graph().draw_mermaid() == build_chat_graph().get_graph().draw_mermaid()
