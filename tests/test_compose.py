"""The contest deployment, checked without Docker: docker-compose.yml (and its PostgreSQL
variant docker-compose.postgres.yml), Dockerfile, nginx.conf.

Docker cannot run here, so every contest rule is read from the files themselves (see
``spec/rinha-2025.md``, "Deployment rules"), and nginx.conf goes through the real ``nginx -t``,
both as compose mounts it and as ``rinha stack up`` renders it.
"""

from __future__ import annotations

import inspect
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from rinha.cli import serve as serve_cli
from rinha.store import check_db, is_url
from rinha.store import postgres as pg_engine
from rinha.stack import check_nginx_conf, find_nginx, render_nginx_conf

ROOT = Path(__file__).resolve().parents[1]
PROCESSOR_URLS = {
    "RINHA_DEFAULT_URL": "http://payment-processor-default:8080",
    "RINHA_FALLBACK_URL": "http://payment-processor-fallback:8080",
}
MAX_CPUS = 1.5
MAX_MEMORY_MB = 350


COMPOSE_FILES = ["docker-compose.yml", "docker-compose.postgres.yml"]


@pytest.fixture(scope="module", params=COMPOSE_FILES)
def compose(request) -> dict:
    """Each deployment: the shared SQLite file, and PostgreSQL instead of it."""
    return yaml.safe_load((ROOT / request.param).read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def instances(services) -> dict[str, dict]:
    """The services running `rinha serve`: built from this repository."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def memory_mb(text) -> float:
    """Docker's memory notation (b, k, m, g; an optional trailing b) in MB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*", str(text).lower())
    assert match, f"unreadable memory limit {text!r}"
    number, unit = float(match[1]), match[2] or "b"
    return number * {"b": 1 / 2**20, "k": 1 / 2**10, "m": 1, "g": 2**10}[unit]


def limits(service: dict) -> dict:
    return ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}


def nginx_service(services) -> tuple[str, dict]:
    found = [(name, svc) for name, svc in services.items() if str(svc.get("image", "")).startswith("nginx")]
    assert len(found) == 1, "exactly one nginx service"
    return found[0]


# --- docker-compose.yml ----------------------------------------------------------------------


def test_at_least_two_instances_built_from_the_repository(services):
    built = instances(services)
    assert len(built) >= 2
    for name, svc in built.items():
        build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
        assert build["context"] in (".", "./"), name
        assert set(build.get("args") or {}) <= {"RINHA_EXTRAS"}, name  # the Dockerfile's only build argument


def test_every_service_has_limits_within_the_contest_budget(services):
    cpus = memory = 0.0
    for name, svc in services.items():
        lim = limits(svc)
        assert "cpus" in lim and "memory" in lim, f"{name} has no deploy.resources.limits"
        cpus += float(lim["cpus"])
        memory += memory_mb(lim["memory"])
    assert cpus <= MAX_CPUS + 1e-9, f"{cpus} CPUs > {MAX_CPUS}"
    assert memory <= MAX_MEMORY_MB, f"{memory} MB > {MAX_MEMORY_MB}"


def test_memory_notation_is_read_like_docker():
    assert memory_mb("150MB") == 150 and memory_mb("150m") == 150
    assert memory_mb("1g") == 1024 and memory_mb("512k") == 0.5 and memory_mb(2**20) == 1


def test_nginx_publishes_port_9999(services):
    name, svc = nginx_service(services)
    ports = [str(port) for port in svc.get("ports", [])]
    assert any(re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?9999:9999(/tcp)?", port) for port in ports), ports
    for other, osvc in services.items():
        if other != name:
            assert not osvc.get("ports"), f"{other} publishes ports; only the load balancer may"


def test_no_privileged_no_replicas_no_host_network(services):
    for name, svc in services.items():
        assert not svc.get("privileged"), name
        assert "replicas" not in (svc.get("deploy") or {}), name
        assert "scale" not in svc, name
        assert svc.get("network_mode", "bridge") == "bridge", name


def test_networks_are_bridge_and_payment_processor_is_external(compose, services):
    networks = compose.get("networks") or {}
    assert networks["payment-processor"] == {"external": True} or networks["payment-processor"].get("external") is True
    for name, net in networks.items():
        if not (net or {}).get("external"):
            assert (net or {}).get("driver", "bridge") == "bridge", name
    for name, svc in services.items():
        assert set(svc.get("networks") or []) <= set(networks), f"{name} joins an undeclared network"


def test_services_that_call_processors_join_their_network_with_the_contest_urls(services):
    callers = {name: svc for name, svc in services.items() if set(PROCESSOR_URLS) & set(environment(svc))}
    assert set(callers) == set(instances(services)), "every instance, and only they, call the processors"
    for name, svc in callers.items():
        env = environment(svc)
        for key, url in PROCESSOR_URLS.items():
            assert env.get(key) == url, f"{name}: {key}"
        assert "payment-processor" in (svc.get("networks") or []), name


def test_every_service_is_linux_amd64(services):
    for name, svc in services.items():
        assert svc.get("platform") == "linux/amd64", name


def test_instances_listen_on_the_sockets_nginx_balances_over_shared_volumes(compose, services):
    conf = (ROOT / "nginx.conf").read_text()
    upstream = set(re.findall(r"^\s*server\s+unix:([^\s;]+)", conf, re.MULTILINE))
    listens, dbs = set(), set()
    named = set(compose.get("volumes") or {})
    nginx_name, nginx = nginx_service(services)
    nginx_mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx["volumes"]}
    assert nginx_mounts.get("/etc/nginx/nginx.conf") == "./nginx.conf"
    for name, svc in instances(services).items():
        env = environment(svc)
        assert env["RINHA_LISTEN"].startswith("unix:"), name
        path = env["RINHA_LISTEN"][5:]
        if "api" in env.get("RINHA_ROLES", "api,dispatch,health").split(","):
            listens.add(path)  # a worker without the api role opens no data plane
        dbs.add(env["RINHA_DB"])
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        socket_dir = str(Path(path).parent)
        # the socket directory is a named volume that nginx mounts at the same place
        assert mounts.get(socket_dir) in named and nginx_mounts.get(socket_dir) == mounts[socket_dir], name
        if is_url(env["RINHA_DB"]):
            continue  # a database server: see test_postgres_deployment
        db_dir = str(Path(env["RINHA_DB"]).parent)
        assert mounts.get(db_dir) in named, f"{name}: the SQLite file must be on a named volume"
    assert listens == upstream, "nginx.conf's upstream must be exactly the api instances' sockets"
    assert len(dbs) == 1, "all instances share one store"


def test_postgres_deployment_shares_one_server_reached_by_url_and_its_data_is_durable():
    compose = yaml.safe_load((ROOT / "docker-compose.postgres.yml").read_text())
    services = compose["services"]
    [(name, server)] = [(n, s) for n, s in services.items() if str(s.get("image", "")).startswith("postgres:")]
    for instance_name, svc in instances(services).items():
        url = urlsplit(environment(svc)["RINHA_DB"])
        assert url.scheme == "postgresql" and url.hostname == name and url.path == "/rinha", instance_name
        check_db(environment(svc)["RINHA_DB"])
        assert set(svc["networks"]) & set(server["networks"]), f"{instance_name} cannot reach {name}"
        assert svc["depends_on"][name] == {"condition": "service_healthy"}, instance_name
        assert svc["build"]["args"]["RINHA_EXTRAS"] == "[postgres]", f"{instance_name}: the image needs psycopg"
        # nothing shared with the database server but its URL: no SQLite file, no data volume
        assert all(not v.startswith("pgdata:") for v in svc["volumes"]), instance_name
    assert "pg_isready" in server["healthcheck"]["test"]
    settings = dict(item.split("=", 1) for item in server["command"][1:] if "=" in item)
    assert settings.get("synchronous_commit", "on") == "on" and settings.get("fsync", "on") == "on"
    assert int(settings["max_connections"]) >= len(instances(services)) * pg_engine._MAX_CONNECTIONS + 3
    assert any(v.split(":")[0] in compose["volumes"] and v.split(":")[1] == "/var/lib/postgresql/data"
               for v in server["volumes"]), "the database lives on a named volume"


def test_only_real_rinha_serve_variables_are_set():
    """A misspelled RINHA_* variable would be silently ignored by `rinha serve`."""
    known = {param.default.envvar for param in inspect.signature(serve_cli.serve).parameters.values()
             if isinstance(param.default, typer.models.OptionInfo)}
    used = set()
    for name in COMPOSE_FILES:
        text = (ROOT / name).read_text()
        used |= set(re.findall(r"\bRINHA_[A-Z_]+\b", text.replace("RINHA_EXTRAS:", "")))
    used |= set(re.findall(r"\bRINHA_[A-Z_]+\b", (ROOT / "Dockerfile").read_text())) - {"RINHA_EXTRAS"}
    assert used and used <= known, used - known


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_base_image_and_command():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert cmd and cmd[-1] == '["sh", "-c", "rinha migrate && exec rinha serve"]'


def test_dockerfile_installs_with_the_readme_command():
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    installs = [part.strip() for run in runs for part in run.split("&&") if part.strip().startswith("pip install")]
    # the README's command; the build argument RINHA_EXTRAS (empty by default) may add extras
    assert installs in (["pip install ."], ['pip install ".${RINHA_EXTRAS}"']), installs
    assert 'ARG RINHA_EXTRAS=""' in (ROOT / "Dockerfile").read_text() or installs == ["pip install ."]
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    commands = [part.strip() for block in blocks for line in block.splitlines() for part in line.split("&&")]
    assert "pip install ." in commands, "the image must install the way the README tells people to"


def test_dockerfile_copies_every_package_folder_and_dockerignore_keeps_them():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = set()
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            copied.update(Path(src).as_posix().rstrip("/") for src in shlex.split(rest)[:-1])
    readme = pyproject["project"]["readme"]
    assert folders | {"pyproject.toml", readme} <= copied, (folders | {"pyproject.toml", readme}) - copied
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not copied & ignored, copied & ignored
    assert ".git" in ignored and "*.db" in ignored


# --- nginx.conf ------------------------------------------------------------------------------


def directives(conf: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in conf.splitlines() if line.split("#", 1)[0].strip()]


def test_nginx_conf_is_lean_and_never_replays_a_post():
    lines = directives((ROOT / "nginx.conf").read_text())
    for expected in ("worker_processes 1;", "access_log off;", "error_log stderr warn;",
                     "proxy_http_version 1.1;", 'proxy_set_header Connection "";'):
        assert expected in lines, expected
    assert any(re.fullmatch(r"keepalive \d+;", line) for line in lines)
    assert any(re.fullmatch(r"listen 9999( .*)?;", line) for line in lines)
    connections = [int(m[1]) for line in lines if (m := re.fullmatch(r"worker_connections (\d+);", line))]
    assert connections and connections[0] >= 2 * 1100  # 550 clients + their upstream connections, twice over
    retries = [line for line in lines if line.startswith("proxy_next_upstream ")]
    assert retries and all("non_idempotent" not in line for line in retries)
    # pid and daemon are given on the command line by whoever starts nginx
    assert not any(line.startswith(("pid ", "daemon ")) for line in lines)


@pytest.mark.parametrize("rendered", [False, True], ids=["as-compose-mounts-it", "as-stack-renders-it"])
def test_nginx_accepts_the_conf(tmp_path, rendered):
    nginx = find_nginx()
    conf = (ROOT / "nginx.conf").read_text()
    if rendered:
        conf = render_nginx_conf(conf, 18999, [str(tmp_path / "api1.sock"), str(tmp_path / "api2.sock"),
                                               str(tmp_path / "api3.sock")])
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(conf)
    check_nginx_conf(nginx, str(prefix), str(prefix / "nginx.conf"))


def test_nginx_rejects_a_broken_conf(tmp_path):
    """The check above can fail: a conf nginx refuses raises with nginx's message."""
    from rinha.stack import StackError

    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text((ROOT / "nginx.conf").read_text().replace("keepalive 256;", "keepalive;"))
    with pytest.raises(StackError, match="keepalive"):
        check_nginx_conf(find_nginx(), str(prefix), str(prefix / "nginx.conf"))
