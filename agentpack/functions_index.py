"""The service's own sources, and its functions: one folder under functions/ each, named after its entry point.

The sources are found in one of two places. In a checkout (this package imported
from the working tree, editable or with PYTHONPATH) they are the checkout's own
files. In an installation (``pip install .``) they are the copy the wheel carries:
the ``shared`` package beside this one, and ``functions/*/main.py`` plus the
deployment files (firebase.json, firestore.rules, firestore.indexes.json,
requirements.txt) as the data package ``agentpack_service``. So staging and
deploying need no checkout.

The route a function serves is the one its ``@http.endpoint("...")`` names;
serve, stage and deploy all read it from here, so a route is written once.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

DEPLOYMENT_FILES = ("firebase.json", "firestore.rules", "firestore.indexes.json", "requirements.txt")
DATA_PACKAGE = "agentpack_service"  # the wheel's copy of functions/ and DEPLOYMENT_FILES (pyproject.toml)


class SourcesMissing(RuntimeError):
    """Neither a checkout nor an installation with the service's sources: a broken install."""


@dataclass(frozen=True)
class ServiceSources:
    root: Path  # holds functions/ and DEPLOYMENT_FILES
    shared: Path  # the shared/ package directory
    checkout: bool  # a working tree (True) or an installed copy (False)

    @property
    def functions(self) -> Path:
        return self.root / "functions"


def _complete(root: Path) -> bool:
    return (root / "functions").is_dir() and all((root / name).is_file() for name in DEPLOYMENT_FILES)


def locate() -> ServiceSources:
    """The checkout this package sits in, else the installed copy; SourcesMissing if neither is whole."""
    checkout = Path(__file__).resolve().parent.parent
    if _complete(checkout) and (checkout / "shared" / "__init__.py").is_file():
        return ServiceSources(root=checkout, shared=checkout / "shared", checkout=True)
    data = importlib.util.find_spec(DATA_PACKAGE)
    shared = importlib.util.find_spec("shared")
    roots = [Path(entry) for entry in (data.submodule_search_locations or [])] if data else []
    root = next((candidate for candidate in roots if _complete(candidate)), None)
    if root is None or shared is None or shared.origin is None:
        raise SourcesMissing(
            f"the service's sources are missing (no checkout around {checkout}, no installed {DATA_PACKAGE}); "
            "reinstall agentpack-identity"
        )
    return ServiceSources(root=root, shared=Path(shared.origin).parent, checkout=False)


SOURCES = locate()
ROOT = SOURCES.root
FUNCTIONS = SOURCES.functions


@dataclass(frozen=True)
class Function:
    name: str  # entry point and folder name, e.g. agents_create
    route: str  # e.g. agents/create
    method: str
    source: Path

    @property
    def deploy_name(self) -> str:
        return self.name.replace("_", "-")


def _endpoint(source: Path, name: str) -> tuple[str, str]:
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "endpoint":
                    route = ast.literal_eval(decorator.args[0])
                    method = next((ast.literal_eval(k.value) for k in decorator.keywords if k.arg == "method"), "POST")
                    return str(route), str(method)
    raise SourcesMissing(f"{source} has no @http.endpoint function named {name}")


def all_functions() -> list[Function]:
    found = []
    for source in sorted(FUNCTIONS.glob("*/main.py")):
        name = source.parent.name
        route, method = _endpoint(source, name)
        found.append(Function(name=name, route=route, method=method, source=source))
    return found
