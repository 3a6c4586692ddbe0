"""The project's functions: one folder under functions/ each, named after its entry point.

The route a function serves is the one its ``@http.endpoint("...")`` names;
serve, stage and deploy all read it from here, so a route is written once.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"


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
    raise SystemExit(f"error: {source} has no @http.endpoint function named {name}")


def all_functions() -> list[Function]:
    found = []
    for source in sorted(FUNCTIONS.glob("*/main.py")):
        name = source.parent.name
        route, method = _endpoint(source, name)
        found.append(Function(name=name, route=route, method=method, source=source))
    return found
