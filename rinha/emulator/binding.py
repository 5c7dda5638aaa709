"""Request binding as the real processors do it, as pure functions over bytes and strings.

The processors are ASP.NET Core minimal APIs: bodies are read by System.Text.Json with its web
defaults, route and query values by the framework's parsers. Each function below reproduces one
of those readers as a client observes it and says which one; none of them does I/O.

Values come out as the .NET types would hold them: a GUID as its lower-case hyphenated text, a
``decimal`` as a :class:`~decimal.Decimal` with the same scale, a ``DateTime`` as its ticks
(100 ns units since 0001-01-01), already moved to UTC wall time where the input carried ``Z`` or
an offset (the containers run in UTC). What the processor then stores is :mod:`.ledger`'s
business.

Rejections raise :class:`BindingError` carrying the reply status: 415 for a body that is not
JSON, 400 for everything the framework refuses, 500 for a charset .NET cannot decode (an
unhandled exception there).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from urllib.parse import unquote_plus

#: Decimal arithmetic that never rounds at the sizes handled here (sums, products, quantize).
EXACT = Context(prec=200, rounding=ROUND_HALF_EVEN, Emin=-999_999_999, Emax=999_999_999)

#: ``DateTime`` ticks: 100 ns units since 0001-01-01T00:00:00.
TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
#: ``DateTime.MaxValue.Ticks`` (9999-12-31T23:59:59.9999999); ``DateTime.MinValue`` is 0.
MAX_TICKS = 3_155_378_975_999_999_999

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"

#: The largest coefficient of a .NET ``decimal`` (96 bits) and its largest scale.
_DECIMAL_COEFFICIENT_LIMIT = Decimal(2**96)
_DECIMAL_MAX_SCALE = 28
_DECIMAL_MAX_INTEGER_DIGITS = 29

#: ``char.IsWhiteSpace``: what ``Trim()`` and ``Guid.TryParse`` strip (Python's ``isspace`` differs).
NET_WHITESPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                  "\u2028\u2029\u202f\u205f\u3000")

_MAX_JSON_DEPTH = 64
_UTF8_BOM = b"\xef\xbb\xbf"


class BindingError(Exception):
    """The framework refuses the request before the endpoint runs; ``status`` is the reply."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


# --- Names -----------------------------------------------------------------------------------


def fold(name: str) -> str:
    """The key under which .NET's ``OrdinalIgnoreCase`` sees ``name``: per-character simple upper case."""
    if name.isascii():
        return name.upper()
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in name)


# --- The JSON body ---------------------------------------------------------------------------


class _Object(list):
    """A JSON object as its (name, value) pairs in document order (duplicates kept)."""

    __slots__ = ()


def _number(text: str) -> Decimal:
    """A number with a fraction or exponent, exactly; an exponent beyond Python's range gives what
    .NET's parser makes of it: zero (scale 28) when tiny or zero, infinity (out of range) when huge."""
    try:
        return Decimal(text)
    except InvalidOperation:
        mantissa, _, exponent = text.lower().partition("e")
        tiny = exponent.startswith("-")
        if tiny or not mantissa.strip("+-0."):
            return Decimal((0, (0,), -_DECIMAL_MAX_SCALE if tiny else 0))
        return Decimal("Infinity")


def _integer(text: str) -> int | Decimal:
    # Python refuses int() of more than 4300 digits; .NET skips such a number in an unknown property.
    return int(text) if len(text) < 4000 else Decimal(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_Object, parse_float=_number, parse_int=_integer,
                            parse_constant=_no_constant)

#: Names ``Encoding.GetEncoding`` knows on .NET (without code-page providers), as Python codecs.
_CHARSETS = {
    **dict.fromkeys(("ansi_x3.4-1968", "ansi_x3.4-1986", "ascii", "cp367", "csascii", "ibm367", "iso-ir-6",
                     "iso646-us", "iso_646.irv:1991", "us", "us-ascii"), "ascii"),
    **dict.fromkeys(("cp819", "csisolatin1", "ibm819", "iso-8859-1", "iso-ir-100", "iso8859-1", "iso_8859-1",
                     "iso_8859-1:1987", "l1", "latin1"), "latin-1"),
    **dict.fromkeys(("unicode-1-1-utf-8", "unicode-2-0-utf-8", "utf-8", "x-unicode-1-1-utf-8",
                     "x-unicode-2-0-utf-8"), "utf-8"),
    **dict.fromkeys(("iso-10646-ucs-2", "ucs-2", "unicode", "utf-16", "utf-16le"), "utf-16-le"),
    **dict.fromkeys(("unicodefffe", "utf-16be"), "utf-16-be"),
    **dict.fromkeys(("utf-32", "utf-32le"), "utf-32-le"),
    "utf-32be": "utf-32-be",
}

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(
    rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*"
    rf"((?:;[ \t]*{_TOKEN}[ \t]*(?:=[ \t]*(?:{_TOKEN}|\"(?:[^\"\\]|\\.)*\"))?[ \t]*)*)"
)
_CHARSET_PARAMETER = re.compile(rf";[ \t]*charset[ \t]*=[ \t]*({_TOKEN}|\"(?:[^\"\\]|\\.)*\")", re.IGNORECASE)


@lru_cache(maxsize=256)
def json_charset(content_type: bytes | None) -> str | None:
    """The Python codec for a body of this Content-Type, or None if it is not JSON (415).

    JSON means ``application/json`` or any ``*/*+json`` (``HasJsonContentType``), parameters
    allowed. Raises BindingError(500) for a charset .NET does not know (its reader throws).
    """
    if content_type is None:
        return None
    match = _MEDIA_TYPE.fullmatch(content_type.decode("latin-1"))
    if match is None:
        return None
    kind, subtype, parameters = match.group(1).lower(), match.group(2).lower(), match.group(3)
    _, plus, suffix = subtype.rpartition("+")
    if (kind, subtype) != ("application", "json") and not (plus and suffix == "json"):
        return None
    charset = _CHARSET_PARAMETER.search(parameters)
    if charset is None:
        return "utf-8"
    codec = _CHARSETS.get(charset.group(1).strip('"').lower())
    if codec is None:
        raise BindingError(500)
    return codec


def read_json_object(body: bytes, content_type: bytes | None) -> list[tuple[str, object]]:
    """The body as the pairs of one JSON object, the way ``ReadFromJsonAsync`` accepts it.

    No body: 400. Not JSON by its Content-Type: 415. Not valid JSON (System.Text.Json's strict
    grammar: no NaN, no comments, no trailing commas, depth at most 64), or not an object: 400.
    Numbers come back as int or Decimal, never float.
    """
    if not body:
        raise BindingError(400)
    codec = json_charset(content_type)
    if codec is None:
        raise BindingError(415)
    if codec == "utf-8":
        text = body.removeprefix(_UTF8_BOM).decode("utf-8", "surrogateescape")
    else:
        text = body.decode(codec, "replace").removeprefix("\ufeff")
    try:
        document = _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise BindingError(400) from None
    if type(document) is not _Object or (len(body) > 2 * _MAX_JSON_DEPTH and _depth(document) > _MAX_JSON_DEPTH):
        raise BindingError(400)
    return document


def _depth(document: object) -> int:
    """How many objects and arrays nest at the deepest point of ``document``."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if type(node) is _Object:
            stack.extend((value, depth + 1) for _, value in node if isinstance(value, list))
        else:
            stack.extend((value, depth + 1) for value in node if isinstance(value, list))
    return deepest


# --- Field readers (System.Text.Json converters) -----------------------------------------------

_HYPHENATED_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def read_guid(value: object) -> str:
    """A ``Guid`` from JSON: a string in the hyphenated 8-4-4-4-12 form only (``Utf8Parser`` 'D')."""
    if type(value) is str and _HYPHENATED_GUID.fullmatch(value):
        return value.lower()
    raise BindingError(400)


def read_decimal(value: object) -> Decimal:
    """A ``decimal`` from a JSON number or, as the web defaults allow, from a numeric string.

    The string grammar is ``Utf8Parser``'s (sign, ``5.``, ``.5``, exponent; no spaces). Values
    outside the ``decimal`` range give 400; extra precision is rounded as .NET does.
    """
    if type(value) is str:
        if not _DECIMAL_TEXT.fullmatch(value):
            raise BindingError(400)
        value = _number(value)
    elif type(value) is int:
        value = Decimal(value)
    elif type(value) is not Decimal:
        raise BindingError(400)
    result = net_decimal(value)
    if result is None:
        raise BindingError(400)
    return result


def read_int32(value: object) -> int:
    """An ``int`` from a JSON integer (no fraction, no exponent) or an integer string, in range."""
    if type(value) is str and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    elif type(value) is not int:
        raise BindingError(400)
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise BindingError(400)
    return value


def read_bool(value: object) -> bool:
    """A ``bool``: JSON ``true`` or ``false`` only."""
    if type(value) is bool:
        return value
    raise BindingError(400)


def read_nullable_string(value: object) -> str | None:
    """A ``string?``: a JSON string (valid UTF-16) or ``null``."""
    if value is None:
        return None
    if type(value) is str:
        try:
            value.encode()
        except UnicodeEncodeError:
            raise BindingError(400) from None
        return value
    raise BindingError(400)


def read_datetime(value: object) -> int:
    """A ``DateTime`` from JSON, as ticks; see :func:`parse_iso_datetime`."""
    if type(value) is str:
        ticks = parse_iso_datetime(value)
        if ticks is not None:
            return ticks
    raise BindingError(400)


# --- Request bodies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """``POST /payments`` as bound: ``requested_at`` in ticks (0 is ``DateTime.MinValue``)."""

    correlation_id: str
    amount: Decimal
    requested_at: int


_ZERO = Decimal(0)

#: The body the daemon sends, byte for byte: a lower-case GUID, a plain amount of at most two
#: decimals (no sign, no leading zero), a UTC timestamp to the millisecond, in this order and
#: without spaces. Nothing in it can mean anything but what the groups say.
_CANONICAL_PAYMENT = re.compile(
    rb'\{"correlationId":"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",'
    rb'"amount":((?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,2})?),'
    rb'"requestedAt":"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z"\}'
)


def bind_payment(body: bytes, content_type: bytes | None) -> PaymentRequest:
    """``POST /payments``'s body as the framework binds it: :func:`read_canonical_payment` when it
    applies (what the daemon sends, in half the time), else :func:`bind_payment_json`."""
    return read_canonical_payment(body, content_type) or bind_payment_json(body, content_type)


def read_canonical_payment(body: bytes, content_type: bytes | None) -> PaymentRequest | None:
    """The payment of a canonical body (:data:`_CANONICAL_PAYMENT`, a valid date), in one regular
    expression; None for any other body. Where it answers, it answers what
    :func:`bind_payment_json` does (``tests/test_emulator_binding.py`` holds it to that)."""
    if content_type != b"application/json":
        return None
    match = _CANONICAL_PAYMENT.fullmatch(body)
    if match is None:
        return None
    correlation_id, amount, year, month, day, hour, minute, second, millis = match.groups()
    ticks = _ticks(int(year), int(month), int(day), int(hour), int(minute), int(second), int(millis) * 10_000)
    if ticks is None:
        return None  # not a date: the reader's 400
    return PaymentRequest(correlation_id.decode(), Decimal(amount.decode()), ticks)


def bind_payment_json(body: bytes, content_type: bytes | None) -> PaymentRequest:
    """The payment record: names case-insensitive, the last duplicate wins (each one must be
    valid), unknown names ignored, missing fields at their defaults (empty GUID, 0, MinValue)."""
    correlation_id, amount, requested_at = EMPTY_GUID, _ZERO, 0
    for name, value in read_json_object(body, content_type):
        key = fold(name)
        if key == "CORRELATIONID":
            correlation_id = read_guid(value)
        elif key == "AMOUNT":
            amount = read_decimal(value)
        elif key == "REQUESTEDAT":
            requested_at = read_datetime(value)
    return PaymentRequest(correlation_id, amount, requested_at)


def bind_field(body: bytes, content_type: bytes | None, name: str, read, default):
    """A one-field admin body (``{"delay":…}``, ``{"failure":…}``, ``{"token":…}``) by the same rules."""
    key = fold(name)
    result = default
    for field, value in read_json_object(body, content_type):
        if fold(field) == key:
            result = read(value)
    return result


# --- GUIDs in routes (Guid.TryParse) -----------------------------------------------------------

_HEX = frozenset("0123456789abcdefABCDEF")


def parse_guid(text: str) -> str | None:
    """``Guid.TryParse``: the lenient forms, as lower-case hyphenated text, or None.

    Surrounding whitespace is trimmed, then: ``(…)`` and ``{…}`` around the hyphenated form, the
    hyphenated form itself (whose first four groups also accept the legacy ``+`` and ``0x``
    prefixes within their width), 32 hex digits, or the ``{0x…,0x…,0x…,{0x…,…}}`` form.
    """
    text = text.strip(NET_WHITESPACE)
    if len(text) < 32:
        return None
    if text[0] == "(":
        return _guid_wrapped(text, ")")
    if text[0] == "{":
        return _guid_wrapped(text, "}") if text[9] == "-" else _guid_x(text)
    if text[8] == "-":
        return _guid_d(text)
    if len(text) == 32 and _HEX.issuperset(text):
        return _guid_text(int(text[:8], 16), int(text[8:12], 16), int(text[12:16], 16), bytes.fromhex(text[16:]))
    return None


def _guid_text(a: int, b: int, c: int, tail: bytes) -> str:
    rest = tail.hex()
    return f"{a:08x}-{b:04x}-{c:04x}-{rest[:4]}-{rest[4:]}"


def _guid_wrapped(text: str, closer: str) -> str | None:
    if len(text) != 38 or text[37] != closer:
        return None
    return _guid_d(text[1:37])


def _guid_d(text: str) -> str | None:
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return None
    if _HYPHENATED_GUID.fullmatch(text):
        return text.lower()
    if not any(char in text for char in "xX+"):
        return None
    # Legacy: the groups of width 8, 4, 4, 4 and the first 4 of the last 12 may carry "+" / "0x".
    parts = [_legacy_hex(text[start:end]) for start, end in ((0, 8), (9, 13), (14, 18), (19, 23), (24, 28))]
    last = text[28:36]
    if None in parts or not _HEX.issuperset(last):
        return None
    a, b, c, de, fg = parts
    return f"{a:08x}-{b:04x}-{c:04x}-{de:04x}-{fg:04x}{last.lower()}"


def _legacy_hex(text: str) -> int | None:
    """Guid's ``TryParseHex``: optional ``+``, optional ``0x``, then hex digits (maybe none)."""
    text = text.removeprefix("+")
    if len(text) > 1 and text[0] == "0" and text[1] in "xX":
        text = text[2:]
    if not _HEX.issuperset(text):
        return None
    return int(text, 16) if text else 0


def _guid_x(text: str) -> str | None:
    """``{0xAAAAAAAA,0xBBBB,0xCCCC,{0xDD,0xEE,0xFF,0xGG,0xHH,0xII,0xJJ,0xKK}}``, whitespace anywhere.

    Each field is ``0x`` then Guid's legacy hex (see :func:`_legacy_hex`) of at most 32 bits;
    the two short fields are truncated to 16 bits, the eight last must fit a byte.
    """
    text = "".join(char for char in text if char not in NET_WHITESPACE)
    if not (text.startswith("{") and text.endswith("}}")):
        return None
    head, brace, tail = text[1:-2].partition(",{")
    fields = head.split(",") + tail.split(",")
    if not brace or len(fields) != 11:
        return None
    values = []
    for field in fields:
        value = _legacy_hex(field[2:]) if len(field) > 2 and field[0] == "0" and field[1] in "xX" else None
        if value is None or value >= 2**32:
            return None
        values.append(value)
    a, b, c, *tail_bytes = values
    if max(tail_bytes) > 0xFF:
        return None
    return _guid_text(a, b & 0xFFFF, c & 0xFFFF, bytes(tail_bytes))


# --- DateTime ------------------------------------------------------------------------------------

_ISO_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.(?=.)([0-9]{0,16}))?)?(Z|[+-][0-9]{2}(?::[0-9]{2})?)?)?"
)


def parse_iso_datetime(text: str) -> int | None:
    """System.Text.Json's ``DateTime`` reader (its ISO 8601 profile), as ticks, or None.

    ``yyyy-MM-dd``, ``yyyy-MM-ddTHH:mm``, ``…:ss``, ``…:ss.f`` (1–16 digits, 7 used), each
    time form optionally followed by ``Z``, ``±HH`` or ``±HH:mm`` (offset at most 14:00).
    Upper-case ``T`` and ``Z`` only. ``Z`` and offsets give UTC wall time.
    """
    if not 10 <= len(text) <= 42 or not text.isascii():
        return None
    match = _ISO_DATETIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    ticks = _ticks(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                   int((fraction or "")[:7].ljust(7, "0")))
    if ticks is None or zone is None or zone == "Z":
        return ticks
    return _to_utc(ticks, zone[0], int(zone[1:3]), int(zone[4:6] or 0))


def _ticks(year: int, month: int, day: int, hour: int, minute: int, second: int, fraction: int) -> int | None:
    """Ticks of a calendar date and time of day, or None if it is not a valid one."""
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        days = date(year, month, day).toordinal() - 1
    except ValueError:
        return None
    return days * TICKS_PER_DAY + (hour * 3600 + minute * 60 + second) * TICKS_PER_SECOND + fraction


def _to_utc(ticks: int, sign: str, hours: int, minutes: int) -> int | None:
    """Local ticks with a ``±hh:mm`` offset as UTC ticks, or None if out of range (``DateTimeOffset``)."""
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        return None
    offset = (hours * 3600 + minutes * 60) * TICKS_PER_SECOND
    utc = ticks - offset if sign == "+" else ticks + offset
    return utc if 0 <= utc <= MAX_TICKS else None


_LENIENT_DATETIME = re.compile(
    r"(?:([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})|([0-9]{1,2})/([0-9]{1,2})/([0-9]{4}))"
    r"(?:(?:T|[ \t]+)([0-9]{1,2}):([0-9]{1,2})(?::([0-9]{1,2})(?:\.([0-9]+))?)?)?"
    r"[ \t]*(Z|GMT|[+-][0-9]{1,2}(?::?[0-9]{2})?)?",
    re.ASCII,
)


def parse_lenient_datetime(text: str) -> int | None:
    """``DateTime.TryParse`` (invariant culture, ``AdjustToUniversal``) for the forms clients send, as
    ticks, or None.

    Accepted: ``yyyy-M-d`` or ``yyyy/M/d`` or ``M/d/yyyy``, optionally a time ``H:mm[:ss[.f…]]``
    after ``T`` or spaces, optionally ``Z``, ``GMT`` or an offset ``±H``, ``±HH:mm``, ``±HHmm``;
    surrounding whitespace ignored. ``Z`` and offsets convert to UTC, no zone keeps the wall time.
    Other forms .NET also reads (month names, AM/PM, time only) are refused here.
    """
    match = _LENIENT_DATETIME.fullmatch(text.strip(NET_WHITESPACE))
    if match is None:
        return None
    iso_year, _, iso_month, iso_day, us_month, us_day, us_year, hour, minute, second, fraction, zone = match.groups()
    year, month, day = (iso_year, iso_month, iso_day) if iso_year else (us_year, us_month, us_day)
    fraction = (fraction or "")[:16]  # .NET reads the fraction into a double: 16 digits carry all it keeps
    fraction_ticks = round(Fraction(int(fraction), 10 ** len(fraction)) * TICKS_PER_SECOND) if fraction else 0
    ticks = _ticks(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), 0)
    if ticks is None:
        return None
    ticks += fraction_ticks
    if zone is None or zone in ("Z", "GMT"):
        return ticks if ticks <= MAX_TICKS else None
    digits = zone[1:].replace(":", "")
    hours, minutes = (digits, "0") if len(digits) <= 2 else (digits[:-2], digits[-2:])
    return _to_utc(ticks, zone[0], int(hours), int(minutes))


def bind_summary_bounds(query: bytes) -> tuple[int | None, int | None]:
    """``from`` and ``to`` of ``/admin/payments-summary`` as ticks; None where missing or empty.

    Query names are case-insensitive, ``+`` is a space, repeated values are joined by commas
    (``StringValues.ToString``). An unparseable bound raises BindingError(400).
    """
    values: dict[str, list[str]] = {"FROM": [], "TO": []}
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        key = fold(unquote_plus(name.decode("latin-1"), encoding="utf-8"))
        if key in values:
            values[key].append(unquote_plus(value.decode("latin-1"), encoding="utf-8"))
    return _bound(values["FROM"]), _bound(values["TO"])


def _bound(values: list[str]) -> int | None:
    if not values or values == [""]:
        return None
    ticks = parse_lenient_datetime(",".join(values))
    if ticks is None:
        raise BindingError(400)
    return ticks


# --- decimal -------------------------------------------------------------------------------------


def net_decimal(value: Decimal) -> Decimal | None:
    """``value`` as a .NET ``decimal`` would hold it, or None if it is out of range.

    At most 28 decimals and a 96-bit coefficient: extra digits are rounded half to even (as
    .NET's parser and arithmetic do), keeping as many decimals as fit. Trailing zeros (the
    scale) are kept; a positive exponent is spelled out (``1E+2`` is 100); a zero input loses its sign.
    """
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return None
    if value.is_zero():
        return Decimal((0, (0,), -min(max(-exponent, 0), _DECIMAL_MAX_SCALE)))
    if exponent <= 0 and -exponent <= _DECIMAL_MAX_SCALE and len(digits) <= _DECIMAL_MAX_SCALE:
        return value
    if len(digits) + exponent > _DECIMAL_MAX_INTEGER_DIGITS:
        return None
    for scale in range(min(max(-exponent, 0), _DECIMAL_MAX_SCALE), -1, -1):
        rounded = value.quantize(Decimal((0, (1,), -scale)), context=EXACT)
        if rounded.scaleb(scale, context=EXACT).copy_abs() < _DECIMAL_COEFFICIENT_LIMIT:
            return rounded
    return None
