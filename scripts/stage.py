"""Build one self-contained source folder per function, ready for ``gcloud functions deploy``.

Each folder holds the function's main.py, the modules of shared/ it imports
(followed transitively), requirements.txt, and, when configured, the
capability public keys file. Nothing else from the repo is needed to run it.
"""

from __future__ import annotations

import argparse
import ast
import shutil
from pathlib import Path

from scripts.functions_index import ROOT, Function, all_functions

BUILD = ROOT / "build" / "functions"
SHARED = ROOT / "shared"


def shared_imports(source: Path) -> set[str]:
    """Names of shared/ modules that ``source`` imports directly."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "shared":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("shared."))
    return found


def needed_modules(function: Function) -> set[str]:
    needed: set[str] = set()
    pending = shared_imports(function.source)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending |= shared_imports(SHARED / f"{name}.py")
    return needed


def stage(function: Function, build: Path = BUILD) -> Path:
    target = build / function.name
    if target.exists():
        shutil.rmtree(target)
    (target / "shared").mkdir(parents=True)
    shutil.copy2(function.source, target / "main.py")
    shutil.copy2(SHARED / "__init__.py", target / "shared" / "__init__.py")
    for module in sorted(needed_modules(function)):
        shutil.copy2(SHARED / f"{module}.py", target / "shared" / f"{module}.py")
    shutil.copy2(ROOT / "requirements.txt", target / "requirements.txt")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUILD, help="where to build (default: build/functions)")
    args = parser.parse_args()
    for function in all_functions():
        print(stage(function, args.out))


if __name__ == "__main__":
    main()
