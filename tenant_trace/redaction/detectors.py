"""The built-in detectors of `tenant_trace.redaction.Redactor`, and the names of secret keys.

Each detector finds candidates with a precompiled pattern and checks them: a card number must
pass the Luhn check and fit a card network, an IBAN its country's length and mod-97 checksum,
a phone number must be shaped as one (or follow a word such as "call" or "Telefon") and have
a length its country allows (by libphonenumber's data with the ``pii`` extra), an ``sk-`` key
must look random. Detectors read the text `fold`-ed: fullwidth and other digits, no-break
and thin spaces, dashes as their ASCII look-alikes, one for one. Every pattern starts with
a literal or a character class (look-behinds come after the first character), so the regex
engine skips to the few places a match can start instead of trying every position; and each
detector has a cheap gate, so most detectors never run on a given text.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "DEFAULT_DETECTORS",
    "DETECTORS",
    "PHONE_REGIONS",
    "SECRET_NAMES",
    "Detector",
    "fold",
    "iban_is_valid",
    "is_secret_name",
    "luhn_is_valid",
    "trigger_pattern",
]

Range = tuple[int, int]


class Detector(NamedTuple):
    """One kind of sensitive value: its marker (``EMAIL``), where it may be, how to find it."""

    name: str
    kind: str
    # Whether the text may hold such a value at all: when not, `find` is not run.
    gate: Callable[[str], bool]
    find: Callable[[str], Iterator[Range]]
    # A regular expression, led by a literal, that every value of this kind contains.
    trigger: str


def _finder(
    pattern: re.Pattern[str], check: Callable[[re.Match[str]], Range | None] | None = None
) -> Callable[[str], Iterator[Range]]:
    def find(text: str) -> Iterator[Range]:
        for match in pattern.finditer(text):
            span = match.span() if check is None else check(match)
            if span is not None:
                yield span

    return find


# -- look-alike characters ------------------------------------------------------------------

# What a keyboard, an input method or a typesetter puts in numbers instead of ASCII: other
# decimal digits (fullwidth, Arabic-Indic, Devanagari ...), fullwidth forms, no-break, thin
# and other spaces, hyphens, dashes and minus signs.
_FOLDABLE = re.compile(
    r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u2010-\u2015\u2212\ufe63\uff01-\uff5e]"
    r"|(?![0-9])\d"
)


def _fold_char(char: str) -> str:
    code = ord(char)
    if 0xFF01 <= code <= 0xFF5E:  # fullwidth ASCII
        return chr(code - 0xFEE0)
    if char.isdecimal():
        return str(unicodedata.decimal(char))
    return " " if unicodedata.category(char) == "Zs" else "-"


class _FoldTable(dict[int, int]):
    """`str.translate`'s table for `fold`, filled as characters are met (a character maps
    to itself unless it is foldable)."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        folded = ord(_fold_char(char)) if _FOLDABLE.match(char) else code
        if len(self) < 65536:
            self[code] = folded
        return folded


_FOLD_TABLE = _FoldTable()


def fold(text: str) -> str:
    """`text` with look-alike characters as ASCII, one for one, so that offsets in it are
    offsets in `text`: decimal digits of any script (fullwidth, Arabic-Indic ...) as ASCII
    digits, fullwidth forms as ASCII, no-break, thin and other spaces as a space, hyphens,
    dashes and minus signs as ``-``. The detectors run on this; what they find is replaced
    in `text`."""
    if text.isascii() or _FOLDABLE.search(text) is None:
        return text
    return text.translate(_FOLD_TABLE)


def _is_word_char(char: str) -> bool:
    """An ASCII letter, digit or underscore: what a value must not be glued to. Letters of
    other scripts are not (Japanese writes ``電話番号は090-1234-5678です``, no spaces)."""
    return char.isascii() and (char.isalnum() or char == "_")


# Seven digits or more, with at most two separators between each: what every card number,
# SSN, IBAN and phone number holds. One alternative per leading digit keeps the trigger
# led by literals.
_RUN = r"(?:[ ().-]{0,2}[0-9]){6}"
_DIGITS = re.compile(r"[0-9]" + _RUN)
_DIGITS_TRIGGER = "|".join(f"{digit}{_RUN}" for digit in "0123456789")


def _has_digits(text: str) -> bool:
    return _DIGITS.search(text) is not None


# -- secret names: keys (and ``name=value`` in text) whose values are secrets ---------------

SECRET_NAMES = frozenset(
    {
        "access_key", "access_token", "api_key", "apikey", "auth_token", "authorization",
        "client_secret", "cookie", "credential", "credentials", "id_token", "passphrase",
        "passwd", "password", "private_key", "proxy_authorization", "refresh_token", "secret",
        "secret_key", "session_token", "set_cookie", "token", "x_api_key",
    }
)  # fmt: skip
_SECRET_SUFFIXES = tuple(
    "_" + name for name in SECRET_NAMES if name not in ("credential", "x_api_key")
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SECRET_WORDS = ("pass", "secret", "token", "key", "credential", "authorization", "cookie")


def normalized_name(key: str) -> str:
    """The last dotted segment of `key` in snake case: ``X-Api-Key`` -> ``x_api_key``."""
    return _CAMEL.sub("_", key.rpartition(".")[2]).lower().replace("-", "_")


def is_secret_name(key: str) -> bool:
    """Whether `key` names a secret (see `tenant_trace.redaction.is_secret_key`)."""
    name = normalized_name(key)
    return name in SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


# -- email ----------------------------------------------------------------------------------

# Kana, CJK ideographs and Hangul are letters, but not of an address written in Japanese,
# Chinese or Korean text, where words are not separated by spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_EMAIL_DOMAIN = re.compile(
    rf"@(?:[^\W_](?:[\w-]{{0,61}}[^\W_])?\.)+([^\W\d_{_CJK}]{{2,24}})(?![^\W{_CJK}]|-)"
)
_EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}\Z")
_LAST_CJK = re.compile(rf"[{_CJK}](?=[^{_CJK}]*\Z)")
# "icon@2x.png" is a file name, not an address.
_FILE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tiff"})


def _find_emails(text: str) -> Iterator[Range]:
    # Found from the "@" outwards. The local part is the run of up to 64 characters before
    # it, so an address glued to a longer word still loses its last 64 characters.
    for match in _EMAIL_DOMAIN.finditer(text):
        at = match.start()
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        if local is None or match.group(1).lower() in _FILE_EXTENSIONS:
            continue
        start = local.start()
        if not local.group().isascii():  # "メールはtaro@...": the address starts after the kana
            cjk = _LAST_CJK.search(text, start, at)
            start = start if cjk is None else cjk.end()
        if start < at:
            yield start, match.end()


# -- payment cards --------------------------------------------------------------------------

# 12-19 digits in one run, or groups joined by single spaces, dashes or dots; the check
# finds a card among the leading groups (a CVV or an expiry may follow it).
_CARD = re.compile(
    r"[0-9](?<![\w.,+-][0-9])(?:[0-9]{11,18}|[0-9]{3}(?:[ .-][0-9]{1,6}){2,7})(?![\w])",
    re.ASCII,
)
_SEPARATOR = re.compile(r"[ .-]")


def luhn_is_valid(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn checksum."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_brand(digits: str) -> bool:
    """Whether the issuer prefix and length fit a card network (Visa, Mastercard, Amex,
    Discover, JCB, Diners, UnionPay, Maestro); order numbers and timestamps mostly do not."""
    n, first = len(digits), digits[0]
    if first == "4":
        return n in (13, 16, 19)
    if first == "5":  # Mastercard 51-55; Maestro 50, 56-59, of 12 to 19 digits
        return n == 16 if "51" <= digits[:2] <= "55" else 12 <= n <= 19
    if first == "2":  # Mastercard 2221-2720; the 15-digit JCB 2131
        return (n == 16 and "2221" <= digits[:4] <= "2720") or (n == 15 and digits[:4] == "2131")
    if first == "1":  # the 15-digit JCB 1800
        return n == 15 and digits[:4] == "1800"
    if first == "3":
        if digits[:2] in ("34", "37"):
            return n == 15
        return digits[:2] in ("30", "35", "36", "38", "39") and 14 <= n <= 19
    return first == "6" and 12 <= n <= 19  # Discover, UnionPay, Maestro 6x


def _is_card(digits: str) -> bool:
    return 12 <= len(digits) <= 19 and _card_brand(digits) and luhn_is_valid(digits)


def _card_shape(sizes: list[int]) -> bool:
    """4-4-4-4(-1..4), 4-4-4(-1..4) (12-15 digits), or the Amex/Diners 4-6-5 and 4-6-4."""
    if sizes[0] != 4:
        return False
    if len(sizes) == 3 and sizes[1] == 6:
        return sizes[2] in (4, 5)
    return all(size == 4 for size in sizes[1:-1]) and 1 <= sizes[-1] <= 4


def _check_card(match: re.Match[str]) -> Range | None:
    text = match.group()
    if text.isdigit():
        return match.span() if _is_card(text) else None
    separators = set(_SEPARATOR.findall(text))
    if len(separators) > 1 and "." in separators:  # "1234 5678.90": not one number
        return None
    groups = _SEPARATOR.split(text)
    start = match.start()
    for count in range(min(len(groups), 5), 2, -1):
        sizes = [len(g) for g in groups[:count]]
        if _card_shape(sizes) and _is_card("".join(groups[:count])):
            return start, start + sum(sizes) + count - 1
    return None


# -- US social security numbers (not 000, 666 or 9xx; group and serial not all zeros) ------

_SSN = re.compile(
    r"[0-8](?<![\w.,+-][0-8])(?<![0-9][ .-][0-8])[0-9]{2}(?<!000)(?<!666)([-. ])"
    r"(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![\w]|[.,-][0-9]| [0-9])",
    re.ASCII,
)

# -- phone numbers --------------------------------------------------------------------------

# A candidate: "+", "(" or a digit, not inside a word or another number; then digits and
# brackets, joined by single spaces, hyphens or dots; then maybe an extension (x 123,
# ext. 123). `_check_phone` decides from its shape, a phone word nearby, and its length:
# checked by phonenumbers (libphonenumber's data) when the ``pii`` extra is installed.
_PHONE = re.compile(
    r"[+(0-9](?<![\w+.,/#-][+(0-9])(?<![0-9][ .-][+(0-9])"
    r"(?=(?:[ ().+-]{0,3}[0-9]){6})"  # six more digits (the 7th may be the first character)
    r"(?:(?<=\()\+)?(?:[0-9()]+|[ .-](?=[0-9(]))*"
    r"(?P<ext> ?(?i:x|ext\.?|extension) ?[0-9]{1,6})?",
    re.ASCII,
)
# Words that introduce a phone number, in the languages of the regions below (and a few
# more), before the number or just after it: "call me at ...", "... (mobile)".
_PHONE_WORDS = (
    "phone", "tel", "call", "mobile", "cell", "fax", "sms", "whatsapp", "ring",
    "handy", "mobil", "rufnummer", "anruf", "erreich",  # de
    "portable", "appel", "joindre", "joignable",  # fr
    "llam", "móvil", "movil", "celular", "contacto",  # es, pt
    "cellulare", "chiam",  # it
    "bel ", "bellen", "mobiel", "bereik",  # nl
    "télé", "telé", "ligue", "ligar", "liga ", "contato",  # fr, es, pt
    "電話", "携帯", "連絡",  # ja
)  # fmt: skip
# A Latin word starts a word ("call", not "recall"); a Japanese one need not.
_PHONE_WORD = re.compile(
    "|".join(
        re.escape(word) if ord(word[0]) > 0x2FFF else rf"(?<![^\W\d_]){re.escape(word)}"
        for word in _PHONE_WORDS
    ),
    re.IGNORECASE,
)
_LAST_DIGIT = re.compile(r"[0-9](?=[^0-9]*\Z)")
_FIRST_DIGIT = re.compile(r"[0-9]")


def _phone_word_near(text: str, start: int, end: int) -> bool:
    """Whether a phone word is among the 24 characters before `start` (after any digit) or
    the 12 after `end`."""
    before = text[max(0, start - 32) : start]
    digit = _LAST_DIGIT.search(before)
    if digit is not None:
        before = before[digit.end() :]
    after = text[end : end + 12]
    digit = _FIRST_DIGIT.search(after)
    if digit is not None:
        after = after[: digit.start()]
    return _PHONE_WORD.search(before + " " + after) is not None


# Words that may introduce any number, a phone number among them: only for the spaced North
# American shape ("My number is 212 555 0143"), never for a bare run ("ticket #4155552671").
_NUMBER_WORD_BEFORE = re.compile(r"(?i:number|no\.|contact|reach|text)[^0-9]{0,12}\Z")
_MONTH, _DAY = r"(?:0?[1-9]|1[0-2])", r"(?:0?[1-9]|[12][0-9]|3[01])"
_DATE = re.compile(
    rf"(?:[0-9]{{4}}[-./]{_MONTH}[-./]{_DAY}|{_DAY}[-./]{_MONTH}[-./][0-9]{{4}}"
    rf"|{_MONTH}[-./]{_DAY}[-./][0-9]{{4}})(?![0-9])"
)
_YEAR_MONTH = re.compile(r"(?:19|20)[0-9]{2}[-./](?:0[1-9]|1[0-2])(?![0-9])")
_YEAR = re.compile(r"\(?(?:19|20)[0-9]{2}(?![0-9])")
_GROUPS = re.compile(r"[0-9]+")
_SPACED_NANP = re.compile(r"[2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4}\Z")

# National numbers written without a country code are tried in these regions: the ten
# locales of the recall corpus (tests/test_redaction_recall.py).
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "JP", "IN")


def _bracketed(text: str) -> str | None:
    """`text` without brackets around it or left open at either end; ``None`` when what is
    left is not bracketed as a phone number is: at most two pairs, none nested."""
    if "(" not in text and ")" not in text:
        return text
    while True:
        closing: dict[int, int] = {}  # where each "(" is closed
        opened: list[int] = []
        unmatched: list[int] = []
        for position, char in enumerate(text):
            if char == "(":
                opened.append(position)
            elif char == ")":
                if opened:
                    closing[opened.pop()] = position
                else:
                    unmatched.append(position)
        unmatched.extend(opened)
        last = len(text) - 1
        if text[:1] == "(" and (closing.get(0) == last or 0 in unmatched):
            text = text[1:-1] if closing.get(0) == last else text[1:]
        elif text[-1:] == ")" and last in unmatched:
            text = text[:-1]
        else:
            break
    if (
        unmatched
        or len(closing) > 2
        or any(o < other < c for o, c in closing.items() for other in closing if other != o)
    ):
        return None
    return text


def _check_phone(match: re.Match[str]) -> Range | None:
    text = match.string
    start, end = match.span()
    if _is_word_char(text[end : end + 1]):
        return None
    ext = match.group("ext") or ""
    raw = text[start : end - len(ext)]
    body = _bracketed(raw)
    if body is None or not body[-1:].isdigit():
        return None
    start += raw.find(body)
    end = start + len(body) + (len(ext) if raw.endswith(body) else 0)
    groups = _GROUPS.findall(body)
    digits = "".join(groups)
    if not 7 <= len(digits) <= 15:  # a card number or an id, if anything
        return None
    if body.lstrip("(")[:1] == "+":  # +44 20 7946 0958, (+44) 20 7946 0958
        # The trunk 0 in brackets is not dialled from abroad: +44 (0)20 7946 0958.
        dialled = "".join(_GROUPS.findall(body.replace("(0)", "", 1)))
        if _possible(dialled, national=False) and not _DATE.match(body.lstrip("(+")):
            return start, end
        return None
    if _DATE.match(body) or _YEAR_MONTH.match(body):
        return None
    if digits.startswith("00"):  # an international prefix: 00 44 20 7946 0958
        if _possible(digits[2:], national=False) or (
            _phone_word_near(text, start, end) and _possible(digits, national=True)
        ):
            return start, end
        return None
    if "." in body and len(groups) == 4 and all(len(g) <= 3 for g in groups):
        return None  # an IPv4 address
    # Groups of one digit are parts of versions and ISBNs, except a leading 1 (1-800-...).
    if any(len(g) < 2 for g in groups[1:]) or (len(groups[0]) < 2 and groups[0] != "1"):
        return None
    separated = any(c in body for c in ".-()")
    sizes = [len(g) for g in groups]
    if digits[0] == "0":  # a national number with its trunk prefix: 020 7946 0958
        shape = separated or " " in body or _phone_word_near(text, start, end)
    elif len(digits) > 11 or (
        sizes[-3:] == [3, 3, 4] and (groups[-3][0] in "01" or groups[-2][0] in "01")
    ):
        return None  # too long without a trunk prefix; not a North American number
    elif (
        separated
        and len(digits) >= 10
        and not _YEAR.match(body)  # 2023-0001234, (2024) 123-4567: ids of the year
        and not (sizes[0] <= 3 and set(sizes[1:]) == {3})  # 1.234.567.890: an amount
        and not ("." in body and len(groups) > 3 and groups[0] != "1")  # 12.40.300.1234
    ):  # 415-555-2671, (415) 555-2671, 47 3157-5464
        shape = True
    elif _SPACED_NANP.match(body):  # 415 555 2671 after "call" or "number"
        shape = _phone_word_near(text, start, end) or (
            _NUMBER_WORD_BEFORE.search(text, max(0, start - 40), start) is not None
        )
    else:  # 4155552671, 612 345 678: a phone word must say so
        shape = _phone_word_near(text, start, end)
    return (start, end) if shape and _possible(digits, national=True) else None


def _possible(digits: str, national: bool) -> bool:
    """Whether `digits` can be a phone number: with its country code, or a `national` number
    (with or without its trunk prefix) of one of `PHONE_REGIONS`. With phonenumbers
    installed, by the lengths libphonenumber knows for each country and region; else by
    lengths that fit most: 7-15 digits with the country code, 9-12 with a trunk 0, 10-11
    without."""
    if not 7 <= len(digits) <= 15 or (national and not 9 <= len(digits) <= 12):
        return False
    if _has_phonenumbers():
        return _possible_by_library(digits, national)
    return not national or (len(digits) >= 9 if digits[0] == "0" else 10 <= len(digits) <= 11)


@lru_cache(maxsize=1)
def _has_phonenumbers() -> bool:
    """Whether the ``pii`` extra is installed; phonenumbers is imported on first use."""
    try:
        import phonenumbers  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=4096)
def _possible_by_library(digits: str, national: bool) -> bool:
    import phonenumbers

    regions: tuple[str | None, ...] = PHONE_REGIONS if national else (None,)
    number = digits if national else "+" + digits
    for region in regions:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        # Not IS_POSSIBLE_LOCAL_ONLY: 7 digits are a US number only within its area code.
        reason = phonenumbers.is_possible_number_with_reason(parsed)
        if reason == phonenumbers.ValidationResult.IS_POSSIBLE:
            return True
    return False


# -- IBAN -----------------------------------------------------------------------------------

_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?:[ .-]?[A-Z0-9]){11,30}")
# The length of the IBAN of each country in the SWIFT registry.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


_IBAN_SEPARATORS = re.compile(r"[ .-]")


def iban_is_valid(iban: str) -> bool:
    """Whether `iban` (upper case, no spaces) has its country's length and a valid mod-97
    checksum."""
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _check_iban(match: re.Match[str]) -> Range | None:
    text = match.group()
    length = _IBAN_LENGTHS.get(text[:2])
    if length is None:
        return None
    # The pattern may run on into a following word ("... 3000 EUR"): cut at the country's
    # length, which must end at a word boundary.
    seen = end = 0
    while end < len(text) and seen < length:
        seen += text[end] not in " .-"
        end += 1
    if seen < length:
        return None
    following = match.string[match.start() + end : match.start() + end + 1]
    compact = _IBAN_SEPARATORS.sub("", text[:end])
    if _is_word_char(following) or not iban_is_valid(compact):
        return None
    # One kind of separator, as printed ("DE89 3704 ..."), not a dotted run of words.
    if len(set(_IBAN_SEPARATORS.findall(text[:end]))) > 1:
        return None
    return match.start(), match.start() + end


# -- IP addresses (off by default: versions such as 1.2.3.4 look the same) ------------------

_IPV4 = re.compile(
    r"[0-9](?<![\w.:][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![\w]|\.[0-9])",
    re.ASCII,
)
_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w.:][0-9A-Fa-f:])[0-9A-Fa-f:.]{1,44}(?![\w:])",
    re.ASCII,
)
_IP_GATE = re.compile(r"[0-9]\.[0-9]|::|:[0-9A-Fa-f]{1,4}:")


def _find_ips(text: str) -> Iterator[Range]:
    for match in _IPV4.finditer(text):
        if all(len(o) == 1 or (o[0] != "0" and int(o) <= 255) for o in match.group().split(".")):
            yield match.span()
    if ":" not in text:
        return
    for match in _IPV6.finditer(text):
        candidate = match.group().rstrip(".")
        # "a::b", "dead::beef" are more likely code than addresses; times and MACs fail.
        if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield match.start(), match.start() + len(candidate)


# -- API keys with well-known prefixes ------------------------------------------------------

_API_KEY = re.compile(
    r"(?:sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)[0-9]{2}-)?(?P<sk>[A-Za-z0-9_-]{20,})"
    r"|sk_(?:live|test)_[A-Za-z0-9]{10,}|rk_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
    r"|whsec_[A-Za-z0-9+/=]{20,}"  # Stripe webhook secrets
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|AKIA[A-Z0-9]{16}|ASIA[A-Z0-9]{16}"  # AWS access key ids
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[A-Za-z0-9_-]{35}"  # Google
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|npm_[A-Za-z0-9]{36}"
    r"|gsk_[A-Za-z0-9]{40,}"  # Groq
    r"|pypi-[A-Za-z0-9_-]{50,}"
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"  # SendGrid
    r")(?![A-Za-z0-9_-])"
)
_API_KEY_TRIGGER = (
    r"-(?:(?<=sk-)|(?<=glpat-)|(?<=pypi-)|(?<=xox[abposr]-)|(?<=xapp-))"
    r"|_(?:(?<=k_)|(?<=whsec_)|(?<=gh[pousr]_)|(?<=_pat_)|(?<=hf_)|(?<=npm_))"
    r"|A(?:KIA|SIA|Iza)|SG\."
)
_API_KEY_GATE = re.compile(_API_KEY_TRIGGER)


def _looks_random(token: str) -> bool:
    """Upper case, lower case and a digit: a random key, not a kebab-case slug."""
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )


def _check_api_key(match: re.Match[str]) -> Range | None:
    start = match.start()
    before = match.string[start - 1 : start]
    if before and (_is_word_char(before) or before == "-"):  # part of a longer word
        return None
    body = match.group("sk")
    if body is not None and not _looks_random(body):
        return None
    return match.span()


_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"
    r"(?:[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)"
)

# -- bearer and basic credentials -----------------------------------------------------------

_BEARER = re.compile(
    r"[Bb](?<![\w][Bb])(?:earer|EARER|asic|ASIC) +(?P<token>[A-Za-z0-9\-._~+/]{8,}=*)", re.ASCII
)
_BEARER_TRIGGER = "Bearer |bearer |BEARER |Basic |basic |BASIC "
_BEARER_GATE = re.compile(_BEARER_TRIGGER)


def _check_bearer(match: re.Match[str]) -> Range | None:
    token = match.group("token")
    # "Bearer authentication" is prose; a credential has digits or mixed case.
    if any(c.isdigit() for c in token) or (
        any(c.isupper() for c in token[1:]) and any(c.islower() for c in token)
    ):
        return match.span("token")
    return None


# -- JWTs -----------------------------------------------------------------------------------

_JWT = re.compile(
    r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?"
    r"(?![A-Za-z0-9_-])"
)

# -- secrets assigned in text: password=..., "api_key": "...", Authorization: ... ----------

# A separator, then the value: quoted, or a bare word (after an auth scheme, if any).
_ASSIGNED = re.compile(
    r"[:=][ \t]*(?:\"(?P<dq>(?:[^\"\\\r\n]|\\.){1,512})\"|'(?P<sq>(?:[^'\\\r\n]|\\.){1,512})'"
    r"|(?P<bare>(?:(?:[Bb]earer|[Bb]asic|[Tt]oken|[Dd]igest|[Bb]ot) +)?"
    r"[^\s\"',;&}\])]{1,512}))"
)
# The key before the separator: a name, an optional closing quote, optional blanks.
_KEY_BEFORE = re.compile(r"([A-Za-z0-9_.-]{1,64})[\"']?[ \t]*\Z")
_LINE = re.compile(r"[^\r\n\"']{1,512}")
_SEPARATOR_CHARS = re.compile(r"[:=]")


def _may_assign_secret(text: str) -> bool:
    if ":" not in text and "=" not in text:
        return False
    lower = text.lower()
    return any(word in lower for word in _SECRET_WORDS)


def _find_assigned_secrets(text: str) -> Iterator[Range]:
    # Every separator is tried (not only those after the last match): in "note: password=x"
    # the value of "note" holds the assignment that matters.
    for separator in _SEPARATOR_CHARS.finditer(text):
        sep = separator.start()
        key = _KEY_BEFORE.search(text, max(0, sep - 70), sep)
        if key is None or not is_secret_name(key.group(1)):
            continue
        match = _ASSIGNED.match(text, sep)
        if match is None:
            continue
        group = next(g for g in ("dq", "sq", "bare") if match.start(g) >= 0)
        start, end = match.span(group)
        if group == "bare" and normalized_name(key.group(1)).endswith("cookie"):
            end = start + len(_LINE.match(text, start).group())  # type: ignore[union-attr]
        value = text[start:end].rstrip()
        if value and not (value[0] == "<" and value[-1] == ">"):  # empty, or a marker
            yield start, start + len(value)


def trigger_pattern(detectors: tuple[Detector, ...]) -> re.Pattern[str] | None:
    """One pattern, led by literals only, that finds a place where any of `detectors` may
    match; a text it does not match is clean for them (the fast path)."""
    triggers = [d.trigger for d in detectors if d.trigger]
    return re.compile("|".join(dict.fromkeys(triggers))) if triggers else None


# Ties (two detectors matching the same span) go to the earlier detector of this list. The
# IP and secret-assignment detectors have no trigger: their gate is checked on its own.
DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key", "PRIVATE_KEY", lambda t: "-----BEGIN" in t, _finder(_PRIVATE_KEY),
        "-----BEGIN",
    ),
    # Triggered by its "J": "e" is the commonest letter, where a search would stop most.
    Detector("jwt", "JWT", lambda t: "eyJ" in t, _finder(_JWT), "J(?<=eyJ)"),
    Detector(
        "api_key", "API_KEY", lambda t: _API_KEY_GATE.search(t) is not None,
        _finder(_API_KEY, _check_api_key), _API_KEY_TRIGGER,
    ),
    Detector(
        "bearer", "TOKEN", lambda t: _BEARER_GATE.search(t) is not None,
        _finder(_BEARER, _check_bearer), _BEARER_TRIGGER,
    ),
    Detector("email", "EMAIL", lambda t: "@" in t, _find_emails, "@"),
    Detector("iban", "IBAN", _has_digits, _finder(_IBAN, _check_iban), _DIGITS_TRIGGER),
    Detector("card", "CARD", _has_digits, _finder(_CARD, _check_card), _DIGITS_TRIGGER),
    Detector("ssn", "SSN", _has_digits, _finder(_SSN), _DIGITS_TRIGGER),
    Detector("phone", "PHONE", _has_digits, _finder(_PHONE, _check_phone), _DIGITS_TRIGGER),
    Detector("ip", "IP", lambda t: _IP_GATE.search(t) is not None, _find_ips, ""),
    Detector("secret_field", "SECRET", _may_assign_secret, _find_assigned_secrets, ""),
)  # fmt: skip
DEFAULT_DETECTORS: tuple[str, ...] = tuple(d.name for d in DETECTORS if d.name != "ip")
