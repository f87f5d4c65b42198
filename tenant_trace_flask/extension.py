"""The Flask extension: ``TenantTrace(app)``, or ``TenantTrace()`` and later ``init_app(app)``.

The core WSGI middleware wraps ``app.wsgi_app`` and does all the work: it resolves the
tenant, keeps it in context for the whole request (views, error handlers, teardown, every
chunk of a streamed body) and owns the root span. This module adds only Flask's
conventions: options from ``app.config["TENANT_TRACE_*"]``, state in
``app.extensions["tenant_trace"]``, ``g.tenant_id``, the URL rule as ``http.route``, a
`Rejection` raised by a view answered like the middleware's own, and an exception that Flask
turns into a 500 recorded on the span.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tenant_trace.context import get_current_tenant
from tenant_trace.errors import (
    ConfigurationError,
    MissingDependencyError,
    OptionNameError,
    Rejection,
    missing_tenant,
)
from tenant_trace.resolve.policy import unknown_options
from tenant_trace.server.lifecycle import get_current_request, handled_exception
from tenant_trace.server.options import MIDDLEWARE_OPTIONS, MiddlewareOptions
from tenant_trace.server.refusal import refuse
from tenant_trace.server.wsgi import TenantTraceWSGIMiddleware

try:
    from flask import (
        Flask,
        Response,
        current_app,
        g,
        got_request_exception,
        request,
        request_started,
    )
    from werkzeug.exceptions import HTTPException
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("flask", "flask") from None

__all__ = ["CONFIG_PREFIX", "EXTENSION_KEY", "OPTIONS", "TenantTrace", "require_tenant"]

EXTENSION_KEY = "tenant_trace"
CONFIG_PREFIX = "TENANT_TRACE_"
#: The options of the core middleware and of its policy; each one is also read from
#: ``app.config["TENANT_TRACE_<NAME>"]`` (``TENANT_TRACE_EXCLUDE_PATHS`` ...).
OPTIONS = MIDDLEWARE_OPTIONS

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("tenant_trace")
_warned: list[bool] = []


class TenantTrace:
    """Per-tenant tracing for a Flask application.

    Each option is taken, in this order, from the keyword arguments, from
    ``app.config["TENANT_TRACE_<OPTION>"]`` (``TENANT_TRACE_HEADER``, ``TENANT_TRACE_JWT``,
    ``TENANT_TRACE_REQUIRED`` ...), or from the core's defaults (the ``X-Tenant-ID`` header,
    tenant required). One `TenantTrace` may serve several applications: it keeps no app, and
    each app's middleware lives in ``app.extensions["tenant_trace"]``.

    Wrap ``app.wsgi_app`` with middleware that must see the request first (``ProxyFix``)
    after calling `init_app`, so that it runs outside this one.

    Args:
        app: the application; or call `init_app` later (application factories).
        **options: the options of `tenant_trace.server.wsgi.TenantTraceWSGIMiddleware` and of
            `tenant_trace.resolve.policy.build_policy`: ``header=``, ``jwt=``, ``subdomain=``,
            ``path_prefix=``, ``resolver=``, ``required=``, ``default=``, ``allowed=``,
            ``pattern=``, ``exclude_paths=``, ``policy=``, ``tracer_provider=``, ``tracing=``.

    Raises:
        ConfigurationError: an option is unknown.
    """

    __slots__ = ("_options",)

    def __init__(self, app: Flask | None = None, **options: Unpack[MiddlewareOptions]) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise OptionNameError(unknown_options(unknown, OPTIONS))
        self._options = options
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"TenantTrace({', '.join(sorted(self._options))})"

    def init_app(self, app: Flask) -> None:
        """Install tenant-trace on `app`.

        Raises:
            ConfigurationError: an option or ``TENANT_TRACE_*`` setting is invalid, or
                tenant-trace is already installed on `app`.
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError("tenant-trace is already installed on this app")
        middleware = TenantTraceWSGIMiddleware(app.wsgi_app, **self.options_for(app))
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
        app.register_error_handler(Rejection, _answer_rejection)
        request_started.connect(_bind_request, app)
        got_request_exception.connect(_record_handled_exception, app)

    def options_for(self, app: Flask) -> dict[str, Any]:
        """The options in effect for `app`: keyword arguments over ``app.config``."""
        settings = {k for k in app.config if k.startswith(CONFIG_PREFIX)}
        known = [CONFIG_PREFIX + name.upper() for name in OPTIONS]
        unknown = sorted(settings - set(known))
        if unknown:
            raise OptionNameError(unknown_options(unknown, known, "setting"))
        options = {
            name: app.config[CONFIG_PREFIX + name.upper()]
            for name in OPTIONS
            if CONFIG_PREFIX + name.upper() in settings
        }
        options.update(self._options)
        return options


def require_tenant() -> str:
    """The current tenant id; without one, a 401 with the usual JSON body (``missing_tenant``),
    also in an app where the extension is not installed (an error is logged once)."""
    tenant = get_current_tenant()
    if tenant is not None:
        return tenant
    rejection = missing_tenant()
    if EXTENSION_KEY in current_app.extensions:
        raise rejection
    if not _warned:
        _warned.append(True)
        logger.error(
            "tenant_trace: require_tenant ran in the Flask app %r, which has no TenantTrace "
            "extension: add TenantTrace(app)",
            current_app.name,
        )
    raise HTTPException(response=_answer_rejection(rejection))


def _answer_rejection(rejection: Rejection) -> Response:
    refusal = refuse(rejection)
    return Response(refusal.body, refusal.status, refusal.headers)


def _bind_request(sender: Flask, **extra: Any) -> None:
    # request_started comes before every before_request function, once the URL is matched.
    g.tenant_id = get_current_tenant()
    active = get_current_request()
    if active is not None and request.url_rule is not None:
        active.set_route(request.url_rule.rule)


def _record_handled_exception(sender: Flask, exception: Exception, **extra: Any) -> None:
    # One that propagates reaches the middleware too, which records it once (by identity).
    handled_exception(exception)
