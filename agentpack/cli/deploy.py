"""agentpack stage and agentpack deploy: build the functions' source folders, print (or run) the deployment.

Every function is a gen2, python312, HTTP-triggered Cloud Function built from
its staged folder, running as the ``agentpack-identity`` service account, which
needs ``roles/datastore.user`` and ``roles/secretmanager.secretAccessor`` on the
secrets ``agentpack-bridge-key-hashes`` and ``agentpack-secrets-keys``. The
functions read those secrets from Secret Manager themselves (once per instance,
``AGENTPACK_SECRET_SOURCE=secret-manager``): no secret is bound to a function and
no secret value appears in any command. docs/deploy.md walks through it all.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from agentpack.cli.context import EXIT_FAILED, EXIT_OK, Context, UsageError

SERVICE_ACCOUNT = "agentpack-identity"
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
GET_FIREBASE = (
    "the firebase CLI is missing: in a checkout, scripts/setup installs the pinned one into node_modules/; "
    "elsewhere install it with 'npm install -g firebase-tools@15' (Node.js 20 or newer)"
)
GET_GCLOUD = "the gcloud CLI is missing: install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install)"


class Step(NamedTuple):
    """One command of the deployment, and the folder it runs in (None: the current one)."""

    argv: list[str]
    cwd: Path | None = None

    def shell(self) -> str:
        """As a person would type it; a subshell for another folder, so pasting it moves nobody."""
        line = shlex.join(self.argv)
        return f"(cd {shlex.quote(_shown(self.cwd))} && {line})" if self.cwd is not None else line


class Prerequisite(Exception):
    """Something --apply needs is missing (a binary, Google credentials): nothing was run."""


def firebase_binary() -> str | None:
    """The checkout's pinned firebase CLI (node_modules/.bin, installed by scripts/setup), else one on PATH."""
    from agentpack.functions_index import SOURCES

    if SOURCES.checkout:
        pinned = SOURCES.root / "node_modules" / ".bin" / "firebase"
        if os.access(pinned, os.X_OK):
            return str(pinned)
    return shutil.which("firebase")


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when under it (the printed commands run from here), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _capability_keys(ctx: Context) -> str | None:
    from agentpack.staging import StagingError, checked_capability_keys

    if not ctx.args.capability_public_keys:
        return None
    try:
        return checked_capability_keys(ctx.args.capability_public_keys)
    except StagingError as problem:
        raise UsageError(str(problem)) from None


def _build_dir(ctx: Context) -> Path:
    from agentpack.staging import default_build_dir

    return Path(ctx.args.out) if ctx.args.out else default_build_dir()


def stage(ctx: Context) -> int:
    from agentpack.functions_index import all_functions
    from agentpack.staging import stage as stage_function

    keys = _capability_keys(ctx)
    build = _build_dir(ctx)
    for function in all_functions():
        print(_shown(stage_function(function, build / "functions", keys)), file=ctx.out)
    return EXIT_OK


def deploy_steps(project: str, region: str, build: Path, keys: str | None, firebase: str) -> list[Step]:
    """Stage every function and the Firestore files under ``build``; the commands that deploy them."""
    from agentpack.functions_index import all_functions
    from agentpack.staging import stage as stage_function
    from agentpack.staging import stage_firestore

    env = [f"GOOGLE_CLOUD_PROJECT={project}", "AGENTPACK_SECRET_SOURCE=secret-manager"]
    steps = []
    for function in all_functions():
        folder = stage_function(function, build / "functions", keys)
        steps.append(Step([
            "gcloud", "functions", "deploy", function.deploy_name,
            "--gen2", "--runtime=python312", f"--region={region}", f"--project={project}",
            f"--source={_shown(folder)}", f"--entry-point={function.name}",
            "--trigger-http", "--allow-unauthenticated",  # the service authenticates every request itself
            f"--service-account={SERVICE_ACCOUNT}@{project}.iam.gserviceaccount.com",
            "--set-env-vars=" + ",".join(env),
        ]))  # fmt: skip
    # firebase finds firebase.json (and the rules and indexes it names) in the folder it runs in.
    config = stage_firestore(build)
    only = "firestore:rules,firestore:indexes"
    steps.append(Step([firebase, "deploy", "--only", only, "--project", project, "--non-interactive"], config.parent))
    return steps


def _has_google_credentials_for_firebase() -> bool:
    # firebase-tools takes GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, or its own login.
    gcloud_config = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    return bool(
        os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        or (gcloud_config / "application_default_credentials.json").is_file()
        or (Path.home() / ".config" / "configstore" / "firebase-tools.json").is_file()
    )


def check_prerequisites(firebase: str | None) -> tuple[str, str]:
    """gcloud and firebase, both found and signed in; Prerequisite (with what to do) otherwise."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise Prerequisite(GET_GCLOUD)
    if firebase is None:
        raise Prerequisite(GET_FIREBASE)
    try:
        accounts = subprocess.run(
            [gcloud, "auth", "list", "--filter=status:ACTIVE", "--format=value(account)"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as problem:
        raise Prerequisite(f"cannot run gcloud ({type(problem).__name__}): check the Cloud SDK install") from None
    if accounts.returncode != 0 or not accounts.stdout.strip():
        raise Prerequisite("no Google credentials for gcloud: run 'gcloud auth login' (or activate a service account)")
    if not _has_google_credentials_for_firebase():
        raise Prerequisite(
            "no Google credentials for firebase: run 'gcloud auth application-default login', "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        )
    return gcloud, firebase


def deploy(ctx: Context) -> int:
    project, region = ctx.args.project, ctx.args.region
    if _PROJECT.fullmatch(project) is None:
        raise UsageError("--project must be a Google Cloud project ID (6 to 30 of a-z, 0-9 and -)")
    if _REGION.fullmatch(region) is None:
        raise UsageError("--region must be a Cloud Functions region, e.g. us-central1")
    keys = _capability_keys(ctx)
    firebase = firebase_binary()
    if ctx.args.apply:
        try:
            check_prerequisites(firebase)
        except Prerequisite as missing:
            print(f"agentpack: error: {missing}; nothing was deployed", file=ctx.err)
            return EXIT_FAILED
    elif firebase is None:
        ctx.note(f"note: {GET_FIREBASE}")
    for step in deploy_steps(project, region, _build_dir(ctx), keys, firebase or "firebase"):
        print(step.shell(), file=ctx.out, flush=True)
        if not ctx.args.apply:
            continue
        try:
            code = subprocess.run(step.argv, cwd=step.cwd, check=False).returncode
        except OSError as problem:
            code, reason = -1, problem.strerror or type(problem).__name__
        else:
            reason = f"exit {code}"
        if code != 0:
            print(f"agentpack: error: failed ({reason}): {shlex.join(step.argv[:4])}", file=ctx.err)
            return EXIT_FAILED
    return EXIT_OK
