"""docker-compose.yml, validated the way ``docker compose config`` validates it.

``docker compose`` is not installed here (no Docker engine either), so the file is loaded
with compose-go, the Go library ``docker compose config`` is built on: interpolation from
``.env``, the compose-spec schema, normalisation and the consistency checks. The tiny
program is ``scripts/compose-check`` (built once into ``.cache/bin``; modules come from
the Go module proxy). Where the real ``docker compose`` is installed it is run as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "scripts" / "compose-check"
BIN = ROOT / ".cache" / "bin" / "compose-check"
COMPOSE = ROOT / "docker-compose.yml"
ENV = ROOT / ".env"
LONG_RUNNING = {"kafka", "worker-1", "worker-2", "notifier", "console", "prometheus",
                "alertmanager", "grafana", "mailcatcher"}
ONE_SHOT = {"registry", "simulator"}


def checker() -> Path:
    """The compose-go checker, (re)built when its sources are newer than the binary."""
    newest = max(p.stat().st_mtime for p in SRC.iterdir())
    if BIN.exists() and BIN.stat().st_mtime >= newest:
        return BIN
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.fail("Go is needed to build scripts/compose-check (go on PATH or in "
                    "/usr/local/go)")
    BIN.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([go, "build", "-o", str(BIN), "."], cwd=SRC, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "CGO_ENABLED": "0"})
    assert r.returncode == 0, r.stderr
    return BIN


def load(path: Path = COMPOSE, env: Path | None = None) -> subprocess.CompletedProcess:
    args = [str(checker()), "-f", str(path)]
    if env is not None:
        args += ["-env-file", str(env)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def project() -> dict:
    r = load()
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_compose_go_accepts_the_file(project):
    assert project["name"] == "meterwatch"
    assert set(project["services"]) == LONG_RUNNING | ONE_SHOT


def test_docker_compose_config_accepts_it_where_installed():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("the docker compose plugin is not installed (compose-go checked the file)")
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def test_the_checker_rejects_what_docker_compose_rejects(tmp_path):
    text = COMPOSE.read_text()
    cases = {
        "unknown service in depends_on": text.replace("registry:\n        condition: service_completed_successfully\n    healthcheck: &worker-health",
                                                      "registy:\n        condition: service_completed_successfully\n    healthcheck: &worker-health"),
        "schema: unknown key": text.replace("    hostname: worker-1\n", "    hostname: worker-1\n    hostnme: x\n"),
        "undefined named volume": text.replace("      - worker-2-data:/var/lib/meterwatch\n",
                                               "      - worker-3-data:/var/lib/meterwatch\n"),
        "bad healthcheck interval": text.replace("      interval: 10s\n      timeout: 10s",
                                                 "      interval: soon\n      timeout: 10s"),
    }
    for name, bad in cases.items():
        assert bad != text, name
        p = tmp_path / "docker-compose.yml"
        p.write_text(bad)
        r = load(p, env=ENV)
        assert r.returncode != 0, name


def test_kafka_is_the_official_image_in_kraft_mode(project):
    k = project["services"]["kafka"]
    assert k["image"].startswith("apache/kafka:")
    env = k["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "zookeeper" not in COMPOSE.read_text().lower()


def test_long_running_services_have_health_checks_and_named_volumes(project):
    named = set(project["volumes"])
    for name in LONG_RUNNING:
        svc = project["services"][name]
        assert svc.get("healthcheck", {}).get("test"), name
        assert svc.get("restart") == "unless-stopped", name
    for name, svc in project["services"].items():
        for v in svc.get("volumes", []):
            if v["type"] == "volume":
                assert v["source"] in named, (name, v)
            else:
                assert v["type"] == "bind" and Path(v["source"]).exists(), (name, v)
    assert {"kafka-data", "prometheus-data", "grafana-data", "store-data"} <= named


def test_two_workers_the_simulator_the_notifier_and_the_console(project):
    s = project["services"]
    assert s["worker-1"]["command"][:2] == ["meterwatch", "worker"]
    assert s["worker-2"]["command"][:2] == ["meterwatch", "worker"]
    assert s["simulator"]["command"][:2] == ["meterwatch", "simulate"]
    assert s["notifier"]["command"][:2] == ["meterwatch", "notify"]
    assert s["console"]["command"][:2] == ["meterwatch", "console"]
    for w in ("worker-1", "worker-2"):
        assert s[w]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert s[w]["environment"]["METERWATCH_WEB_HOST"] == w  # bind and advertise
    assert s["simulator"]["depends_on"]["worker-1"]["condition"] == "service_healthy"
    assert "dockerfile_inline" in s["worker-1"]["build"]


def test_every_setting_comes_from_the_one_env_file(project):
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    defined = {line.split("=", 1)[0] for line in ENV.read_text().splitlines()
               if line and not line.startswith("#")}
    assert used <= defined, used - defined
    # every METERWATCH_* handed to a container is a real setting
    from stream.settings import setting_names

    known = {"METERWATCH_" + n.upper() for n in setting_names()}
    for name, svc in project["services"].items():
        for k in svc.get("environment", {}):
            if k.startswith("METERWATCH_"):
                assert k in known, (name, k)


def test_prometheus_scrapes_what_the_stack_runs(project):
    prom = (ROOT / "dashboards" / "prometheus" / "prometheus.yml").read_text()
    for target in ("worker-1:6066", "worker-2:6066", "notifier:6067", "console:6080",
                   "alertmanager:9093"):
        assert target in prom
    s = project["services"]
    assert s["notifier"]["environment"]["METERWATCH_NOTIFY_WEB_PORT"] == "6067"
    assert "6080" in s["console"]["command"]
    mounts = {v["target"] for v in s["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/rules"} <= mounts


def test_pages_are_published_on_loopback_only(project):
    for name, svc in project["services"].items():
        for p in svc.get("ports", []):
            assert p.get("host_ip") == "127.0.0.1", (name, p)
    published = {svc_name: [p["published"] for p in svc.get("ports", [])]
                 for svc_name, svc in project["services"].items()}
    assert published["grafana"] == ["3000"] and published["console"] == ["6080"]
    assert published["mailcatcher"] == ["8025"] and published["prometheus"] == ["9090"]


# -- the commands are the real CLI's ---------------------------------------------------
def _service_env(monkeypatch, svc: dict, tmp_path: Path, **paths: str) -> None:
    """This process's METERWATCH_* replaced by the service's (as compose interpolated
    them), with the container paths pointed into ``tmp_path``."""
    for k in list(os.environ):
        if k.startswith("METERWATCH_"):
            monkeypatch.delenv(k)
    env = {k: v for k, v in svc.get("environment", {}).items()
           if k.startswith("METERWATCH_") and v is not None}
    env.update(METERWATCH_DATA_DIR=str(tmp_path / "data"),
               METERWATCH_DB_URL=f"sqlite:///{tmp_path / 'alerts.db'}", **paths)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def _run(argv: list[str]) -> int:
    from stream.cli import main

    try:
        main(argv)
    except SystemExit as e:
        assert e.code in (None, 0), e.code
    return 0


def test_meterwatch_commands_are_accepted_by_the_real_cli(project, monkeypatch, tmp_path):
    """Each service's command through ``meterwatch``'s own parsers and settings, up to
    where it would connect to Kafka or listen."""
    import aiohttp.web

    import stream.dev.cli as dev_cli
    import stream.notify.cli as notify_cli
    import stream.worker.cli as worker_cli
    from stream.cliparse import settings
    from models.evaluate.sim import FleetSimulator

    s = project["services"]
    registry = tmp_path / "registry.csv"
    FleetSimulator(n_customers=40, n_areas=4, seed=0).write_registry_csv(registry)
    seen: dict[str, object] = {}

    def settle(name, fn):
        def fake(args, *rest):
            seen[name] = (args, fn(args))
        return fake

    monkeypatch.setattr(worker_cli, "cmd_worker", settle("worker", lambda a: settings(
        a, registry=a.registry, broker=a.broker, web_port=a.web_port)))
    monkeypatch.setattr(dev_cli, "cmd_simulate", settle("simulate", lambda a: settings(a)))
    monkeypatch.setattr(notify_cli, "cmd_run", settle("notify", notify_cli._settings))
    monkeypatch.setattr(aiohttp.web, "run_app",
                        lambda app, **kw: seen.__setitem__("console", (app, kw)))

    for w in ("worker-1", "worker-2"):
        _service_env(monkeypatch, s[w], tmp_path, METERWATCH_REGISTRY=str(registry))
        cmd = s[w]["command"]
        assert cmd[0] == "meterwatch"
        _run(cmd[1:])
        args, st = seen.pop("worker")
        assert args.worker_id == cmd[-1] and st.web_host == w and st.broker == "kafka:9092"

    _service_env(monkeypatch, s["simulator"], tmp_path)
    _run(s["simulator"]["command"][1:])
    args, _ = seen.pop("simulate")
    senv = s["registry"]["environment"]
    assert (args.customers, args.areas, args.seed) == (
        int(senv["SIM_CUSTOMERS"]), int(senv["SIM_AREAS"]), int(senv["SIM_SEED"]))

    _service_env(monkeypatch, s["notifier"], tmp_path, METERWATCH_REGISTRY=str(registry))
    _run(s["notifier"]["command"][1:])
    args, st = seen.pop("notify")
    assert args.cmd == "run" and st.notify_web_port == 6067 and st.web_host == "notifier"
    assert st.smtp_host == "mailcatcher" and st.alertmanager_url == "http://alertmanager:9093"

    # The console with .env's empty session secret: --dev makes an ephemeral one.
    _service_env(monkeypatch, s["console"], tmp_path, METERWATCH_REGISTRY=str(registry))
    assert not os.environ.get("METERWATCH_SESSION_SECRET")
    _run(s["console"]["command"][1:])
    app, kw = seen.pop("console")
    assert (kw["host"], kw["port"]) == ("0.0.0.0", 6080)

    # README: `docker compose exec console meterwatch users add admin --role admin`
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-1\n"))
    _run(["users", "add", "admin", "--role", "admin"])
    from stream.store import AlertStore

    store = AlertStore(os.environ["METERWATCH_DB_URL"])
    try:
        assert store.verify_user("admin", "a-long-password-1")["role"] == "admin"
    finally:
        store.close()


def test_the_managers_file_covers_every_account_manager_of_the_simulated_fleet(project, tmp_path,
                                                                              capsys):
    """``meterwatch notify check``: the registry the ``registry`` service writes names no
    manager the notifier cannot reach."""
    from stream.notify.cli import main as notify
    from models.evaluate.sim import FleetSimulator

    env = project["services"]["registry"]["environment"]
    registry = tmp_path / "registry.csv"
    FleetSimulator(n_customers=int(env["SIM_CUSTOMERS"]), n_areas=int(env["SIM_AREAS"]),
                   seed=int(env["SIM_SEED"])).write_registry_csv(registry)
    mounts = {v["target"]: v["source"] for v in project["services"]["notifier"]["volumes"]}
    managers = mounts[project["services"]["notifier"]["environment"]["METERWATCH_MANAGERS"]]
    try:
        notify(["check", "--managers", managers, "--registry", str(registry)])
    except SystemExit as e:
        assert e.code in (None, 0), capsys.readouterr().out
    assert "every account manager in the registry" in capsys.readouterr().out


def test_dockerignore_keeps_the_build_context_small(project):
    import fnmatch

    build = project["services"]["worker-1"]["build"]
    assert Path(build["context"]).resolve() == ROOT
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for heavy in (".venv", ".cache", ".data", "out", ".git"):
        assert heavy in patterns, heavy
    copied = [src for line in build["dockerfile_inline"].splitlines()
              if line.strip().startswith("COPY ") for src in line.split()[1:-1]]
    assert copied and "stream" in copied
    for src in copied:
        assert (ROOT / src).exists(), src
        assert not any(fnmatch.fnmatch(src, p) for p in patterns), src
