# ruff: noqa: RUF001  (the sentences of each locale use its own quotes, colons, brackets)
"""Recall of the PII detectors on data nobody here wrote: values that Faker makes in ten
locales, inside sentences of those locales, in the formats people (and their keyboards) use;
and false positives on plain prose of the same locales, with and without numbers.

The corpus is generated with a fixed seed, so a run is deterministic for a given Faker
version. ``pytest tests/test_redaction_recall.py -q -rA`` prints, in the terminal summary,
recall per type, misses per format variant, and the false positives on prose, for the
detectors as installed and for the fallback used without the ``pii`` extra.

A value counts as caught when every letter and digit of it is covered by findings (what the
redactor replaces); as mislabelled when a finding of another kind covers it; collateral is a
letter or digit of the sentence around the value that was replaced as well.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

faker = pytest.importorskip("faker")
stdnum_iban = pytest.importorskip("stdnum.iban")
stdnum_luhn = pytest.importorskip("stdnum.luhn")

from tenant_trace.redaction import Redactor  # noqa: E402
from tenant_trace.redaction import detectors as redaction_detectors  # noqa: E402

SEED = 15
LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "ja_JP", "en_IN",
)  # fmt: skip
PER_LOCALE = 24  # values of each type per locale, before format variants
PROSE_PER_LOCALE = 30
KINDS = {
    "email": "EMAIL",
    "phone": "PHONE",
    "card": "CARD",
    "iban": "IBAN",
    "ssn": "SSN",
    "api_key": "API_KEY",
}
CARD_TYPES = (
    "visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb15", "jcb16",
    "maestro", "diners",
)  # fmt: skip

# -- sentences of each locale ---------------------------------------------------------------
# frames: a value with its label; phrases: the value as each type is usually introduced;
# prose: numbers that are not PII (dates, prices, order numbers, versions, ids ...).

NNBSP, NBSP = "\u202f", "\u00a0"
LOCALE_TEXT: dict[str, dict[str, Any]] = {
    "en_US": {
        "date": "%m/%d/%Y",
        "frames": [
            "Hi, this is {name} from {city}. {label}: {v}. Thanks!",
            'On {date} {name} wrote: "{v}" ({label}).',
            "Please update the {label} on file to {v} before {date}.",
        ],
        "phrases": {
            "phone": "You can call me at {v} after 5 pm.",
            "card": "Charge the {price} to my card {v}, expiry on file.",
            "iban": "Please wire the refund to {v} by {date}.",
            "ssn": "My social security number is {v}.",
            "email": "Send the invoice to {v} please.",
            "api_key": "The deploy failed with key {v}, can you rotate it?",
        },
        "labels": {
            "phone": "Phone",
            "card": "Card number",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "Email",
            "api_key": "API key",
        },
        "prose": [
            "Order {order} placed on {date} at {time} for {price}; {qty} items ship to {address}.",
            "Release {version} (commit {sha}) went out at {iso}; request {uuid} took {ms} ms.",
            "See ISBN {isbn}, page {page} of {pages}; the {year} edition sold {qty} copies.",
        ],
    },
    "en_GB": {
        "date": "%d/%m/%Y",
        "frames": [
            "Hello, {name} here from {city}. {label}: {v}. Cheers!",
            "On {date} {name} wrote: '{v}' ({label}).",
            "Could you change the {label} you hold to {v} by {date}?",
        ],
        "phrases": {
            "phone": "Ring me on {v} any time after 5pm.",
            "card": "Please take the {price} from my card {v}.",
            "iban": "Pop the refund into {v} by {date}, ta.",
            "ssn": "My US social security number is {v}.",
            "email": "Drop me a line at {v} when it's sorted.",
            "api_key": "The build broke with key {v}; please revoke it.",
        },
        "labels": {
            "phone": "Phone",
            "card": "Card number",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "Email",
            "api_key": "API key",
        },
        "prose": [
            "Your order {order} of {date} ({price}, {qty} items) goes to {address}.",
            "Version {version} was tagged at {iso}; build {sha} passed in {ms} ms.",
            "The {year} report, pages {page}-{pages}, is filed under {uuid}.",
        ],
    },
    "de_DE": {
        "date": "%d.%m.%Y",
        "frames": [
            "Hallo, hier ist {name} aus {city}. {label}: {v}. Danke!",
            "Am {date} schrieb {name}: „{v}“ ({label}).",
            "Bitte hinterlegen Sie bis zum {date} als {label}: {v}.",
        ],
        "phrases": {
            "phone": "Sie erreichen mich unter {v} ab 17 Uhr.",
            "card": "Bitte buchen Sie {price} von meiner Kreditkarte {v} ab.",
            "iban": "Bitte überweisen Sie die Erstattung bis {date} auf {v}.",
            "ssn": "Meine US-Sozialversicherungsnummer lautet {v}.",
            "email": "Schicken Sie die Rechnung bitte an {v}.",
            "api_key": "Der Deploy ist mit dem Schlüssel {v} fehlgeschlagen.",
        },
        "labels": {
            "phone": "Telefon",
            "card": "Kartennummer",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "E-Mail",
            "api_key": "API-Schlüssel",
        },
        "prose": [
            "Bestellung {order} vom {date} um {time} Uhr: {qty} Artikel für {price}, Lieferung an {address}.",
            "Version {version} (Commit {sha}) lief am {iso} aus; Anfrage {uuid} dauerte {ms} ms.",
            "Siehe ISBN {isbn}, Seite {page} von {pages}; die Ausgabe {year} hat {qty} Exemplare.",
        ],
    },
    "fr_FR": {
        "date": "%d/%m/%Y",
        "frames": [
            f"Bonjour, c'est {{name}} de {{city}}. {{label}}{NNBSP}: {{v}}. Merci{NNBSP}!",
            f"Le {{date}}, {{name}} a écrit{NNBSP}: «{NBSP}{{v}}{NBSP}» ({{label}}).",
            "Merci de remplacer votre {label} par {v} avant le {date}.",
        ],
        "phrases": {
            "phone": "Vous pouvez me joindre au {v} après 17 h.",
            "card": "Merci de débiter {price} sur ma carte {v}.",
            "iban": "Merci de virer le remboursement sur {v} avant le {date}.",
            "ssn": "Mon numéro de sécurité sociale américain est le {v}.",
            "email": "Envoyez la facture à {v}, s'il vous plaît.",
            "api_key": "Le déploiement a échoué avec la clé {v}.",
        },
        "labels": {
            "phone": "Téléphone",
            "card": "Numéro de carte",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "E-mail",
            "api_key": "Clé API",
        },
        "prose": [
            "Commande {order} du {date} à {time}{NNBSP}: {qty} articles pour {price}, livrés au {address}.",
            "La version {version} (commit {sha}) est sortie le {iso}{NNBSP}; la requête {uuid} a pris {ms}{NBSP}ms.",
            "Voir l'ISBN {isbn}, page {page} sur {pages}{NNBSP}; l'édition {year} compte {qty} exemplaires.",
        ],
    },
    "es_ES": {
        "date": "%d/%m/%Y",
        "frames": [
            "Hola, soy {name} de {city}. {label}: {v}. ¡Gracias!",
            "El {date}, {name} escribió: «{v}» ({label}).",
            "Por favor, cambie antes del {date} el dato {label} a {v}.",
        ],
        "phrases": {
            "phone": "Puede llamarme al {v} a partir de las 17:00.",
            "card": "Cargue {price} a mi tarjeta {v}, por favor.",
            "iban": "Haga la transferencia a {v} antes del {date}.",
            "ssn": "Mi número de seguro social de EE. UU. es {v}.",
            "email": "Envíe la factura a {v}, por favor.",
            "api_key": "El despliegue falló con la clave {v}.",
        },
        "labels": {
            "phone": "Teléfono",
            "card": "Número de tarjeta",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "Correo",
            "api_key": "Clave API",
        },
        "prose": [
            "Pedido {order} del {date} a las {time}: {qty} artículos por {price}, envío a {address}.",
            "La versión {version} (commit {sha}) salió el {iso}; la petición {uuid} tardó {ms} ms.",
            "Véase el ISBN {isbn}, página {page} de {pages}; la edición de {year} vendió {qty} copias.",
        ],
    },
    "it_IT": {
        "date": "%d/%m/%Y",
        "frames": [
            "Ciao, sono {name} di {city}. {label}: {v}. Grazie!",
            "Il {date} {name} ha scritto: «{v}» ({label}).",
            "Per favore aggiornate entro il {date} il campo {label} con {v}.",
        ],
        "phrases": {
            "phone": "Potete chiamarmi al {v} dopo le 17.",
            "card": "Addebitate {price} sulla mia carta {v}.",
            "iban": "Fate il bonifico su {v} entro il {date}.",
            "ssn": "Il mio numero di previdenza sociale USA è {v}.",
            "email": "Inviate la fattura a {v}, grazie.",
            "api_key": "Il deploy è fallito con la chiave {v}.",
        },
        "labels": {
            "phone": "Telefono",
            "card": "Numero di carta",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "Email",
            "api_key": "Chiave API",
        },
        "prose": [
            "Ordine {order} del {date} alle {time}: {qty} articoli per {price}, spedizione a {address}.",
            "La versione {version} (commit {sha}) è uscita il {iso}; la richiesta {uuid} ha impiegato {ms} ms.",
            "Vedi ISBN {isbn}, pagina {page} di {pages}; l'edizione {year} ha venduto {qty} copie.",
        ],
    },
    "nl_NL": {
        "date": "%d-%m-%Y",
        "frames": [
            "Hoi, met {name} uit {city}. {label}: {v}. Bedankt!",
            "Op {date} schreef {name}: ‘{v}’ ({label}).",
            "Wilt u vóór {date} het veld {label} wijzigen in {v}?",
        ],
        "phrases": {
            "phone": "U kunt mij na 17.00 uur bereiken op {v}.",
            "card": "Schrijf {price} af van mijn creditcard {v}.",
            "iban": "Maak het bedrag vóór {date} over naar {v}.",
            "ssn": "Mijn Amerikaanse social security number is {v}.",
            "email": "Stuur de factuur naar {v}, alstublieft.",
            "api_key": "De deploy faalde met sleutel {v}.",
        },
        "labels": {
            "phone": "Telefoon",
            "card": "Kaartnummer",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "E-mail",
            "api_key": "API-sleutel",
        },
        "prose": [
            "Bestelling {order} van {date} om {time}: {qty} artikelen voor {price}, bezorgd op {address}.",
            "Versie {version} (commit {sha}) verscheen op {iso}; verzoek {uuid} duurde {ms} ms.",
            "Zie ISBN {isbn}, pagina {page} van {pages}; de editie van {year} verkocht {qty} exemplaren.",
        ],
    },
    "pt_BR": {
        "date": "%d/%m/%Y",
        "frames": [
            "Olá, aqui é {name}, de {city}. {label}: {v}. Obrigado!",
            "Em {date}, {name} escreveu: “{v}” ({label}).",
            "Por favor, atualize até {date} o campo {label} para {v}.",
        ],
        "phrases": {
            "phone": "Pode me ligar no {v} depois das 17h.",
            "card": "Cobre {price} no meu cartão {v}.",
            "iban": "Faça a transferência para {v} até {date}.",
            "ssn": "Meu número de seguro social americano é {v}.",
            "email": "Mande a nota fiscal para {v}, por favor.",
            "api_key": "O deploy falhou com a chave {v}.",
        },
        "labels": {
            "phone": "Telefone",
            "card": "Número do cartão",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "E-mail",
            "api_key": "Chave de API",
        },
        "prose": [
            "Pedido {order} de {date} às {time}: {qty} itens por {price}, entrega em {address}.",
            "A versão {version} (commit {sha}) saiu em {iso}; a requisição {uuid} levou {ms} ms.",
            "Veja o ISBN {isbn}, página {page} de {pages}; a edição de {year} vendeu {qty} cópias.",
        ],
    },
    "ja_JP": {
        "date": "%Y年%m月%d日",
        "frames": [
            "{name}です。{city}在住です。{label}：{v}。よろしくお願いします。",
            "{date}に{name}さんから「{v}」（{label}）と連絡がありました。",
            "{date}までに{label}を{v}に変更してください。",
        ],
        "phrases": {
            "phone": "お電話は{v}までお願いします。",
            "card": "{price}をカード{v}で支払います。",
            "iban": "{date}までに{v}へ振り込んでください。",
            "ssn": "米国の社会保障番号は{v}です。",
            "email": "請求書は{v}に送ってください。",
            "api_key": "キー{v}でデプロイに失敗しました。",
        },
        "labels": {
            "phone": "電話番号",
            "card": "カード番号",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "メール",
            "api_key": "APIキー",
        },
        "prose": [
            "注文{order}（{date} {time}）：{qty}点、{price}、お届け先は{address}です。",
            "バージョン{version}（コミット{sha}）は{iso}に公開され、リクエスト{uuid}は{ms}ミリ秒でした。",
            "ISBN {isbn}の{page}ページ（全{pages}ページ）を参照。{year}年版は{qty}部売れました。",
        ],
    },
    "en_IN": {
        "date": "%d-%m-%Y",
        "frames": [
            "Hello, this is {name} from {city}. {label}: {v}. Thank you.",
            "On {date}, {name} wrote: '{v}' ({label}).",
            "Kindly update the {label} in your records to {v} before {date}.",
        ],
        "phrases": {
            "phone": "Please call me on {v}, I will be free after 6 pm.",
            "card": "Kindly debit {price} from my card {v}.",
            "iban": "Please transfer the refund to {v} before {date}.",
            "ssn": "My US social security number is {v}.",
            "email": "Please send the invoice to {v}.",
            "api_key": "The deploy failed with the key {v}, please rotate it.",
        },
        "labels": {
            "phone": "Mobile",
            "card": "Card number",
            "iban": "IBAN",
            "ssn": "SSN",
            "email": "Email",
            "api_key": "API key",
        },
        "prose": [
            "Order {order} dated {date}, {time}: {qty} items for {price}, deliver to {address}.",
            "Version {version} (commit {sha}) was released at {iso}; request {uuid} took {ms} ms.",
            "Refer ISBN {isbn}, page {page} of {pages}; the {year} edition sold {qty} copies.",
        ],
    },
}


def price(locale: str, rng: random.Random) -> str:
    """An amount as the locale writes it, thousands separators included."""
    amount = rng.choice(
        [rng.randint(1, 999), rng.randint(1_000, 99_999), rng.randint(10**5, 10**7)]
    )
    cents = rng.randint(0, 99)
    grouped = f"{amount:,}"
    if locale in ("en_US", "en_GB"):
        return f"{'$' if locale == 'en_US' else '£'}{grouped}.{cents:02d}"
    if locale == "en_IN":  # lakh and crore: 12,34,567.00
        head, tail = str(amount)[:-3], str(amount)[-3:]
        head = ",".join([head[max(0, i - 2) : i] for i in range(len(head), 0, -2)][::-1])
        return f"₹{head + ',' if head else ''}{tail}.{cents:02d}"
    if locale == "ja_JP":
        return f"{grouped}円"
    if locale == "fr_FR":
        return f"{grouped.replace(',', NNBSP)},{cents:02d}{NBSP}€"
    european = grouped.replace(",", ".")
    if locale == "nl_NL":
        return f"€ {european},{cents:02d}"
    if locale == "pt_BR":
        return f"R$ {european},{cents:02d}"
    return f"{european},{cents:02d} €"


# -- values ---------------------------------------------------------------------------------


def api_key(fake: Any) -> str:
    rng = fake.random
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    def token(n: int, chars: str = alnum) -> str:
        # Random keys have every kind of character their alphabet allows.
        kinds = [str.isdigit, str.islower, str.isupper]
        wanted = [k for k in kinds if any(k(c) for c in chars)]
        while True:
            value = "".join(rng.choice(chars) for _ in range(n))
            if all(any(k(c) for c in value) for k in wanted):
                return value

    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    digits = "0123456789"
    return rng.choice(
        [
            lambda: "sk-proj-" + token(48),
            lambda: "sk-" + token(48),
            lambda: "sk-ant-api03-" + token(86, alnum + "-_") + "AA",
            lambda: "sk_live_" + token(24),
            lambda: "ghp_" + token(36),
            lambda: "github_pat_11" + token(20, upper) + "_" + token(59),
            lambda: "AKIA" + token(16, upper),
            lambda: "xoxb-" + token(12, digits) + "-" + token(13, digits) + "-" + token(24),
            lambda: "glpat-" + token(20),
            lambda: "hf_" + token(34),
            lambda: "AIza" + token(35, alnum + "-_"),
            lambda: "npm_" + token(36),
        ]
    )()


def values(kind: str, fake: Any, us: Any, index: int) -> str:
    if kind == "email":
        return str([fake.email, fake.free_email, fake.company_email][index % 3]())
    if kind == "phone":
        return str(fake.phone_number())
    if kind == "card":
        return str(fake.credit_card_number(CARD_TYPES[index % len(CARD_TYPES)]))
    if kind == "iban":
        return str(fake.iban())
    if kind == "ssn":
        return str(us.ssn())
    return api_key(fake)


# -- format variants ------------------------------------------------------------------------

FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "0123456789+-()ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
FULLWIDTH[" "] = "\u3000"  # the ideographic space of a Japanese input method


def card_groups(digits: str) -> list[str]:
    """How each length of card is printed: 4-4-4-4, 4-6-5 (Amex), 4-6-4 (Diners) ..."""
    sizes = {15: [4, 6, 5], 14: [4, 6, 4]}.get(len(digits))
    if sizes is None or digits[:2] in ("18", "21"):  # 15-digit JCB: 4-4-4-3
        sizes = [4] * (len(digits) // 4) + ([len(digits) % 4] if len(digits) % 4 else [])
    groups, at = [], 0
    for size in sizes:
        groups.append(digits[at : at + size])
        at += size
    return groups


def separated(value: str, separator: str) -> str:
    """Every space and hyphen between digits replaced by `separator`."""
    out = list(value)
    for i, char in enumerate(value):
        if char in " -" and 0 < i < len(value) - 1:
            out[i] = separator
    return "".join(out)


def variants(kind: str, value: str) -> Iterator[tuple[str, str]]:
    """(variant name, the value written that way); the as-generated form first."""
    yield "as made", value
    yield "parenthesized", f"({value})"
    if kind in ("email", "api_key"):
        return
    if kind == "card":
        value = " ".join(card_groups(value))
    elif kind == "iban":
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    seen = {value}
    forms = [
        ("grouped", value),
        ("fullwidth", "".join(FULLWIDTH.get(c, c) for c in value)),
        ("dots", separated(value, ".")),
        ("no-break space", separated(value, "\u00a0")),
        ("thin space", separated(value, "\u2009")),
        ("narrow no-break space", separated(value, "\u202f")),
        ("hyphens", separated(value, "-")),
        ("en dash", separated(value, "\u2013")),
    ]
    if kind == "phone" and "(" not in value:
        # The area code (the first group after a country code or trunk prefix) in brackets.
        head, _, rest = value.partition(" ")
        if rest and head.startswith("+"):
            group, _, tail = rest.partition(" ")
            forms.append(("area code in brackets", f"{head} ({group}) {tail}" if tail else ""))
        elif rest:
            forms.append(("area code in brackets", f"({head}) {rest}"))
    for name, form in forms:
        if form and (form not in seen or name == "grouped"):
            seen.add(form)
            if name != "grouped" or kind in ("card", "iban"):
                yield name, form


# -- the corpus -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    locale: str
    kind: str
    variant: str
    text: str
    start: int
    end: int


def fillers(locale: str, fake: Any, rng: random.Random) -> dict[str, str]:
    return {
        "name": fake.name(),
        "city": fake.city(),
        "date": fake.date(pattern=LOCALE_TEXT[locale]["date"]),
        "price": price(locale, rng),
        "time": fake.time(pattern="%H:%M"),
        "order": rng.choice(
            [f"#{fake.numerify('%#####')}", fake.numerify("%#######"), fake.bothify("??-%#####")]
        ).upper(),
        "qty": str(rng.randint(1, 250)),
        "address": fake.address().replace("\n", ", "),
        "version": f"{rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 300)}",
        "sha": rng.choice([fake.sha1()[:7], fake.sha1()]),
        "iso": fake.iso8601(),
        "uuid": fake.uuid4(),
        "ms": str(rng.randint(3, 4000)),
        "isbn": fake.isbn13(),
        "page": str(rng.randint(1, 300)),
        "pages": str(rng.randint(300, 1200)),
        "year": str(rng.randint(1950, 2030)),
        "NNBSP": NNBSP,
        "NBSP": NBSP,
    }


def fill(template: str, slots: dict[str, str]) -> str:
    for name, value in slots.items():
        template = template.replace("{" + name + "}", value)
    return template


# Values that Faker makes but that are not what they claim to be, by an independent check
# (python-stdnum): they are left out and counted. Faker's en_IN IBANs are "GB" with 21
# characters, where a British IBAN has 22.
EXCLUDED: Counter[str] = Counter()


def genuine(kind: str, value: str) -> bool:
    if kind == "iban":
        return bool(stdnum_iban.is_valid(value))
    if kind == "card":
        return bool(stdnum_luhn.is_valid(value))
    return True


def positives() -> list[Case]:
    rng = random.Random(SEED)
    us = faker.Faker("en_US")
    us.seed_instance(SEED)
    cases: list[Case] = []
    for number, locale in enumerate(LOCALES):
        fake = faker.Faker(locale)
        fake.seed_instance(SEED + number)
        text = LOCALE_TEXT[locale]
        for kind in KINDS:
            templates = [
                *(f.replace("{label}", text["labels"][kind]) for f in text["frames"]),
                text["phrases"][kind],
            ]
            for index in range(PER_LOCALE):
                value = values(kind, fake, us, index)
                if not genuine(kind, value):
                    EXCLUDED[f"{locale} {kind}"] += 1
                    continue
                # Each value in one sentence, written in each of its variants.
                frame = fill(rng.choice(templates), fillers(locale, fake, rng))
                before, _, after = frame.partition("{v}")
                start = len(before)
                for variant, written in variants(kind, value):
                    cases.append(
                        Case(locale, kind, variant, before + written + after, start,
                             start + len(written))
                    )  # fmt: skip
    return cases


def prose() -> list[tuple[str, str, str]]:
    """(locale, kind of prose, text): none of it holds PII."""
    rng = random.Random(SEED + 100)
    texts: list[tuple[str, str, str]] = []
    for number, locale in enumerate(LOCALES):
        fake = faker.Faker(locale)
        fake.seed_instance(SEED + 100 + number)
        for _ in range(PROSE_PER_LOCALE):
            texts.append((locale, "paragraph", fake.paragraph(nb_sentences=5)))
            texts.append((locale, "text", fake.text(max_nb_chars=400)))
            texts.append(
                (locale, "with numbers",
                 fill(rng.choice(LOCALE_TEXT[locale]["prose"]), fillers(locale, fake, rng)))
            )  # fmt: skip
        for _ in range(PROSE_PER_LOCALE // 3):
            texts.append(
                (locale, "identifiers",
                 f"{fake.uuid4()} {fake.sha1()} {fake.md5()} {fake.sha256()} {fake.iso8601()} "
                 f"{fake.unix_time():.0f} {fake.date()} {fake.time()} {fake.ipv4()} "
                 f"{fake.isbn13()} {fake.postcode()} {fake.year()}")
            )  # fmt: skip
    return texts


# -- evaluation -----------------------------------------------------------------------------


@dataclass
class Row:
    total: int = 0
    caught: int = 0
    mislabelled: int = 0
    collateral: int = 0
    as_made: int = 0
    as_made_caught: int = 0
    misses: list[Case] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.caught / self.total if self.total else 1.0

    @property
    def as_made_recall(self) -> float:
        return self.as_made_caught / self.as_made if self.as_made else 1.0


@dataclass
class Report:
    label: str
    rows: dict[str, Row]
    variant_misses: Counter[str]
    prose_texts: int
    false_positives: list[tuple[str, str, str]]
    seconds: float


def significant(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(start, end) if text[i].isalnum()}


def evaluate(label: str, cases: list[Case], texts: list[tuple[str, str, str]]) -> Report:
    redactor = Redactor(max_length=None)
    for case in cases[::20]:  # warm up: phonenumbers loads its data on first use
        redactor.find(case.text)
    rows = {kind: Row() for kind in KINDS}
    variant_misses: Counter[str] = Counter()
    started = time.perf_counter()
    for case in cases:
        row = rows[case.kind]
        row.total += 1
        findings = redactor.find(case.text)
        covered: dict[int, str] = {}
        for finding in findings:
            for i in range(finding.start, finding.end):
                covered[i] = finding.kind
        wanted = significant(case.text, case.start, case.end)
        row.as_made += case.variant == "as made"
        if wanted <= covered.keys():
            row.caught += 1
            row.as_made_caught += case.variant == "as made"
            if {covered[i] for i in wanted} != {KINDS[case.kind]}:
                row.mislabelled += 1
        else:
            row.misses.append(case)
            variant_misses[case.variant] += 1
        outside = significant(case.text, 0, case.start) | significant(
            case.text, case.end, len(case.text)
        )
        if outside & covered.keys():
            row.collateral += 1
    false_positives = [(locale, kind, text) for locale, kind, text in texts if redactor.find(text)]
    seconds = time.perf_counter() - started
    return Report(label, rows, variant_misses, len(texts), false_positives, seconds)


def table(report: Report, cases: int) -> list[str]:
    lines = [
        f"{report.label}: {cases} values in sentences, {report.prose_texts} prose texts,"
        f" {report.seconds * 1e6 / (cases + report.prose_texts):.0f} us per text",
        f"{'type':<10}{'values':>8}{'caught':>8}{'recall':>9}{'as made':>9}"
        f"{'mislabelled':>13}{'collateral':>12}",
    ]
    for kind, row in report.rows.items():
        lines.append(
            f"{kind:<10}{row.total:>8}{row.caught:>8}{row.recall:>9.1%}"
            f"{row.as_made_recall:>9.1%}{row.mislabelled:>13}{row.collateral:>12}"
        )
    lines.append(
        f"prose false positives: {len(report.false_positives)} of {report.prose_texts} texts"
    )
    if report.variant_misses:
        lines.append(
            "misses by variant: "
            + ", ".join(f"{v} {n}" for v, n in report.variant_misses.most_common())
        )
    return lines


class _Summary:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.section("redaction recall on Faker data, ten locales")
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> _Summary:
    manager = request.config.pluginmanager
    plugin = manager.get_plugin("tenant_trace_redaction_recall")
    if plugin is None:
        plugin = _Summary()
        manager.register(plugin, "tenant_trace_redaction_recall")
        plugin.lines.append(f"Faker {faker.VERSION}, seed {SEED}, locales {', '.join(LOCALES)}")

    return plugin  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def corpus(summary: _Summary) -> tuple[list[Case], list[tuple[str, str, str]]]:
    cases = positives()
    summary.lines.append(
        "left out, not valid by python-stdnum: "
        + (", ".join(f"{k} {n}" for k, n in EXCLUDED.items()) or "none")
    )
    return cases, prose()


def run(
    label: str, corpus: tuple[list[Case], list[tuple[str, str, str]]], summary: _Summary
) -> Report:
    cases, texts = corpus
    report = evaluate(label, cases, texts)
    lines = table(report, len(cases))
    summary.lines.extend(lines)
    print("\n".join(lines))
    return report


def check(report: Report) -> None:
    misses = {
        kind: [(c.locale, c.variant, c.text[c.start : c.end]) for c in row.misses[:10]]
        for kind, row in report.rows.items()
        if row.recall < 0.98
    }
    assert misses == {}
    assert report.false_positives == []


def test_recall_with_phonenumbers(
    corpus: tuple[list[Case], list[tuple[str, str, str]]], summary: _Summary
) -> None:
    """At least 98% of each type caught, no false positive on prose: the pii extra."""
    pytest.importorskip("phonenumbers")
    check(run("with phonenumbers (the pii extra)", corpus, summary))


def test_recall_without_phonenumbers(
    corpus: tuple[list[Case], list[tuple[str, str, str]]],
    summary: _Summary,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same without the pii extra: phone lengths by rule of thumb."""
    monkeypatch.setattr(redaction_detectors, "_has_phonenumbers", lambda: False)
    check(run("without phonenumbers", corpus, summary))
