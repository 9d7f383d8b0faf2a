"""deploy/ stays in step with the code: every file parses, every osiris.toml (compose's and the
Helm chart's) is one the runtime accepts, every `osiris ...` line is a real verb, env names,
ports, volumes and plugins exist, and hadolint / the compose-spec schema pass.

No Docker daemon, Kubernetes or network: Helm templates are not rendered here (no helm binary);
the chart's osiris.toml strings are rendered by substituting their `{{ .Values.x }}` fields.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from osiris_core.cli.natsconfig import PASSWORD_ENV
from osiris_core.config import OsirisSettings, load_config
from osiris_core.plugins import discover, load_plugins

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
CHART = DEPLOY / "helm" / "osiris"
COMPOSE = DEPLOY / "compose.yaml"
ROLES = ("core", "models", "tts")
CHART_ROLES = ("gateway", "core", "models", "tts")
BIN = Path(sysconfig.get_path("scripts"))


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _dockerfiles() -> dict[str, Path]:
    return {p.name.removesuffix(".Dockerfile"): p for p in sorted(DOCKER.glob("*.Dockerfile"))}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _entrypoint(path: Path) -> list[str]:
    ep = [a for w, a in _instructions(path) if w == "ENTRYPOINT"]
    assert len(ep) == 1, f"{path.name}: one exec-form ENTRYPOINT expected"
    return _exec_form(ep[0])


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _chart_values(canary: bool = False, **overrides: Any) -> dict[str, Any]:
    values = _yaml(CHART / "values.yaml")
    if canary:
        values = _deep_merge(values, _yaml(CHART / "values-canary.yaml"))
    return _deep_merge(values, overrides)


_FIELD = re.compile(r"\{\{-?\s*\.Values\.([A-Za-z0-9_.]+)\s*(\|\s*quote\s*)?-?\}\}")


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f".Values.{dotted} is not in values.yaml"
        node = node[part]
    return node


def _render_toml(template: str, values: dict[str, Any]) -> str:
    """What `tpl` makes of a role's `config` for fields of the form {{ .Values.a.b }}: Go
    prints bools as true/false and numbers plainly; anything else must not be there."""

    def sub(m: re.Match[str]) -> str:
        value = _lookup(values, m.group(1))
        if m.group(2):
            return json.dumps(str(value))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise AssertionError(f".Values.{m.group(1)} is a {type(value).__name__}: not a TOML scalar")

    rendered = _FIELD.sub(sub, template)
    assert "{{" not in rendered, f"template syntax beyond .Values fields in a config:\n{rendered}"
    return rendered


def _check_config(path: Path) -> set[str]:
    """load_config accepts the file and each of its plugins' Structs its table; returns the
    plugin set. Every plugin named is installed and loads, every table belongs to one."""
    config = load_config(path, search_cwd=False)
    names = config.settings.plugins
    installed = discover()
    assert names, f"{path}: [osiris].plugins is empty"
    assert set(names) <= set(installed), f"{path}: unknown plugins {set(names) - set(installed)}"
    loaded = load_plugins(names)
    for name in names:
        assert loaded.records[name].loaded, f"{path}: plugin {name} failed: {loaded.records[name].error}"
    loaded.validate_configs(config)  # raises ConfigError naming the file, table and key
    assert set(config.plugin_tables) <= set(names), (
        f"{path}: tables for plugins this role does not run: {set(config.plugin_tables) - set(names)}")
    return set(names)


@pytest.fixture(autouse=True)
def _no_osiris_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OSIRIS_"):
            monkeypatch.delenv(key)


# --- files parse -------------------------------------------------------------------------
def test_every_deploy_file_parses() -> None:
    yamls = [COMPOSE, CHART / "Chart.yaml", *CHART.glob("values*.yaml"), DOCKER / "hadolint.yaml"]
    for path in yamls:
        assert isinstance(_yaml(path), dict), path
    for path in (DEPLOY / "config").glob("*.toml"):
        tomllib.loads(path.read_text())
    assert sorted(p.stem for p in (DEPLOY / "config").glob("*.toml")) == sorted(ROLES)
    assert sorted(_dockerfiles()) == sorted(ROLES)
    for path in _dockerfiles().values():
        for word, args in _instructions(path):
            if word in ("ENTRYPOINT", "CMD") or (word == "HEALTHCHECK" and " CMD [" in args):
                _exec_form(args if word != "HEALTHCHECK" else args[args.index("CMD [") + 4:])
    # templates are Go templates, not YAML until rendered: at least balanced delimiters
    for path in (CHART / "templates").iterdir():
        text = path.read_text()
        assert text.count("{{") == text.count("}}"), path


# --- osiris.toml per role ----------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_compose_role_config_is_accepted(role: str) -> None:
    plugins = _check_config(DEPLOY / "config" / f"{role}.toml")
    assert ("gateway" in plugins) == (role == "core")


@pytest.mark.parametrize("canary", [False, True], ids=["values", "values-canary"])
@pytest.mark.parametrize("planner", [True, False], ids=["planner-on", "planner-off"])
def test_chart_role_configs_are_accepted(tmp_path: Path, canary: bool, planner: bool) -> None:
    values = _chart_values(canary, azrPlanner={"enabled": planner})
    served: set[str] = set()
    for role in CHART_ROLES:
        path = tmp_path / f"{role}.toml"
        path.write_text(_render_toml(values[role]["config"], values))
        served |= _check_config(path)
    dgm = load_config(tmp_path / "core.toml", search_cwd=False).plugin_tables["dgm"]
    assert dgm["serve_planners"] is planner  # azrPlanner.enabled is the dgm planner service
    assert served == {"gateway", "orchestrator", "feedback", "sim", "dgm", "bridge", "hermes",
                      "phi3", "trainer", "gpu", "tts"}, "every production plugin runs in one role"


def test_configmap_and_deployments_use_each_roles_config_and_args() -> None:
    cm = (CHART / "templates" / "configmap.yaml").read_text()
    dep = (CHART / "templates" / "deployments.yaml").read_text()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "tpl $v.config $" in cm and "osiris.toml: |" in cm
    assert "toYaml $v.args" in dep and "mountPath: /etc/osiris" in dep
    roles = re.search(r'define "osiris.roles" -}}\s*(.*?)\s*{{-', helpers, re.S)
    assert roles and roles.group(1).split() == list(CHART_ROLES)


# --- command lines -------------------------------------------------------------------------
def _command_lines() -> dict[str, list[str]]:
    """Every osiris command line in the Dockerfiles, compose and the chart's values, by where."""
    lines: dict[str, list[str]] = {}
    for path in _dockerfiles().values():
        ep = _entrypoint(path)
        assert ep == ["osiris"], f"{path.name}: ENTRYPOINT must be osiris"
        for word, args in _instructions(path):
            if word == "CMD":
                lines[f"{path.name} CMD"] = ep + _exec_form(args)
            elif word == "HEALTHCHECK":
                lines[f"{path.name} HEALTHCHECK"] = _exec_form(args[args.index("CMD [") + 4:])
    compose = _yaml(COMPOSE)
    for name, svc in compose["services"].items():
        if "build" in svc:
            ep = _entrypoint(DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"])
            lines[f"compose {name} command"] = ep + svc["command"]
        test = svc.get("healthcheck", {}).get("test", [])
        if test[1:2] == ["osiris"]:
            lines[f"compose {name} healthcheck"] = test[1:]
    for canary in (False, True):
        values = _chart_values(canary)
        for role in CHART_ROLES:
            lines[f"chart {role} args"] = ["osiris", *values[role]["args"]]
            if "healthCommand" in values[role]:
                lines[f"chart {role} healthCommand"] = values[role]["healthCommand"]
    return {where: line for where, line in lines.items() if line[:1] == ["osiris"]}


RESOLVE = textwrap.dedent("""
    # Builds the `osiris` group exactly as the console script does (core verbs + every
    # installed plugin's), then parses each line with --help appended: click parses every
    # option (unknown verbs and options fail) and exits before touching files or NATS.
    import contextlib, io, json, sys
    import click
    import osiris_core.cli as cli_module
    group = cli_module.cli
    group.main = lambda *a, **k: None      # main() wires the verbs, then would run the group
    cli_module.main()
    del group.main
    results = {}
    for where, argv in json.load(sys.stdin).items():
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                group.main(argv[1:] + ["--help"], prog_name="osiris", standalone_mode=False)
            results[where] = None
        except click.exceptions.Exit as e:
            results[where] = None if e.exit_code == 0 else f"exit {e.exit_code}"
        except click.ClickException as e:
            results[where] = e.format_message()
    print(json.dumps(results))
""")


def test_every_osiris_command_line_is_a_real_verb() -> None:
    lines = _command_lines()
    assert len(lines) >= 10, lines
    proc = subprocess.run([sys.executable, "-c", RESOLVE], input=json.dumps(lines),
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {where: (lines[where], err) for where, err in results.items() if err is not None}
    assert not bad, bad
    # the resolver really rejects what is not a verb or an option
    probe = {"bogus verb": ["osiris", "no-such-verb"], "bogus option": ["osiris", "run", "--nope"]}
    proc = subprocess.run([sys.executable, "-c", RESOLVE], input=json.dumps(probe),
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert all(json.loads(proc.stdout.strip().splitlines()[-1]).values()), proc.stdout


def test_run_only_matches_the_roles_plugin_set() -> None:
    """`--only` and [osiris].plugins name the same plugins, so neither drifts alone."""
    for where, line in _command_lines().items():
        if line[1:2] != ["run"] or "--only" not in line:
            continue
        only = set(line[line.index("--only") + 1].split(","))
        role = next(r for r in ROLES if r in where)
        plugins = tomllib.loads((DEPLOY / "config" / f"{role}.toml").read_text())["osiris"]["plugins"]
        assert only == set(plugins), (where, only, plugins)


# --- env names, ports, health route ------------------------------------------------------------
def _config_env_names() -> set[str]:
    names = set(OsirisSettings.__env__.values())
    loaded = load_plugins(None)
    for rec in loaded.records.values():
        if rec.loaded:
            names |= set(rec.config_schema.__env__.values())
    return names


def test_osiris_env_names_are_ones_the_config_reads() -> None:
    known = _config_env_names()
    files = [COMPOSE, *DOCKER.glob("*.Dockerfile"), *CHART.rglob("*.yaml"), *CHART.rglob("*.tpl")]
    used = {m for f in files for m in re.findall(r"\bOSIRIS_[A-Z0-9_]+", f.read_text())}
    # compose's own substitutions (${OSIRIS_HTTP_PORT:-8000}, ${OSIRIS_MODELS_DIR}) are not
    # passed to osiris: only names given to a container must be config names
    compose = _yaml(COMPOSE)
    given = {k for svc in compose["services"].values() for k in svc.get("environment", {})
             if k.startswith("OSIRIS_") and "image" in svc and svc["image"].startswith("osiris-")}
    chart_given = set(re.findall(r"name: (OSIRIS_[A-Z0-9_]+)",
                                 (CHART / "templates" / "deployments.yaml").read_text()))
    assert given and chart_given
    assert given | chart_given <= known, (given | chart_given) - known
    compose_only = {"OSIRIS_HTTP_PORT", "OSIRIS_MODELS_DIR"}
    # the users' passwords are nats-server's variables (osiris nats-config --password-ref)
    compose_only |= {n for n in used if n.startswith(PASSWORD_ENV.format(role=""))}
    assert used <= known | compose_only, used - known - compose_only
    # the chart's pods get a token; compose's services each their own user (below)
    assert "OSIRIS_NATS_TOKEN" in known and "OSIRIS_NATS_TOKEN" not in given


# --- NATS users ------------------------------------------------------------------------------
USERS_FILE = DEPLOY / "nats" / "osiris-users.conf"


def compose_users() -> dict[str, list[str]]:
    """Each osiris compose service's NATS user → the roles its plugins play."""
    from osiris_core.config import load_config
    from osiris_core.ops.natsconfig import load_for

    nats_roles = load_for(load_config(None, search_cwd=False))[1]
    users: dict[str, list[str]] = {}
    for name, svc in _yaml(COMPOSE)["services"].items():
        if "build" not in svc:
            continue
        env = svc["environment"]
        user = env["OSIRIS_NATS_USER"]
        assert env["OSIRIS_NATS_INBOX_PREFIX"] == f"_INBOX_{user}", name
        assert env["OSIRIS_NATS_PASSWORD"].startswith(f"${{OSIRIS_NATS_PASSWORD_{user.upper()}:?")
        plugins = set(tomllib.loads((DEPLOY / "config" / f"{name}.toml").read_text())
                      ["osiris"]["plugins"])
        roles = [r.name for r in nats_roles if set(r.plugins) & plugins]
        covered = {p for r in nats_roles if r.name in roles for p in r.plugins}
        assert plugins <= covered, (name, plugins - covered)
        users[user] = roles
    return users


def test_compose_users_file_is_the_one_nats_config_generates() -> None:
    users = compose_users()
    assert users == {"core": ["bridge", "dgm", "feedback", "gateway", "orchestrator", "sim"],
                     "models": ["gpu", "models", "trainer"], "tts": ["models"]}
    args = [str(BIN / "osiris"), "nats-config", "-c", str(DEPLOY / "config" / "core.toml"),
            "--password-ref", "--users-only"]
    for user, roles in users.items():
        args += ["--user", f"{user}={','.join(roles)}"]
    # the plugins this repository installs, not the test suite's extra ones
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr
    assert USERS_FILE.read_text().endswith(result.stdout), (
        "deploy/nats/osiris-users.conf is out of date: regenerate it with the command in its "
        "header")
    assert "include ./osiris-users.conf" in (DEPLOY / "nats" / "nats-server.conf").read_text()
    # nats-server gets every password the file refers to, and nothing else of osiris
    nats_env = set(_yaml(COMPOSE)["services"]["nats"]["environment"])
    refs = set(re.findall(r'"password": \$(OSIRIS_NATS_PASSWORD_[A-Z]+),', USERS_FILE.read_text()))
    assert refs == nats_env == {f"OSIRIS_NATS_PASSWORD_{u.upper()}" for u in [*users, "operator"]}


def test_gateway_port_and_health_route_agree_everywhere() -> None:
    from osiris_gateway.config import GatewayConfig
    from osiris_gateway.controllers.ops import HealthController

    port = GatewayConfig().port
    assert "/health" in HealthController.health.paths
    health = f"http://127.0.0.1:{port}/health"
    core = _instructions(DOCKER / "core.Dockerfile")
    assert ("EXPOSE", str(port)) in core
    assert any(w == "HEALTHCHECK" and health in a for w, a in core)
    assert tomllib.loads((DEPLOY / "config" / "core.toml").read_text())["plugins"]["gateway"]["port"] == port
    svc = _yaml(COMPOSE)["services"]["core"]
    assert any(p.endswith(f":{port}") for p in svc["ports"])
    assert health in " ".join(svc["healthcheck"]["test"])
    values = _chart_values()
    assert values["gateway"]["port"] == port
    rendered = tomllib.loads(_render_toml(values["gateway"]["config"], values))
    assert rendered["plugins"]["gateway"] == {"host": "0.0.0.0", "port": port}
    dep = (CHART / "templates" / "deployments.yaml").read_text()
    assert "containerPort: {{ $v.port }}" in dep and dep.count("path: /health") == 3


# --- compose ---------------------------------------------------------------------------------------
def test_compose_references_resolve() -> None:
    compose = _yaml(COMPOSE)
    services = compose["services"]
    volumes, networks = set(compose.get("volumes") or {}), set(compose.get("networks") or {})
    assert {"nats", "redis", "core", "models", "tts"} <= set(services)
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] == "service_healthy" and "healthcheck" in services[dep]
        for net in svc.get("networks") or []:
            assert net in networks, (name, net)
        for mount in svc.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith(("./", "../")):
                assert (DEPLOY / source).exists(), (name, source)
            elif not source.startswith(("$", "/")):
                assert source in volumes, (name, source)
        assert "healthcheck" in svc, name
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
            role = Path(svc["build"]["dockerfile"]).name.removesuffix(".Dockerfile")
            assert f"./config/{role}.toml:/etc/osiris/osiris.toml:ro" in svc["volumes"]
    for gpu_role in ("models", "tts"):
        devices = services[gpu_role]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert "gpu" not in json.dumps(services["core"].get("deploy", {}))


def test_nats_server_config_is_durable_jetstream() -> None:
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    body = "\n".join(line.split("#")[0] for line in conf.splitlines())
    assert body.count("{") == body.count("}")
    js = re.search(r"jetstream\s*\{(.*?)\}", body, re.S)
    assert js and re.search(r"^\s*sync_interval:\s*always\s*$", js.group(1), re.M)
    assert re.search(r"^\s*store_dir:\s*/data/", js.group(1), re.M)
    nats = _yaml(COMPOSE)["services"]["nats"]
    assert "./nats/nats-server.conf:/etc/nats/nats-server.conf:ro" in nats["volumes"]
    assert "./nats/osiris-users.conf:/etc/nats/osiris-users.conf:ro" in nats["volumes"]
    assert any(v.startswith("nats-data:/data") for v in nats["volumes"])
    chart_js = _chart_values()["nats"]["config"]["jetstream"]
    assert chart_js["enabled"] is True and chart_js["merge"]["sync_interval"] == "always"


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """check-jsonschema's vendored compose-spec schema (no network)."""
    proc = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                           str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Dockerfiles ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_passes_hadolint(role: str) -> None:
    proc = subprocess.run([str(BIN / "hadolint"), "--config", str(DOCKER / "hadolint.yaml"),
                           str(_dockerfiles()[role])], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_shape(role: str) -> None:
    ins = _instructions(_dockerfiles()[role])
    froms = [a for w, a in ins if w == "FROM"]
    args = dict(a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)
    assert len(froms) == 2 and froms[0].endswith(" AS build"), "multi-stage: build, then run"
    base = args[froms[1].strip("${}")]
    assert re.search(r":\d+\.\d+\.\d+-", base), f"{base}: pin the base image to a release tag"
    assert base.startswith("python:" if role == "core" else "nvidia/cuda:")
    assert [a for w, a in ins if w == "USER"] == ["10001:10001"], "run as the numeric non-root user"
    assert any(w == "HEALTHCHECK" for w, _ in ins)
    assert ("COPY", f"deploy/config/{role}.toml /etc/osiris/osiris.toml") in ins
    installs = " ".join(a for w, a in ins if w == "RUN" and "pip install" in a)
    assert "[dev]" not in installs and "[test]" not in installs and " -e " not in installs


def test_models_image_swaps_in_the_cuda_onnxruntime_builds() -> None:
    text = (DOCKER / "models.Dockerfile").read_text()
    pins = {}
    for p in ("phi3", "models"):
        deps = tomllib.loads((ROOT / "plugins" / p / "pyproject.toml").read_text())["project"]["dependencies"]
        pins.update(dict(d.split("==") for d in deps if d.startswith("onnxruntime")))
    assert f"onnxruntime-gpu=={pins['onnxruntime']}" in text  # same release as the CPU pin
    assert f"onnxruntime-genai-cuda=={pins['onnxruntime-genai']}" in text
    assert "pip uninstall -y onnxruntime onnxruntime-genai" in text
    for extra in ('"./plugins/hermes[gpu]"', '"./plugins/phi3[gpu]"', '"./plugins/trainer[gpu]"'):
        assert extra in text


def test_tts_image_keeps_chatterbox_pin_of_the_tts_plugin() -> None:
    script = (ROOT / "plugins" / "tts" / "scripts" / "chatterbox-env.sh").read_text()
    pinned = re.search(r'CHATTERBOX_VERSION:-([0-9.]+)', script)
    assert pinned and f"ARG CHATTERBOX_VERSION={pinned.group(1)}" in (DOCKER / "tts.Dockerfile").read_text()
    assert "torch" not in (DOCKER / "core.Dockerfile").read_text()


def test_dockerignore_keeps_out_what_must_not_ship_and_in_what_is_copied() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for must in (".venv", ".git", "osiris_data", "models", "**/*.egg-info", "**/__pycache__"):
        assert must in patterns, must
    copied = {a.split()[0] for p in _dockerfiles().values() for w, a in _instructions(p)
              if w == "COPY" and not a.startswith("--from")}
    copied |= {s for p in _dockerfiles().values() for w, a in _instructions(p)
               if w == "COPY" and not a.startswith("--from") for s in a.split()[:-1]}
    for src in copied:
        assert (ROOT / src).exists(), src
        top = src.split("/")[0]
        assert src not in patterns and top not in patterns, f"{src} is copied but ignored"


# --- Helm chart --------------------------------------------------------------------------------
def test_chart_depends_on_the_official_nats_chart_with_jetstream() -> None:
    chart = _yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    (dep,) = chart["dependencies"]
    assert dep["name"] == "nats" and dep["repository"] == "https://nats-io.github.io/k8s/helm/charts/"
    assert dep["condition"] == "nats.enabled" and _chart_values()["nats"]["enabled"] is True
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'printf "nats://%s-nats:4222" .Release.Name' in helpers  # the NATS chart's service


def test_every_values_path_a_template_reads_exists() -> None:
    values = _chart_values()
    role_keys = {k for r in CHART_ROLES for k in values[r]}
    for path in (CHART / "templates").iterdir():
        text = path.read_text()
        for dotted in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            _lookup(values, dotted.rstrip("."))
        for key in re.findall(r"\$v\.([A-Za-z0-9_]+)", text):
            assert key in role_keys, f"{path.name}: $v.{key} is in no role's values"
        for name in re.findall(r'include "([^"]+)"', text):
            assert f'define "{name}"' in (CHART / "templates" / "_helpers.tpl").read_text(), name
    for role in CHART_ROLES:
        v = values[role]
        for key in ("enabled", "replicas", "image", "args", "config", "resources"):
            assert key in v, (role, key)
        assert re.fullmatch(r"\d+\.\d+\.\d+", v["image"]["tag"]), "pin the image tag"


def test_gpu_roles_get_gpu_nodes_tolerations_and_limits() -> None:
    values = _chart_values()
    for role in ("models", "tts"):
        v = values[role]
        assert v["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert v["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in v["tolerations"])
        assert v["modelsClaim"]
    for role in ("gateway", "core"):
        assert "nvidia.com/gpu" not in json.dumps(values[role])
    assert values["core"]["replicas"] == 1, "the feedback actor is the single LanceDB writer"


def test_canary_values_one_replica_ten_percent_full_tracing() -> None:
    canary = _chart_values(canary=True)
    assert all(canary[r]["replicas"] == 1 for r in CHART_ROLES)
    assert canary["ingress"]["enabled"] and canary["ingress"]["canary"] == {"enabled": True, "weight": 10}
    assert canary["tracing"]["enabled"] is True and canary["tracing"]["sampleRatio"] == 1.0
    ingress = (CHART / "templates" / "ingress.yaml").read_text()
    assert 'nginx.ingress.kubernetes.io/canary-weight: {{ .Values.ingress.canary.weight | quote }}' in ingress
    dep = (CHART / "templates" / "deployments.yaml").read_text()
    for env in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER",
                "OTEL_TRACES_SAMPLER_ARG"):
        assert f"name: {env}" in dep
    assert "value: {{ $.Values.tracing.sampleRatio | quote }}" in dep
    default = _chart_values()
    assert default["tracing"]["enabled"] is False and default["ingress"]["canary"]["enabled"] is False


def test_planner_toggle_keeps_the_seeds_name_and_reaches_the_dgm_plugin() -> None:
    values = _chart_values()
    assert values["azrPlanner"] == {"enabled": True}
    assert "serve_planners = {{ .Values.azrPlanner.enabled }}" in values["core"]["config"]
    from osiris_dgm.config import DgmConfig

    assert any(f.name == "serve_planners" for f in msgspec.structs.fields(DgmConfig))


def test_streams_keep_as_many_copies_as_the_nats_cluster_allows() -> None:
    """R3 streams on the bundled 3-node cluster: a node can die without losing an acked
    event; never more copies than there are nodes (JetStream would refuse the stream)."""
    values = _chart_values()
    nodes = values["nats"]["config"]["cluster"]["replicas"]
    assert values["streamReplicas"] == min(nodes, 3)
    for role in CHART_ROLES:
        rendered = tomllib.loads(_render_toml(values[role]["config"], values))
        assert rendered["osiris"]["stream_replicas"] == values["streamReplicas"], role


# --- the Grafana dashboard ---------------------------------------------------------------------
DASHBOARD = DEPLOY / "grafana" / "osiris-actors.json"


def _exposed_series() -> dict[str, str]:
    """Every series name the per-actor metrics expose (osiris_core.observability.metrics) → its family."""
    from osiris_core.observability.metrics import ProcessMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {fam.name + suffix: fam.name for fam in ProcessMetrics().registry.collect()
            for suffix in suffixes[fam.type]}


def test_grafana_dashboard_queries_the_metrics_osiris_exposes_and_shows_them_all() -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in variables.values() if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"\bosiris_[a-z0-9_]+", e)}
    exposed = _exposed_series()
    assert used and used <= set(exposed), \
        f"not exposed by osiris_core.observability.metrics: {used - set(exposed)}"
    assert {exposed[m] for m in used} == set(exposed.values()), "a metric without a panel"
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    latency = next(p for p in dash["panels"] if "duration" in p["title"].lower()
                   and any("request_duration" in t["expr"] for t in p["targets"]))
    assert all(t.get("exemplar") for t in latency["targets"])
