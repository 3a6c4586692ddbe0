"""One cold start, run as a fresh process by ``bench.core``: import a function, answer its first request.

The request comes in ``BENCH_COLD_REQUEST`` (JSON: target, source, body, headers) so no key is on the
command line. Prints one JSON line ``{"status": ..., "done": <time.time() at the answer>}`` and exits
at once, so interpreter teardown is not counted.
"""

import json
import os
import sys
import time


def main() -> None:
    spec = json.loads(os.environ["BENCH_COLD_REQUEST"])
    from functions_framework import create_app

    app = create_app(target=spec["target"], source=spec["source"])  # type: ignore[no-untyped-call]
    client = app.test_client()
    response = client.post("/", data=spec["body"], headers={"content-type": "application/json", **spec["headers"]})
    done = time.time()
    sys.stdout.write(json.dumps({"status": response.status_code, "done": done}) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
