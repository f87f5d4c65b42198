"""PII and secret redaction: the `Redactor`, and the key rules shared by spans and logs.

A `Redactor` is the callable behind ``settings.redact``: captured agent text (prompts,
completions, tool data, queries) and log messages go through it before they are recorded, and
`tenant_trace.redaction_export.RedactingSpanExporter` runs it over every span at export as a
safety net. Values under keys that name secrets (``authorization``, ``password``, ``api_key``
...) are masked whole, whatever they hold.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from ..context import get_current_tenant
from ..errors import ConfigurationError
from .detectors import (
    DEFAULT_DETECTORS,
    DETECTORS,
    Detector,
    fold,
    is_secret_name,
    normalized_name,
    trigger_pattern,
)

__all__ = [
    "DEFAULT_DETECTORS",
    "KEEP_KEYS",
    "SECRET",
    "Finding",
    "Redactor",
    "is_secret_key",
]

SECRET = "<SECRET>"
"""What a value under a secret key becomes."""

KEEP_KEYS = frozenset({"tenant.id", "tenant.source", "tenant_id", "trace_id", "span_id"})
"""Keys whose values are identifiers the telemetry is organised by: never rewritten."""

# A long text is scanned this far past the truncation point, so that a value that starts
# before the cut is seen whole (an e-mail address is at most 254 characters).
_MARGIN = 512
_MAX_TENANT_KEYS = 1024
# Short strings found clean are remembered: span attributes repeat (methods, URLs, models).
_CLEAN_CACHE_SIZE = 4096
_CLEAN_CACHE_LENGTH = 256
_SCALARS = frozenset({int, float, bool, type(None)})
_MAX_DEPTH = 8


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether an attribute or log-field key names a secret, so that its value is masked whole.

    The last dotted segment counts, in any case or spelling: ``authorization``,
    ``http.request.header.set-cookie``, ``db_password``, ``apiKey``, ``X-Api-Key``,
    ``client_secret``, ``github_token``; but not ``gen_ai.usage.input_tokens``.
    """
    return is_secret_name(key)


class Finding(NamedTuple):
    """A sensitive value found in a text: its kind (``EMAIL``, ``CARD`` ...) and position."""

    kind: str
    start: int
    end: int


class _Custom(NamedTuple):
    kind: str
    pattern: re.Pattern[str]


class Redactor:
    """Finds emails, phone numbers, card numbers, SSNs, IBANs, API keys, bearer tokens, JWTs,
    private keys, ``password=...``-style secrets (and, when asked, IP addresses) in text and
    replaces each by a marker (``<EMAIL>``) or a per-tenant pseudonym (``<EMAIL:3f0c2a91d7e4>``).

    An instance is the callable ``settings.redact``: ``redactor(text)`` scrubs and truncates.

    Args:
        detectors: the built-in detectors to use (`DEFAULT_DETECTORS`, every one but ``ip``).
        ip: also find IPv4 and IPv6 addresses (off by default: ``1.2.3.4`` may be a version).
        patterns: custom detectors, ``{"employee_id": r"EMP-[0-9]{6}"}``; a match becomes
            ``<EMPLOYEE_ID>``.
        allow: values never redacted: exact strings, or compiled patterns a value must match
            in full (``re.compile(r".*@example\\.com")``).
        replacement: ``"marker"`` or ``"pseudonym"``: an HMAC of the value keyed by `key`
            and the tenant, the same within one tenant, unlinkable across tenants.
        key: the HMAC key of pseudonyms; by default a random key, so pseudonyms are stable
            only within one process.
        max_length: ``redactor(text)`` keeps the first this many characters of `text`
            (then ``…``), a value that starts there replaced whole; ``None`` keeps all.
        secret_keys: more key names whose values are masked whole (see `is_secret_key`).
    """

    __slots__ = (
        "_allow",
        "_allow_patterns",
        "_clean",
        "_custom",
        "_detectors",
        "_gated",
        "_key",
        "_max_length",
        "_plain_keys",
        "_pseudonyms",
        "_secret_keys",
        "_tenant_macs",
        "_trigger",
    )

    def __init__(
        self,
        *,
        detectors: Collection[str] = DEFAULT_DETECTORS,
        ip: bool = False,
        patterns: Mapping[str, str | re.Pattern[str]] | None = None,
        allow: Iterable[str | re.Pattern[str]] = (),
        replacement: Literal["marker", "pseudonym"] = "marker",
        key: bytes | str | None = None,
        max_length: int | None = 500,
        secret_keys: Iterable[str] = (),
    ) -> None:
        if isinstance(detectors, str):
            detectors = (detectors,)
        known = {d.name for d in DETECTORS} - {"ip"}
        unknown = set(detectors) - known
        if unknown:
            raise ConfigurationError(
                f"unknown detectors {sorted(unknown)} (known: {', '.join(sorted(known))};"
                " IP addresses: ip=True)"
            )
        if replacement not in ("marker", "pseudonym"):
            raise ConfigurationError(
                f"replacement must be 'marker' or 'pseudonym', not {replacement!r}"
            )
        if max_length is not None and max_length < 1:
            raise ConfigurationError("max_length must be a positive number of characters")
        wanted = set(detectors) | ({"ip"} if ip else set())
        self._detectors: tuple[Detector, ...] = tuple(d for d in DETECTORS if d.name in wanted)
        self._trigger = trigger_pattern(self._detectors)
        # Detectors without a trigger (IP addresses, name=value secrets): their gate decides.
        self._gated = tuple(d for d in self._detectors if not d.trigger)
        try:
            self._custom = tuple(
                _Custom(name.upper(), re.compile(pattern) if isinstance(pattern, str) else pattern)
                for name, pattern in (patterns or {}).items()
            )
        except re.error as exc:
            raise ConfigurationError(f"invalid redaction pattern: {exc}") from None
        allowed = list(allow)
        self._allow = frozenset(a for a in allowed if isinstance(a, str))
        self._allow_patterns = tuple(a for a in allowed if not isinstance(a, str))
        self._pseudonyms = replacement == "pseudonym"
        if isinstance(key, str):
            key = key.encode()
        self._key = key if key is not None else secrets.token_bytes(32)
        self._max_length = max_length
        self._secret_keys = frozenset(normalized_name(k) for k in secret_keys)
        self._tenant_macs: dict[str | None, Any] = {}
        self._clean: dict[str, None] = {}
        self._plain_keys: set[str] = set(KEEP_KEYS)

    def __repr__(self) -> str:
        options = [f"detectors={[d.name for d in self._detectors]!r}"]
        if self._custom:
            options.append(f"patterns={[c.kind.lower() for c in self._custom]!r}")
        if self._allow or self._allow_patterns:
            options.append(f"allow={len(self._allow) + len(self._allow_patterns)}")
        options.append(f"replacement={'pseudonym' if self._pseudonyms else 'marker'!r}")
        options.append(f"max_length={self._max_length!r}")
        return f"Redactor({', '.join(options)})"

    @property
    def max_length(self) -> int | None:
        """How many characters ``redactor(text)`` keeps."""
        return self._max_length

    @property
    def pseudonymous(self) -> bool:
        """Whether values are replaced by per-tenant pseudonyms (else by markers)."""
        return self._pseudonyms

    def __call__(self, text: str) -> str:
        """`text` scrubbed and truncated to `max_length`; pseudonyms use the current tenant."""
        limit = self._max_length
        if limit is None or len(text) <= limit:
            return self.scrub(text)
        scanned = text[: limit + _MARGIN]
        view = fold(scanned)
        if not self._may_contain(view):
            return text[:limit] + "…"
        # Only what starts before the cut is kept; whatever is found there is replaced whole.
        out = self._replace(scanned, view, self._tenant(None), stop=limit)
        return (out[:limit] if len(out) > limit else out) + "…"

    def scrub(self, text: str, tenant: str | None = None) -> str:
        """`text` with every sensitive value replaced (no truncation); `text` itself when
        nothing is found.

        Args:
            text: any text.
            tenant: the tenant of pseudonyms; default: the current tenant.
        """
        if text in self._clean:
            return text
        view = fold(text)
        if self._may_contain(view):
            result = self._replace(text, view, self._tenant(tenant), stop=None)
            if result is not text:
                return result
        if len(text) <= _CLEAN_CACHE_LENGTH:
            if len(self._clean) >= _CLEAN_CACHE_SIZE:
                self._clean.clear()
            self._clean[text] = None
        return text

    def find(self, text: str) -> list[Finding]:
        """The sensitive values in `text`, in order, without overlaps."""
        view = fold(text)
        if not self._may_contain(view):
            return []
        return self._find(text, view, None)

    def is_secret_key(self, key: str) -> bool:
        """Whether values under `key` are masked whole (`is_secret_key` or `secret_keys`)."""
        if is_secret_key(key):
            return True
        if not self._secret_keys:
            return False
        return normalized_name(key) in self._secret_keys

    def redact_value(self, value: Any, tenant: str | None = None, _depth: int = 0) -> Any:
        """A string scrubbed, the strings of a list, tuple or mapping scrubbed (recursively);
        any other value as it is. Returns `value` itself when nothing changed."""
        if isinstance(value, str):
            return self.scrub(value, tenant)
        if _depth > _MAX_DEPTH and isinstance(value, (list, tuple, Mapping)):
            return SECRET  # nested deeper than any attribute or log field should be
        if isinstance(value, (list, tuple)):
            items = [self.redact_value(item, tenant, _depth + 1) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, Mapping):
            return self._redact_mapping(value, tenant, _depth + 1)
        return value

    def redact_attributes(
        self, attributes: Mapping[str, Any], tenant: str | None = None
    ) -> Mapping[str, Any]:
        """Span attributes or log fields with secret keys masked and string values scrubbed.

        Returns `attributes` itself when nothing changed (the common, cheap case), else a new
        dict. Keys in `KEEP_KEYS` (``tenant.id``, ``trace_id`` ...) are left alone.
        """
        return self._redact_mapping(attributes, tenant, 0)

    def _redact_mapping(
        self, attributes: Mapping[str, Any], tenant: str | None, depth: int
    ) -> Mapping[str, Any]:
        # A copy in C (a span's attributes are a proxy of a Python mapping, slow to iterate).
        copy = getattr(attributes, "copy", None)
        items: Mapping[str, Any] = copy() if callable(copy) else dict(attributes)
        # The fast path: every key known not to be secret, every value a number or a string
        # already found clean.
        if self._plain_keys.issuperset(items):
            clean = self._clean
            if not [
                v
                for v in items.values()
                if type(v) not in _SCALARS and (type(v) is not str or v not in clean)
            ]:
                return attributes
        changed: dict[str, Any] | None = None
        for key, value in items.items():
            if key in KEEP_KEYS or value is None:
                if type(value) is str and value not in self._clean:
                    # Kept as it is, but scanned once so that the fast path knows it.
                    self.scrub(value, tenant)
                continue
            if key not in self._plain_keys:
                if isinstance(key, str) and self.is_secret_key(key):
                    if value != SECRET:
                        if changed is None:
                            changed = dict(items)
                        changed[key] = SECRET
                    continue
                self._remember_key(key)
            new = self.redact_value(value, tenant, depth)
            if new is not value:
                if changed is None:
                    changed = dict(items)
                changed[key] = new
        return attributes if changed is None else changed

    def _remember_key(self, key: str) -> None:
        if len(self._plain_keys) >= _CLEAN_CACHE_SIZE:
            self._plain_keys.clear()
            self._plain_keys.update(KEEP_KEYS)
        self._plain_keys.add(key)

    def _may_contain(self, view: str) -> bool:
        """The fast path: whether a text (folded, `fold`) has anything a detector could
        match."""
        if self._custom or (self._trigger is not None and self._trigger.search(view)):
            return True
        return any(d.gate(view) for d in self._gated)

    def _tenant(self, tenant: str | None) -> str | None:
        if tenant is None and self._pseudonyms:
            return get_current_tenant()
        return tenant

    def _find(self, text: str, view: str, stop: int | None) -> list[Finding]:
        # The built-in detectors read `view`, `text` folded to ASCII look-alikes (the same
        # length); custom patterns and the allow-list see `text` as it is.
        found: list[tuple[int, int, int, str]] = []
        for rank, detector in enumerate(self._detectors):
            if detector.gate(view):
                found.extend(
                    (start, end, rank, detector.kind) for start, end in detector.find(view)
                )
        for rank, custom in enumerate(self._custom, len(self._detectors)):
            for match in custom.pattern.finditer(text):
                if match.end() > match.start():
                    found.append((match.start(), match.end(), rank, custom.kind))
        if not found:
            return []
        # Leftmost first; at the same start the longest; then the detector order.
        found.sort(key=lambda f: (f[0], f[0] - f[1], f[2]))
        result: list[Finding] = []
        end = 0
        for start, stop_at, _, kind in found:
            if start < end or (stop is not None and start >= stop):
                continue
            if self._allowed(text[start:stop_at]):
                continue
            result.append(Finding(kind, start, stop_at))
            end = stop_at
        return result

    def _allowed(self, value: str) -> bool:
        return value in self._allow or any(p.fullmatch(value) for p in self._allow_patterns)

    def _replace(self, text: str, view: str, tenant: str | None, stop: int | None) -> str:
        findings = self._find(text, view, stop)
        if not findings:
            return text if stop is None else text[:stop]
        parts: list[str] = []
        position = 0
        for kind, start, end in findings:
            parts.append(text[position:start])
            value = text[start:end]
            hide = self._pseudonyms and kind != "SECRET"
            parts.append(self.pseudonym(kind, value, tenant) if hide else f"<{kind}>")
            position = end
        if stop is None:
            parts.append(text[position:])
        elif position < stop:
            parts.append(text[position:stop])
        return "".join(parts)

    def pseudonym(self, kind: str, value: str, tenant: str | None) -> str:
        """``<KIND:3f0c2a91d7e4>``: `value`'s pseudonym for `tenant`, whatever `replacement`."""
        mac = self._tenant_macs.get(tenant)
        if mac is None:
            # A key per tenant, derived from the secret key: the same value of two tenants
            # gives two pseudonyms that cannot be linked without the key.
            tenant_key = hmac.new(
                self._key, b"tenant\x00" + (tenant or "").encode(), hashlib.sha256
            ).digest()
            mac = hmac.new(tenant_key, digestmod=hashlib.sha256)
            if len(self._tenant_macs) >= _MAX_TENANT_KEYS:
                self._tenant_macs.clear()
            self._tenant_macs[tenant] = mac
        digest = mac.copy()
        digest.update(f"{kind}\x00{_normalized(kind, value)}".encode("utf-8", "surrogatepass"))
        return f"<{kind}:{digest.hexdigest()[:12]}>"


def _normalized(kind: str, value: str) -> str:
    """The same value written differently gives the same pseudonym."""
    if kind == "EMAIL":
        return fold(value).lower()
    if kind in ("CARD", "PHONE", "SSN"):
        return "".join(c for c in fold(value) if "0" <= c <= "9")
    if kind == "IBAN":
        return "".join(c for c in fold(value) if c.isalnum()).upper()
    return value
