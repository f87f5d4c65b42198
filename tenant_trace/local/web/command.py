"""``tenant-trace serve`` and ``tenant-trace token``: the web view and its tenant-scoped URLs.

    tenant-trace serve [--db PATH] [--host 127.0.0.1] [--port 8765]
    tenant-trace token --tenant T [--ttl 1h] [--host ...] [--port ...]

``serve`` prints one line, the admin URL with a fresh random token (valid while the process
runs), and serves until stopped. ``token`` prints a URL whose signed token shows tenant T
only, until it expires (`access`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from typing import Any

from ...errors import ConfigurationError, InvalidTenantError
from ...export.store import store_path
from ..args import duration
from ..render import visible
from .access import Verifier, load_secret, sign

__all__ = ["register"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``serve`` and ``token`` to the ``tenant-trace`` subcommands."""
    serve = commands.add_parser(
        "serve",
        help="a read-only web view of the store (the ui extra)",
        description="Serve a read-only web view of the store; prints the admin URL.",
    )
    serve.add_argument(
        "--db",
        help="the trace store file (default: $TENANT_TRACE_DB or .tenant-trace/traces.sqlite3)",
    )
    token = commands.add_parser(
        "token",
        parents=[common],
        help="print a URL of the web view that shows one tenant only",
        description="Print a URL of the web view whose signed token shows one tenant only.",
    )
    token.add_argument("--tenant", required=True, help="the tenant the URL shows")
    token.add_argument("--ttl", type=duration, default=3600.0, help="valid for (default 1h)")
    for command in (serve, token):
        command.add_argument("--host", default=DEFAULT_HOST, help="default 127.0.0.1")
        command.add_argument("--port", type=int, default=DEFAULT_PORT, help="default 8765")
    serve.set_defaults(run=_serve)
    token.set_defaults(run=_token)


def _fail(message: str) -> int:
    sys.stderr.write(f"tenant-trace: {message}\n")
    return 2


def _url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def _serve(args: argparse.Namespace, console: Any) -> int:
    path = store_path(args.db)
    if not path.exists():
        return _fail(f"no trace store at {visible(path)}: pass --db or set TENANT_TRACE_DB")
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        return _fail(f"serve needs {exc.name}: pip install 'tenant-trace[ui]'")
    try:
        secret = load_secret(path)
    except ConfigurationError as exc:
        return _fail(str(exc))
    admin = secrets.token_urlsafe(32)
    app = create_app(path, verifier=Verifier(admin, secret, time.time))
    if args.host not in _LOOPBACK:
        sys.stderr.write(
            f"tenant-trace: note: {visible(args.host)} is not loopback: whoever can reach it"
            " and holds a token sees the store\n"
        )
    print(f"tenant-trace web view of {visible(path)}: {_url(args.host, args.port, admin)}")
    sys.stdout.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _token(args: argparse.Namespace, console: Any) -> int:
    path = store_path(args.db)
    if not path.parent.is_dir():
        return _fail(f"no folder for the store at {visible(path)}: pass --db")
    try:
        expires = time.time() + args.ttl
        token = sign(load_secret(path), args.tenant, expires=expires)
    except InvalidTenantError as exc:
        return _fail(f"invalid --tenant: {exc}")
    except ConfigurationError as exc:
        return _fail(str(exc))
    url = _url(args.host, args.port, token)
    if args.json:
        data = {"tenant": args.tenant, "expires": int(expires), "token": token, "url": url}
        console.file.write(json.dumps(data) + "\n")
    else:
        console.file.write(url + "\n")
    return 0
