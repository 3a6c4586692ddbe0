"""Print (and with --apply, run) the deployment of every function, the rules and the indexes.

Every function is a gen2, python312, HTTP-triggered Cloud Function built from
its staged folder, running as the ``agentpack-identity`` service account, which
needs ``roles/datastore.user`` and ``roles/secretmanager.secretAccessor`` on the
secrets ``agentpack-bridge-key-hashes`` and ``agentpack-secrets-keys``. No secret
value ever appears in these commands.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from scripts import stage
from scripts.functions_index import ROOT, all_functions


def commands(project: str, region: str, capability_keys: str | None) -> list[list[str]]:
    keys = stage.checked_capability_keys(capability_keys) if capability_keys else None
    result = []
    # The functions read the bridge-key hashes and the secrets keys from Secret Manager themselves
    # (once per instance, through the client library): no secret value is in any command or env var.
    env = [f"GOOGLE_CLOUD_PROJECT={project}", "AGENTPACK_SECRET_SOURCE=secret-manager"]
    for function in all_functions():
        folder = stage.stage(function, capability_keys=keys)
        result.append([
            "gcloud", "functions", "deploy", function.deploy_name,
            "--gen2", "--runtime=python312", f"--region={region}", f"--project={project}",
            f"--source={folder.relative_to(ROOT)}", f"--entry-point={function.name}",
            "--trigger-http", "--allow-unauthenticated",  # the service authenticates every request itself
            f"--service-account=agentpack-identity@{project}.iam.gserviceaccount.com",
            "--set-env-vars=" + ",".join(env),
        ])  # fmt: skip
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
