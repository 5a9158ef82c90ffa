"""The layer rules of docs/architecture.md, checked on every import the code makes (lazy ones too).

core      the pure rules: no I/O module, nothing of HyperBatch above it
support   small OS helpers: core only
config    the configuration models: core and support
services  use cases over the ports: core, config, support (never an adapter)
adapters  one backend each: core, config, support, their own package (never a service)
api       the HTTP application: core, config, support, services, web
web       the dashboard's pages and routes (beside api, which adds them): core, config, support, services
wiring    one module per kind of process: anything but the CLI
cli       hyperbatch.cli, the pure core, config, defaults, support: the scheduler only through HTTP
stacks    the CDK app: hyperbatch.config and hyperbatch.core.names
lambdas   thin Lambda entry points: wiring, services, the AWS adapters, core
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Modules the core must never import: they do I/O (or pull in an SDK that does).
IO_MODULES = ("boto3", "botocore", "sqlite3", "subprocess", "http", "socket", "urllib.request", "requests",
              "aws_lambda_powertools", "shutil", "tempfile", "multiprocessing", "select")

LAYERS = {
    "core": ("hyperbatch.core",),
    "support": ("hyperbatch.core", "hyperbatch.support"),
    "config": ("hyperbatch.core", "hyperbatch.support", "hyperbatch.config"),
    "defaults": ("hyperbatch.defaults",),
    "adapters": (),
    "worker_image": (),
    "services": ("hyperbatch.core", "hyperbatch.config", "hyperbatch.support", "hyperbatch.services"),
    "adapters.local": ("hyperbatch.core", "hyperbatch.config", "hyperbatch.support", "hyperbatch.adapters.local"),
    "adapters.aws": ("hyperbatch.core", "hyperbatch.config", "hyperbatch.support", "hyperbatch.adapters.aws"),
    "api": ("hyperbatch.core", "hyperbatch.config", "hyperbatch.support", "hyperbatch.services", "hyperbatch.api",
            "hyperbatch.web", "hyperbatch"),
    "web": ("hyperbatch.core", "hyperbatch.config", "hyperbatch.support", "hyperbatch.services", "hyperbatch.web"),
    "wiring": ("hyperbatch.core", "hyperbatch.config", "hyperbatch.support", "hyperbatch.services",
               "hyperbatch.adapters", "hyperbatch.api", "hyperbatch.wiring", "hyperbatch.defaults",
               "hyperbatch.worker_image"),
    "cli": ("hyperbatch.cli", "hyperbatch.core", "hyperbatch.config", "hyperbatch.defaults", "hyperbatch.support"),
    "stacks": ("stacks", "hyperbatch.config", "hyperbatch.core.names"),
    "lambdas": ("lambdas", "hyperbatch.wiring", "hyperbatch.services", "hyperbatch.adapters.aws", "hyperbatch.core"),
}


def module_name(path: Path) -> str:
    """The dotted name a file is imported as (cli/ and worker_image/ install under hyperbatch)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("cli", "worker_image"):
        parts.insert(0, "hyperbatch")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    if module in ("hyperbatch", "hyperbatch.api"):
        return "api"
    for prefix in ("hyperbatch.adapters.local", "hyperbatch.adapters.aws"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix.removeprefix("hyperbatch.")
    parts = module.split(".")
    if parts[0] in ("stacks", "lambdas"):
        return parts[0]
    if parts[0] == "hyperbatch" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


def imports(source: str, module: str) -> list[str]:
    """Every module `source` imports, at any depth (relative imports resolved against `module`)."""
    found: list[str] = []
    package = module if module.count(".") == 0 else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import submodule`
    return found


def violations(module: str, source: str) -> list[str]:
    """What `module` imports that its layer forbids (one line each)."""
    layer = layer_of(module)
    if layer is None:
        return []
    allowed = LAYERS[layer]
    out = []
    for name in imports(source, module):
        if layer == "core" and any(name == io or name.startswith(io + ".") for io in IO_MODULES):
            out.append(f"{module} imports {name}: the core does no I/O")
        root = name.split(".")[0]
        if root not in ("hyperbatch", "stacks", "lambdas"):
            continue
        if name in ("hyperbatch",) and layer != "api":
            continue  # `from hyperbatch import X` is judged by its `hyperbatch.X` entry
        if not any(name == a or name.startswith(a + ".") for a in allowed):
            if name.startswith("hyperbatch.") and layer_of(name) is None and name.count(".") == 1:
                # `from hyperbatch import __version__` and the like: not a module of a layer
                if not (ROOT / "hyperbatch" / name.split(".")[1]).exists() and \
                        not (ROOT / "hyperbatch" / (name.split(".")[1] + ".py")).exists():
                    continue
            out.append(f"{module} ({layer}) imports {name}")
    return out


def project_files() -> list[Path]:
    folders = ("hyperbatch", "cli", "stacks", "lambdas", "worker_image")
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_keeps_its_layer():
    found = [line for path in project_files() for line in violations(module_name(path), path.read_text())]
    assert found == []


def test_every_module_has_a_layer():
    assert [module_name(p) for p in project_files() if layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("module", ["hyperbatch.core.states", "hyperbatch.core.model"])
def test_boto3_in_a_core_module_is_caught(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    source = path.read_text() + "\n\nimport boto3\n"
    assert f"{module} imports boto3: the core does no I/O" in violations(module, source)


def test_a_lazy_import_of_an_adapter_in_a_service_is_caught():
    source = "def f():\n    from hyperbatch.adapters.local.sqlite import Database\n"
    assert violations("hyperbatch.services.scheduler", source) == [
        "hyperbatch.services.scheduler (services) imports hyperbatch.adapters.local.sqlite",
        "hyperbatch.services.scheduler (services) imports hyperbatch.adapters.local.sqlite.Database",
    ]


def test_an_adapter_importing_a_service_is_caught():
    source = "from hyperbatch.services import dispatch\n"
    assert "hyperbatch.adapters.aws.sqs (adapters.aws) imports hyperbatch.services.dispatch" in violations(
        "hyperbatch.adapters.aws.sqs", source)


def test_the_cli_reaching_past_http_is_caught():
    source = "from hyperbatch.services.scheduler import Scheduler\n"
    assert violations("hyperbatch.cli.pbs.qsub", source) == [
        "hyperbatch.cli.pbs.qsub (cli) imports hyperbatch.services.scheduler",
        "hyperbatch.cli.pbs.qsub (cli) imports hyperbatch.services.scheduler.Scheduler",
    ]
