"""The layout of ../shared/DESIGN.md, enforced: rooms as import layers without cycles, a core
that imports no framework, small modules, thin adapters, and a stable public API."""

from __future__ import annotations

import ast
import importlib
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

import tenant_trace

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("tenant_trace_fastapi", "tenant_trace_flask", "tenant_trace_django")
# Catalogues of data, not logic, may be longer.
CATALOGUES = {"tenant_trace/redaction/detectors.py"}
MAX_MODULE_LINES = 400
MAX_ADAPTER_CODE = 150

# Every name the facade exported in 0.1 still imports from it.
PUBLIC_0_1 = [
    "GENAI_SEMCONV_VERSION",
    "BaggageResolver",
    "ChainResolver",
    "ConfigurationError",
    "ContextExecutor",
    "HeaderResolver",
    "InvalidTenantError",
    "JWTResolver",
    "MissingDependencyError",
    "PathResolver",
    "RedactingSpanExporter",
    "Redactor",
    "Rejection",
    "RunBudget",
    "RunBudgetExceeded",
    "RequestView",
    "SubdomainResolver",
    "Tenant",
    "TenantLogFilter",
    "TenantPolicy",
    "TenantSampler",
    "TenantSpanProcessor",
    "TenantTraceError",
    "TrustedHeaderResolver",
    "__version__",
    "as_resolver",
    "carry_context",
    "configure_logging",
    "current_request",
    "current_step",
    "get_current_tenant",
    "get_tenant_source",
    "init",
    "instrument_threads",
    "llm_call",
    "memory",
    "outbound_headers",
    "propagate_httpx",
    "propagate_requests",
    "retrieval",
    "set_tenant",
    "start_trace",
    "sub_agent",
    "tenant_context",
    "tool_call",
    "uninstrument_threads",
    "validate_tenant_id",
]
# Module paths the README documents, with a name from each.
DOCUMENTED = [
    ("tenant_trace.logs", "TenantJsonFormatter"),
    ("tenant_trace.logs", "structlog_processors"),
    ("tenant_trace.logs", "add_tenant_context"),
    ("tenant_trace.redaction", "is_secret_key"),
    ("tenant_trace.redaction", "redact_attributes"),
    ("tenant_trace.local.rules", "FAILURE_RATE"),
    ("tenant_trace.export.retention", "TENANT_TABLES"),
    ("tenant_trace_fastapi", "TenantTraceMiddleware"),
    ("tenant_trace_fastapi", "instrument_app"),
    ("tenant_trace_fastapi", "require_tenant"),
    ("tenant_trace_flask", "TenantTrace"),
    ("tenant_trace_django", "TenantTraceMiddleware"),
]


def test_the_import_contracts_hold() -> None:
    """lint-imports with pyproject.toml's contracts: layers, no cycles, no framework in the
    core, adapters independent. (In its own process: it reconfigures logging.)"""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("KEPT") == 4


def code_lines(path: Path) -> int:
    """Lines that hold code: not blank, not only a comment, not part of a docstring."""
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.update(range(value.lineno, (value.end_lineno or value.lineno) + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tenant_trace").rglob("*.py")
        if p.relative_to(ROOT).as_posix() not in CATALOGUES
    ),
)
def test_core_modules_are_small(path: str) -> None:
    """No module of the core is over 400 lines, but a catalogue of detectors."""
    assert len((ROOT / path).read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("package", ADAPTERS)
def test_adapters_are_thin(package: str) -> None:
    """Each adapter package has under 150 lines of code: it translates and installs."""
    total = sum(code_lines(p) for p in (ROOT / package).rglob("*.py"))
    assert total < MAX_ADAPTER_CODE, total


def test_every_public_name_imports_as_before() -> None:
    missing = [name for name in PUBLIC_0_1 if not hasattr(tenant_trace, name)]
    assert missing == []
    assert set(PUBLIC_0_1) <= set(tenant_trace.__all__)
    for name in tenant_trace.__all__:
        assert getattr(tenant_trace, name) is not None, name


@pytest.mark.parametrize(("module", "name"), DOCUMENTED)
def test_documented_module_paths_import(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_old_names_are_aliases_of_the_new() -> None:
    """One naming scheme for the current things, ``get_current_*``; the 0.1 names alias them."""
    assert tenant_trace.current_request is tenant_trace.get_current_request
    assert tenant_trace.current_step is tenant_trace.get_current_step
    assert tenant_trace.get_tenant_source is tenant_trace.get_current_tenant_source
