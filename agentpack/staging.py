"""Build one self-contained source folder per function, ready for ``gcloud functions deploy``.

Each folder holds the function's main.py, the modules of shared/ it imports
(followed transitively), its static/ files if it has any (their contents: links
into node_modules/ are followed; one with nothing behind it is left out),
requirements.txt, and, when given, the capability public keys as
capability_keys.json (read by shared/config.py when
AGENTPACK_CAPABILITY_PUBLIC_KEYS is unset). Beside them, ``firestore/`` holds
firebase.json, firestore.rules and firestore.indexes.json for ``firebase deploy``.
The sources come from the checkout or from the installed copy (functions_index).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from agentpack.functions_index import SOURCES, Function


class StagingError(ValueError):
    """What was asked cannot be staged (e.g. a malformed or dev-only capability key): nothing is deployed."""


def default_build_dir() -> Path:
    """build/ of the checkout; from an installation, build/ in the current directory (never site-packages)."""
    return (SOURCES.root if SOURCES.checkout else Path.cwd()) / "build"


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
        pending |= shared_imports(SOURCES.shared / f"{name}.py")
    return needed


def stage(function: Function, functions_dir: Path, capability_keys: str | None = None) -> Path:
    """``functions_dir/<name>/``, rebuilt from scratch."""
    target = functions_dir / function.name
    if target.exists():
        shutil.rmtree(target)
    (target / "shared").mkdir(parents=True)
    shutil.copy2(function.source, target / "main.py")
    static = function.source.parent / "static"
    if static.is_dir():
        # A link into node_modules/ with nothing behind it (no npm ci yet) is left out, as the firebase
        # CLI is for a deploy: the function then answers 503 for that file and logs why.
        (target / "static").mkdir()
        for path in sorted(static.iterdir()):
            if path.is_file():
                shutil.copyfile(path, target / "static" / path.name)
    shutil.copy2(SOURCES.shared / "__init__.py", target / "shared" / "__init__.py")
    for module in sorted(needed_modules(function)):
        shutil.copy2(SOURCES.shared / f"{module}.py", target / "shared" / f"{module}.py")
    shutil.copy2(SOURCES.root / "requirements.txt", target / "requirements.txt")
    if capability_keys is not None:
        (target / "capability_keys.json").write_text(capability_keys)
    return target


def stage_firestore(build: Path) -> Path:
    """``build/firestore/`` with firebase.json and the rules and indexes it names; returns its firebase.json."""
    target = build / "firestore"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("firebase.json", "firestore.rules", "firestore.indexes.json"):
        shutil.copy2(SOURCES.root / name, target / name)
    return target / "firebase.json"


def checked_capability_keys(text: str) -> str:
    """The key set as canonical JSON; StagingError for a malformed, non-strict or dev-only key."""
    from shared import errors, tokens
    from shared.config import DEV_ONLY_CAPABILITY_PUBLIC_KEY

    try:
        keyset = tokens.KeySet.from_json(text)
    except errors.ConfigRefused as refusal:
        raise StagingError(refusal.reason) from None
    if any(keyset.public_key(kid) == DEV_ONLY_CAPABILITY_PUBLIC_KEY for kid in keyset):
        raise StagingError("the dev capability key (emulator-config/) must never be deployed")
    return keyset.to_json()
