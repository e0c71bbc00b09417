"""compose.yml, checked statically (`.ci/compose-check` runs it for real), and its nginx config.

Every service has an image or a build that exists; every ${VAR} is documented in README's
compose section and the secrets are required variables; only nginx publishes ports (8080,
50051, 443); every long-running service has a healthcheck; depends_on names real services;
every command names a module, a `qserver` command or a `ray` command that exists; volumes are
declared. The Ray containers start through `python -m ops.raynode`, check themselves with a
timeout a busy host can keep, and have memory limits; the dispatcher's readiness is on a tmpfs.
compose.trusted-lan.yml turns authentication off for ingest and the api and nothing else. The
nginx container's config (nginx/compose/40-qserver-config.sh) passes `nginx -t` with TLS on and
agrees with the config `qserver up` renders.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from core import auth
from core.settings import MIB, Settings
from ops import certs, cli, prereqs, proxy, raynode

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yml"
TRUSTED_LAN = ROOT / "compose.trusted-lan.yml"
README = ROOT / "README.md"
NGINX = prereqs.find_program("nginx")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+alt}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
SECRETS = {"POSTGRES_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD", "RAY_AUTH_TOKEN", "QSERVER_AUTH_SECRET"}
PUBLISHED = {8080, 50051, 443}
RAY_SERVICES = {"ray-head", "ray-worker", "dispatcher"}
EXPECTED = {
    "postgres",
    "rabbitmq",
    "migrate",
    "ray-head",
    "ray-worker",
    "ingest",
    "dispatcher",
    "api",
    "nginx",
}


def _interpolate(text: str) -> str:
    """compose.yml as `docker compose` would see it with the secrets set and nothing else."""

    def value(match: re.Match) -> str:
        name, operator, rest = match.groups()
        if name in SECRETS:
            return f"test-{name.lower()}-{'x' * 32}"
        if operator in (":-", "-"):
            return rest
        if operator in (":+", "+"):
            return ""
        raise AssertionError(f"${{{name}}} has no default and is not one of the secrets")

    return VARIABLE.sub(value, text)


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return yaml.safe_load(_interpolate(raw))


@pytest.fixture(scope="module")
def services_(compose) -> dict[str, dict]:
    return compose["services"]


def _one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def _readme_compose_section() -> str:
    text = README.read_text()
    match = re.search(r"^## Containers \(compose\.yml\)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "README has no '## Containers (compose.yml)' section"
    return match.group(1)


# --- structure ------------------------------------------------------------------------------


def test_the_production_services_are_all_there(services_):
    assert EXPECTED <= set(services_)
    assert "replicas" in services_["ray-worker"]["deploy"]


def test_every_service_has_an_image_or_a_build_that_exists(services_):
    for name, service in services_.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = ROOT / build.get("context", ".")
        assert context.is_dir(), (name, context)
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), (name, dockerfile)
        for source in _copy_sources(dockerfile):
            assert (context / source).exists(), (name, dockerfile, source)


def _copy_sources(dockerfile: Path) -> list[str]:
    """The local sources of every COPY/ADD in a Dockerfile (flags and --from copies skipped)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = words[1:]
        if any(arg.startswith("--from") for arg in args):
            continue
        args = [arg for arg in args if not arg.startswith("--")]
        sources.extend(args[:-1])
    return sources


def test_the_python_image_holds_every_package(services_):
    """The Dockerfile copies each package that pyproject.toml installs."""
    copied = set(_copy_sources(ROOT / "Dockerfile"))
    packages = {"core", "protos", "ingest", "dispatcher", "cluster", "plugins", "api"}
    assert packages <= copied, packages - copied


def test_every_ray_container_runs_the_same_image(services_):
    """Ray needs the same Python, Ray and project everywhere: one image for all its nodes."""
    images = {(services_[name].get("image"), repr(services_[name].get("build"))) for name in RAY_SERVICES}
    assert len(images) == 1, images
    python_services = {"migrate", "ingest", "api", *RAY_SERVICES}
    assert {services_[name].get("image") for name in python_services} == {images.pop()[0]}


# --- variables and secrets ----------------------------------------------------------------------


def test_every_variable_is_documented_in_readme(raw):
    section = _readme_compose_section()
    used = {match.group(1) for match in VARIABLE.finditer(raw)}
    missing = sorted(name for name in used if f"`{name}`" not in section)
    assert not missing, f"README's compose section does not document {missing}"


def test_secrets_are_required_variables_never_values(raw):
    uses: dict[str, set[str | None]] = {}
    for match in VARIABLE.finditer(raw):
        uses.setdefault(match.group(1), set()).add(match.group(2))
    for name in SECRETS:
        assert name in uses, name
        assert uses[name] == {":?"}, f"{name} must always be ${{{name}:?message}}"
    # no literal secret anywhere: every password-ish key's value comes from a variable
    for key in ("POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "RABBITMQ_DEFAULT_USER", "RAY_AUTH_TOKEN"):
        for match in re.finditer(rf"^\s*{key}:\s*(.*)$", raw, re.M):
            assert match.group(1).startswith("${"), (key, match.group(1))
    for match in re.finditer(r"^\s*QSERVER_(?:DATABASE|AMQP)_URL:\s*(\S+)$", raw, re.M):
        assert "${" in match.group(1), match.group(0)


def test_no_secret_reaches_services_that_do_not_need_it(services_):
    """The Ray token only goes to Ray's containers; the database only to Python services."""
    for name, service in services_.items():
        env = service.get("environment") or {}
        if "RAY_AUTH_TOKEN" in env:
            assert name in RAY_SERVICES, name
        if name == "nginx":
            assert not any("PASSWORD" in k or "URL" in k or "TOKEN" in k for k in env), env


# --- ports, healthchecks, dependencies, volumes ---------------------------------------------------


def _published(port_spec) -> tuple[int, int]:
    """(host port, container port) of a short or long port syntax entry."""
    if isinstance(port_spec, dict):
        return int(port_spec["published"]), int(port_spec["target"])
    parts = str(port_spec).split("/")[0].rsplit(":", 2)
    assert len(parts) >= 2, f"{port_spec}: name the host port explicitly"
    return int(parts[-2]), int(parts[-1])


def _monitoring(service: dict) -> bool:
    return "monitoring" in service.get("profiles", [])


def test_only_nginx_publishes_ports_and_exactly_8080_50051_443(services_):
    for name, service in services_.items():
        if _monitoring(service):  # Prometheus and Grafana: on the host's loopback only
            assert all(str(spec).startswith("127.0.0.1:") for spec in service.get("ports", [])), name
        elif name != "nginx":
            assert "ports" not in service, f"{name} publishes {service['ports']}"
            assert service.get("network_mode") != "host", name
    pairs = [_published(spec) for spec in services_["nginx"]["ports"]]
    assert {host for host, _ in pairs} == PUBLISHED
    assert all(host == container for host, container in pairs), pairs


def test_the_ray_dashboard_is_not_published(services_):
    for service in services_.values():
        for spec in service.get("ports", []):
            assert 8265 not in _published(spec)


def test_every_long_running_service_has_a_healthcheck(services_):
    for name, service in services_.items():
        if _one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), (name, check["test"])


def test_depends_on_targets_exist_and_their_conditions_fit(services_):
    for name, service in services_.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in services_, f"{name} depends on unknown {target}"
            assert "profiles" not in services_[target], f"{name} depends on optional {target}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services_[target], (name, target)
            if condition == "service_completed_successfully":
                assert _one_shot(services_[target]), (name, target)


def test_named_volumes_are_declared_and_certificates_are_read_only_in_nginx(compose, services_):
    declared = set(compose.get("volumes") or {})
    assert {"pgdata", "rabbitdata", "certs"} <= declared
    used = set()
    for name, service in services_.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared, declared - used
    nginx_mounts = services_["nginx"]["volumes"]
    assert any(v.startswith("certs:") and v.endswith(":ro") for v in nginx_mounts), nginx_mounts
    assert any(v.startswith("pgdata:") for v in services_["postgres"]["volumes"])
    assert any(v.startswith("rabbitdata:") for v in services_["rabbitmq"]["volumes"])


# --- commands -----------------------------------------------------------------------------------


def _argvs(service: dict) -> list[list[str]]:
    """Every command line a service runs: command, entrypoint and healthcheck, `sh -c` split."""
    lines = []
    for value in (service.get("entrypoint"), service.get("command")):
        if value:
            lines.append(shlex.split(value) if isinstance(value, str) else list(value))
    test = (service.get("healthcheck") or {}).get("test")
    if test:
        if test[0] == "CMD-SHELL":
            lines.append(["sh", "-c", " ".join(test[1:])])
        else:
            lines.append(list(test[1:]))
    argvs = []
    for argv in lines:
        if argv[:2] in (["sh", "-c"], ["bash", "-c"]):
            for part in re.split(r"&&|\|\||;", argv[2]):
                words = shlex.split(part)
                argvs.append(words[1:] if words[:1] == ["exec"] else words)
        else:
            argvs.append(argv)
    return [argv for argv in argvs if argv]


def _walk_click(group, args: list[str], what: str) -> None:
    """``args`` name an existing (sub)command of a click ``group`` and only options it has.

    Duck-typed: typer's groups are click-like without being ``click.Group`` instances.
    """
    command = group
    for word in args:
        if word.startswith("-") or not hasattr(command, "commands"):
            break  # options, or the command's arguments
        assert word in command.commands, f"{what}: no command {word!r} (has {sorted(command.commands)})"
        command = command.commands[word]
    assert not hasattr(command, "commands"), f"{what}: names a group, not a command"
    options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    for word in args:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"{what}: {command.name} has no {word}"


def _check_python(argv: list[str], what: str) -> None:
    if "-m" in argv:
        module = argv[argv.index("-m") + 1]
        path = ROOT / module.replace(".", "/")
        assert (path / "__main__.py").is_file() or path.with_suffix(".py").is_file(), what
    if "-c" in argv:
        tree = ast.parse(argv[argv.index("-c") + 1])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{what}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's CLI imports Ray Serve
def test_commands_name_modules_and_commands_that_exist(services_):
    qserver = typer.main.get_command(cli.app)
    from ray.scripts.scripts import cli as ray_cli

    checked = 0
    for name, service in services_.items():
        for argv in _argvs(service):
            what = f"{name}: {' '.join(argv)}"
            if argv[0] in ("python", "python3"):
                _check_python(argv, what)
                if argv[1:3] == ["-m", "ops.raynode"]:
                    _walk_click(typer.main.get_command(raynode.app), argv[3:], what)
            elif argv[0] == "qserver":
                _walk_click(qserver, argv[1:], what)
            elif argv[0] == "ray":
                _walk_click(ray_cli, argv[1:], what)
            else:
                continue  # the tools of the postgres, rabbitmq and nginx images, and `test`
            checked += 1
    assert checked >= 10


def test_the_dispatcher_runs_on_a_ray_node(services_):
    """A Ray driver needs a raylet on its own host: the dispatcher joins (no CPUs) before it starts."""
    argvs = _argvs(services_["dispatcher"])
    joins = [i for i, argv in enumerate(argvs) if argv == ["python", "-m", "ops.raynode", "start", "driver"]]
    runs = [i for i, argv in enumerate(argvs) if argv[:3] == ["python", "-m", "dispatcher"]]
    assert joins and runs and joins[0] < runs[0], argvs


def test_ray_nodes_start_as_qserver_node_starts_them(services_):
    """Tags, version labels, threads and memory come from ops.raynode (ops/nodes.py's options)."""
    roles = {"ray-head": "head", "ray-worker": "worker", "dispatcher": "driver"}
    for name, role in roles.items():
        argvs = _argvs(services_[name])
        assert ["python", "-m", "ops.raynode", "start", role] in argvs, (name, argvs)
        assert not any(argv[:2] == ["ray", "start"] for argv in argvs), name
    assert str(services_["ray-worker"]["environment"]["QSERVER_NODE_CPUS"]) == "2"
    assert str(services_["ray-head"]["environment"]["QSERVER_NODE_CPUS"]) == "0"
    assert "QSERVER_NODE_TAGS" in services_["ray-worker"]["environment"]


def _seconds(text: str) -> float:
    value = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text):
        value += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return value


def test_ray_containers_check_themselves_with_room_for_a_busy_host(services_):
    """Each Ray container's healthcheck tests its own raylet, never the head's address, and
    waits 30 s: `ray health-check` took 3-13 s on a busy 2-core host."""
    for name in RAY_SERVICES:
        check = services_[name]["healthcheck"]
        test = " ".join(check["test"][1:])
        assert "python -m ops.raynode health" in test, (name, test)
        assert "ray-head" not in test and "--address" not in test, (name, test)
        assert _seconds(check["timeout"]) >= 30, (name, check)
        assert _seconds(check["start_period"]) >= 60, (name, check)


def test_ray_containers_have_memory_limits_ray_sees(services_):
    """Without a limit every Ray node offers the host's whole memory; ops.raynode turns the
    container's limit into Ray's --memory and --object-store-memory."""
    for name in RAY_SERVICES:
        limit = services_[name]["deploy"]["resources"]["limits"]["memory"]
        assert re.fullmatch(r"\d+[kmg]", limit), (name, limit)
        shm = services_[name]["shm_size"]
        assert _size(shm) < _size(limit), (name, shm, limit)


def _size(text: str) -> int:
    """A compose byte size ("2gb", "512m") in bytes."""
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", text.lower()).groups()
    return int(number) * 1024 ** " kmg".index(unit or " ")


def test_the_dispatchers_readiness_does_not_outlive_its_container(services_):
    """A ready file in the container's layer survived a SIGKILL and restart: the healthcheck
    asks the dispatcher itself, or its ready file lies on a tmpfs (empty at every start)."""
    dispatcher = services_["dispatcher"]
    test = " ".join(dispatcher["healthcheck"]["test"][1:])
    ready = re.search(r"test -f (\S+)", test)
    if ready is None:
        assert "/var/lib/qserver" not in test, test
        return
    tmpfs = [entry.split(":")[0] for entry in dispatcher.get("tmpfs", [])]
    assert any(ready.group(1).startswith(mount + "/") for mount in tmpfs), (ready.group(1), tmpfs)


def _auth_in(service: dict, monkeypatch, extra: dict[str, str] | None = None) -> auth.AuthMode:
    """The authentication mode a service's container decides from its environment."""
    for name in ("QSERVER_AUTH", "QSERVER_TRUSTED_LAN", "QSERVER_NGINX_BIND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**service["environment"], **(extra or {})}.items():
        monkeypatch.setenv(name, str(value))
    return auth.auth_mode(Settings())


def test_authentication_is_on_unless_the_trusted_lan_file_is_added(services_, monkeypatch):
    """compose.yml alone: API keys on in ingest and the api. compose.trusted-lan.yml: off there,
    which the settings allow on a non-loopback bind only with QSERVER_TRUSTED_LAN; nothing else."""
    override = yaml.safe_load(TRUSTED_LAN.read_text())
    assert set(override) == {"services"} and set(override["services"]) == {"ingest", "api"}
    for name in ("ingest", "api"):
        assert _auth_in(services_[name], monkeypatch).on, name
        lan = override["services"][name]
        assert set(lan) == {"environment"}, name
        assert lan["environment"] == {"QSERVER_AUTH": "off", "QSERVER_TRUSTED_LAN": "true"}, name
        mode = _auth_in(services_[name], monkeypatch, lan["environment"])
        assert not mode.on and "QSERVER_TRUSTED_LAN=true" in mode.reason, name
    assert "compose.trusted-lan.yml" in _readme_compose_section()


# --- the nginx container's config ---------------------------------------------------------------


def _render_compose_nginx(tmp_path: Path, tls_dir: Path) -> Path:
    """Run nginx/compose/40-qserver-config.sh as the image does; returns its conf.d."""
    templates = tmp_path / "templates"
    conf_d = tmp_path / "conf.d"
    templates.mkdir()
    conf_d.mkdir()
    for source in _copy_sources(ROOT / "nginx" / "Dockerfile"):
        if source.endswith(".template"):
            shutil.copy(ROOT / "nginx" / source, templates)
        elif (ROOT / "nginx" / source).is_dir():  # the shared location bodies
            shutil.copytree(ROOT / "nginx" / source, templates / source)
    env = {
        "PATH": "/usr/bin:/bin",
        "QSERVER_API_UPSTREAM": "127.0.0.1:18000",
        "QSERVER_INGEST_UPSTREAM": "127.0.0.1:15052",
        "QSERVER_MAX_QASM_BYTES": str(3 * MIB),
        "QSERVER_TLS_DIR": str(tls_dir),
        "QSERVER_NGINX_TEMPLATES": str(templates),
        "QSERVER_NGINX_CONF_D": str(conf_d),
    }
    proc = subprocess.run(
        ["sh", str(ROOT / "nginx" / "compose" / "40-qserver-config.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return conf_d


def _nginx_t_compose(tmp_path: Path, conf_d: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on the image's layout: our conf.d included in an http block."""
    prefix = tmp_path / "prefix"
    (prefix / "logs").mkdir(parents=True)
    main = prefix / "nginx.conf"
    main.write_text(
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log {prefix}/logs/access.log;\n"
        + "".join(
            f"    {kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    include {conf_d}/*.conf;\n}}\n"
    )
    return subprocess.run(
        [NGINX, "-p", str(prefix), "-c", str(main), "-e", str(prefix / "logs" / "error.log"), "-t"],
        capture_output=True,
        text=True,
        check=False,
    )


needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
needs_envsubst = pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (gettext-base) is not installed")


@needs_nginx
@needs_envsubst
def test_compose_nginx_config_with_tls_passes_nginx_t(tmp_path):
    made = certs.make_dev_certs(tmp_path / "tls", ["localhost", "127.0.0.1"])
    conf_d = _render_compose_nginx(tmp_path, made.directory)
    assert sorted(p.name for p in conf_d.iterdir()) == ["qserver-tls.conf", "qserver.conf"]
    tls_conf = (conf_d / "qserver-tls.conf").read_text()
    assert "listen 443 ssl http2;" in tls_conf
    assert f'ssl_certificate     "{made.server_cert}";' in tls_conf
    assert "$$" not in tls_conf and "$tls_" not in tls_conf
    assert f"client_max_body_size {68 * MIB};" in (conf_d / "qserver.conf").read_text()
    proc = _nginx_t_compose(tmp_path, conf_d)
    assert proc.returncode == 0, proc.stderr
    assert "syntax is ok" in proc.stderr


@needs_nginx
@needs_envsubst
def test_compose_nginx_config_without_certificates_has_no_tls(tmp_path):
    conf_d = _render_compose_nginx(tmp_path, tmp_path / "empty")
    assert [p.name for p in conf_d.iterdir()] == ["qserver.conf"]
    assert "ssl" not in (conf_d / "qserver.conf").read_text()
    assert _nginx_t_compose(tmp_path, conf_d).returncode == 0


ROUTING = re.compile(r"^\s*((?:proxy|grpc|ssl)_\w+|location)\s+(.*?)\s*[;{]\s*$", re.M)


@needs_envsubst
def test_compose_nginx_routes_like_qserver_up(tmp_path):
    """The container's nginx and `qserver up`'s nginx proxy the same routes the same way."""
    made = certs.make_dev_certs(tmp_path / "tls", ["localhost"])
    conf_d = _render_compose_nginx(tmp_path, made.directory)
    compose_conf = "\n".join(p.read_text() for p in sorted(conf_d.iterdir()))
    local_conf = proxy.render_nginx_conf(Settings(state_dir=tmp_path / "state", tls_dir=made.directory))

    def routing(conf: str) -> list[tuple[str, str]]:
        return sorted(
            (name, value)
            for name, value in ROUTING.findall(conf)
            if name not in ("ssl_certificate", "ssl_certificate_key") and not name.endswith("_temp_path")
        )

    assert routing(compose_conf) == routing(local_conf)
