"""Start an example app under a real server with span capture.

    python -m tests.servers.run uvicorn examples.fastapi_app:app PORT
    python -m tests.servers.run gunicorn examples.flask_app:app PORT

The span file is named by TENANT_TRACE_TEST_SPANFILE; TEST_GUNICORN_WORKERS (default 2) and
TEST_GUNICORN_THREADS (default 8) size gunicorn.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    server, target, port = sys.argv[1:4]
    if server == "uvicorn":
        from tests.servers import spanfile

        spanfile.install()
        import uvicorn

        uvicorn.run(target, host="127.0.0.1", port=int(port), log_level="warning")
    elif server == "gunicorn":
        here = os.path.join(os.path.dirname(__file__), "gunicorn_conf.py")
        workers = os.environ.get("TEST_GUNICORN_WORKERS", "2")
        threads = os.environ.get("TEST_GUNICORN_THREADS", "8")
        os.execvp(
            sys.executable,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                here,
                "-k",
                "gthread",
                "--threads",
                threads,
                "-w",
                workers,
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                target,
            ],
        )
    else:
        raise SystemExit(f"unknown server {server!r}")


if __name__ == "__main__":
    main()
