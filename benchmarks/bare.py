"""The real-server benchmark's bare apps: ``benchmarks.bare:asgi_app`` and ``:wsgi_app``."""

from __future__ import annotations

from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def _chat(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/chat", _chat, methods=["GET", "POST"])])


def flask_app() -> Flask:
    app = Flask("bench")
    app.add_url_rule("/chat", "chat", lambda: "hello", methods=["GET", "POST"])
    return app


asgi_app = starlette_app()
wsgi_app = flask_app()
