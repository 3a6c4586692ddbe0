"""Print (and with --apply, run) the deployment of every function, the rules and the indexes.

Every function is a gen2, python312, HTTP-triggered Cloud Function built from
its staged folder. The bridge-key hashes are bound from Secret Manager as an
environment variable; no secret value ever appears in these commands.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from scripts import stage
from scripts.functions_index import ROOT, all_functions

BRIDGE_SECRET = "agentpack-bridge-key-hashes"  # noqa: S105 - the secret's name, not a value


def commands(project: str, region: str, capability_keys: str | None) -> list[list[str]]:
    result = []
    env = [f"GOOGLE_CLOUD_PROJECT={project}"]
    for function in all_functions():
        folder = stage.stage(function)
        command = [
            "gcloud", "functions", "deploy", function.deploy_name,
            "--gen2", "--runtime=python312", f"--region={region}", f"--project={project}",
            f"--source={folder.relative_to(ROOT)}", f"--entry-point={function.name}",
            "--trigger-http", "--allow-unauthenticated",  # the service authenticates every request itself
            f"--set-secrets=AGENTPACK_BRIDGE_KEY_HASHES={BRIDGE_SECRET}:latest",
            "--set-env-vars=" + ",".join(env),
        ]  # fmt: skip
        if capability_keys:
            command.append(f"--update-env-vars=^|^AGENTPACK_CAPABILITY_PUBLIC_KEYS={capability_keys}")
        result.append(command)
    result.append(["firebase", "deploy", "--only", "firestore:rules,firestore:indexes", "--project", project])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: scripts/deploy --project my-project --region europe-west1 --apply",
    )
    parser.add_argument("--project", required=True, help="the Google Cloud project ID")
    parser.add_argument("--region", default="us-central1")
    parser.add_argument("--capability-public-keys", help="JSON {kid: base64url public key} to embed")
    parser.add_argument("--apply", action="store_true", help="run the commands instead of only printing them")
    args = parser.parse_args()
    for command in commands(args.project, args.region, args.capability_public_keys):
        print(shlex.join(command), flush=True)
        if args.apply and subprocess.run(command, check=False).returncode != 0:
            sys.exit(f"error: failed: {shlex.join(command[:4])}")


if __name__ == "__main__":
    main()
