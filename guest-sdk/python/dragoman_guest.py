"""dragoman_guest: the Python side of the Dragoman guest SDK, one module with no dependency.

It gives a translator written with componentize-py what the Rust SDK (`dragoman-guest`) gives
one in Rust, with the same error codes (docs/plugins/contract.md lists them), so the same
fixtures pass in either language:

- `decode(message)`: the body by its bytes, whatever its declared content type: JSON (numbers
  kept as their exact text), XML or form data, behind a UTF-8 or UTF-16 byte order mark;
- `field`, `text_value`, `string_value`, `integer_value`, `decimal_value`, `list_value`:
  checked readers that name the field at fault;
- `money(amount, currency, rounding)`: integer minor units, with integers only;
- `event(event_type, subject, data)`: a domain event, its data written as JSON;
- `translator`: wraps `translate` so a refusal (`Rejected`, `Transient`) becomes the WIT
  error, the events are checked field by field, and any other exception is a plugin fault
  whose message keeps the file and line it came from.

Copy this file beside your app.py (`dragoman plugin new --lang python` does); its version is
`VERSION`, the contract's is `CONTRACT`.
"""

import functools
import json
import re
import sys
import traceback
from urllib.parse import parse_qsl

VERSION = "0.1.0"
CONTRACT = "dragoman:translator@0.1.0"


class Rejected(Exception):
    """The input is wrong and will stay wrong: a `rejected` translate error."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Transient(Exception):
    """A later attempt may succeed: a `transient` translate error."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class OutputError(TypeError):
    """`translate` returned something the contract cannot carry; the message names the field."""


class Number(str):
    """A JSON number, kept as the text it was written with."""


# ===== Decoding the body =====


def body_text(body):
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    elif body.startswith(b"\xff\xfe") or body.startswith(b"\xfe\xff"):
        return utf16(body[2:], big_endian=body.startswith(b"\xfe\xff"))
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected("invalid-encoding", f"the body is not valid UTF-8 (first bad byte at offset {e.start})")


def utf16(data, big_endian):
    """UTF-16 by hand: the CPython that componentize-py embeds has no UTF-16 codec."""
    if len(data) % 2:
        raise Rejected("invalid-encoding", "the UTF-16 body has an odd number of bytes")
    high, low = (0, 1) if big_endian else (1, 0)
    units = [data[i + high] << 8 | data[i + low] for i in range(0, len(data), 2)]
    chars, at = [], 0
    while at < len(units):
        unit = units[at]
        if 0xD800 <= unit < 0xDC00 and at + 1 < len(units) and 0xDC00 <= units[at + 1] < 0xE000:
            chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (units[at + 1] - 0xDC00)))
            at += 2
        elif 0xD800 <= unit < 0xE000:
            raise Rejected("invalid-encoding", f"the UTF-16 body is malformed: a lone surrogate at offset {2 + 2 * at}")
        else:
            chars.append(chr(unit))
            at += 1
    return "".join(chars)


FORM_BYTES = re.compile(r"^[A-Za-z0-9%+\-._~*\[\]=!$'(),;:@/?&]*$")


def looks_like_form(text):
    text = text.rstrip()
    if "=" not in text or not FORM_BYTES.match(text):
        return False
    return all(pair.split("=")[0] for pair in text.split("&"))


def decode_body(body, declared):
    text = body_text(body)
    trimmed = text.lstrip()
    if not trimmed:
        raise Rejected("empty-body", "the body is empty")
    first = trimmed[0]
    if first in "{[":
        return parse_json(trimmed)
    if first == "<":
        return parse_xml(trimmed)
    declared_form = (declared or "").strip().lower().startswith("application/x-www-form-urlencoded")
    if looks_like_form(trimmed) and (declared_form or not is_json(trimmed)):
        return parse_form(trimmed)
    if is_json(trimmed):
        return parse_json(trimmed)
    raise Rejected(
        "unsupported-format",
        f"the body is neither JSON, XML nor form data (declared content type: {declared or 'none'})",
    )


def parse_json(text):
    try:
        return json.loads(text, parse_float=Number, parse_constant=reject_constant)
    except (ValueError, Rejected) as e:
        raise Rejected("malformed-json", f"the body is not valid JSON: {e}")


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def is_json(text):
    try:
        parse_json(text)
        return True
    except Rejected:
        return False


XML_TOKEN = re.compile(
    r"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[(?P<cdata>.*?)\]\]>|<!DOCTYPE[^>]*>"
    r"|<(?P<close>/)?(?P<name>[A-Za-z_][\w.:-]*)(?P<attrs>(?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)\s*(?P<empty>/)?>"
    r"|(?P<text>[^<]+)",
    re.S,
)
XML_ATTR = re.compile(r"([A-Za-z_][\w.:-]*)\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
XML_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
XML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


class Node:
    def __init__(self, tag, attrib):
        self.tag, self.attrib, self.children, self.texts = tag, attrib, [], []


def unescape(text):
    if "&" in XML_ENTITY.sub("", text):
        raise Rejected("malformed-xml", "the body is not valid XML: a bare `&` or an unknown entity")

    def one(match):
        name = match.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return XML_NAMED[name]

    return XML_ENTITY.sub(one, text)


def parse_xml(text):
    """A small XML reader for documents of elements, attributes and text (what vendors send);
    enough to read them as the Rust SDK does, and strict about well-formedness."""
    stack, root, at = [], None, 0
    while at < len(text):
        match = XML_TOKEN.match(text, at)
        if match is None:
            raise Rejected("malformed-xml", f"the body is not valid XML: unexpected `{text[at:at + 10]}` at offset {at}")
        at = match.end()
        if match.group("name"):
            name = local(match.group("name"))
            if match.group("close"):
                if not stack or stack[-1].tag != name:
                    raise Rejected("malformed-xml", f"the body is not valid XML: unexpected end tag `{name}`")
                stack.pop()
                continue
            attrib = {
                local(k): unescape(v1 or v2)
                for k, v1, v2 in XML_ATTR.findall(match.group("attrs") or "")
                if k != "xmlns" and not k.startswith("xmlns:")
            }
            node = Node(name, attrib)
            if stack:
                stack[-1].children.append(node)
            elif root is None:
                root = node
            else:
                raise Rejected("malformed-xml", "the body is not valid XML: more than one root element")
            if not match.group("empty"):
                stack.append(node)
        elif match.group("text") is not None:
            if stack:
                stack[-1].texts.append(unescape(match.group("text")))
            elif match.group("text").strip():
                raise Rejected("malformed-xml", "the body is not valid XML: text outside the root element")
        elif match.group("cdata") is not None and stack:
            stack[-1].texts.append(match.group("cdata"))
    if root is None or stack:
        raise Rejected("malformed-xml", "the body is not valid XML: an element is not closed")
    return element(root)


def local(tag):
    return tag.rsplit(":", 1)[-1]


def element(node):
    out = {"@" + name: value for name, value in node.attrib.items()}
    for child in node.children:
        insert(out, child.tag, element(child))
    text = "".join(node.texts).strip()
    if not node.children and not out:
        return text if text else None
    if text:
        out["#text"] = text
    return out


def insert(mapping, key, value):
    if key not in mapping:
        mapping[key] = value
    elif isinstance(mapping[key], list):
        mapping[key].append(value)
    else:
        mapping[key] = [mapping[key], value]


def parse_form(text):
    root = {}
    for key, value in parse_qsl(text.rstrip(), keep_blank_values=True):
        path = key_path(key)
        if path is None:
            raise Rejected("malformed-form", f"form key `{key}` has unbalanced brackets")
        place(root, path, value)
    return arrays(root)


def key_path(key):
    if "[" not in key:
        return [key]
    head, rest = key.split("[", 1)
    path = [head]
    rest = "[" + rest
    while rest:
        if not rest.startswith("[") or "]" not in rest:
            return None
        end = rest.index("]")
        path.append(rest[1:end])
        rest = rest[end + 1 :]
    return path


def place(mapping, path, value):
    first, rest = path[0], path[1:]
    if not rest:
        insert(mapping, first, value)
        return
    if rest == [""]:
        current = mapping.setdefault(first, [])
        if isinstance(current, list):
            current.append(value)
        else:
            mapping[first] = [current, value]
        return
    nested = mapping.setdefault(first, {})
    if not isinstance(nested, dict):
        nested = {"#text": nested}
        mapping[first] = nested
    place(nested, rest, value)


def arrays(value):
    if isinstance(value, dict):
        value = {k: arrays(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [v for _, v in sorted(value.items(), key=lambda kv: int(kv[0]))]
        return value
    if isinstance(value, list):
        return [arrays(v) for v in value]
    return value


def decode(message):
    """The body of `message` as one tree (dicts, lists, str, int, `Number`), decoded by its
    bytes; `Rejected` with `empty-body`, `invalid-encoding`, `malformed-json`, `malformed-xml`,
    `malformed-form` or `unsupported-format`."""
    return decode_body(message.body, message.content_type)


# ===== Reading the vendor's fields =====


def field(obj, name, path):
    if not isinstance(obj, dict):
        raise Rejected("invalid-value", f"{path or '.'}: invalid type: expected a map")
    if name not in obj:
        where = f"{path}: " if path else ""
        raise Rejected("missing-field", f"{where}missing field `{name}`")
    return obj[name]


def text_value(value, path):
    if isinstance(value, str):
        return str(value)
    if type(value) is int:
        return str(value)
    raise Rejected("invalid-value", f"{path}: invalid type: expected a string")


def string_value(value, path):
    if isinstance(value, str) and not isinstance(value, Number):
        return value
    raise Rejected("invalid-value", f"{path}: invalid type: expected a string")


def integer_value(value, path):
    if type(value) is int:
        return value
    if isinstance(value, str) and not isinstance(value, Number) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    raise Rejected("invalid-value", f"{path}: invalid value: `{value}` is not a whole number")


DECIMAL = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$")


def decimal_value(value, path):
    """An exact decimal as (negative, mantissa, scale): value = mantissa * 10**-scale."""
    if type(value) is int:
        return (value < 0, abs(value), 0)
    try:
        return parse_decimal(value)
    except Rejected:
        raise Rejected("invalid-value", f"{path}: invalid value: `{value}` is not a decimal number") from None


def list_value(value, path):
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, list):
            return inner
        if isinstance(inner, dict):
            return [inner]
    if isinstance(value, dict):
        return [value]
    raise Rejected("invalid-value", f"{path}: invalid type: expected a list")

# ===== Money =====

ZERO_DECIMALS = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
THREE_DECIMALS = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
FOUR_DECIMALS = {"CLF", "UYW"}
HALF_EVEN, HALF_UP, EXACT = "half-even", "half-up", "exact"


def minor_unit_exponent(currency):
    """The digits of the currency's minor unit (ISO 4217); a well-formed code this table does
    not know gets 2, as in the Rust SDK. `Rejected` with `invalid-currency` for anything but
    three upper-case ASCII letters."""
    if not isinstance(currency, str) or len(currency) != 3 or not all("A" <= c <= "Z" for c in currency):
        raise Rejected("invalid-currency", f"`{currency}` is not an ISO 4217 currency code")
    if currency in ZERO_DECIMALS:
        return 0
    if currency in THREE_DECIMALS:
        return 3
    if currency in FOUR_DECIMALS:
        return 4
    return 2


def parse_decimal(text):
    """`text` as an exact decimal (negative, mantissa, scale); `Rejected` with
    `invalid-decimal`."""
    match = DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None or not (match.group(2) or match.group(3)):
        raise Rejected("invalid-decimal", f"`{text}` is not a decimal number")
    sign, whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    mantissa = int(whole + fraction or "0")
    return (sign == "-" and mantissa != 0, mantissa, len(fraction) - int(exponent or 0))


def minor_units(mantissa, scale, exponent, rounding=HALF_EVEN):
    """mantissa * 10**-scale in units of 10**-exponent, with integers only; None when
    `rounding` is EXACT and the amount has more digits."""
    shift = exponent - scale
    if shift >= 0:
        return mantissa * 10**shift
    divisor = 10**-shift
    quotient, remainder = divmod(mantissa, divisor)
    twice = remainder * 2
    if rounding == EXACT:
        return quotient if remainder == 0 else None
    if rounding == HALF_UP:
        return quotient + (1 if twice >= divisor else 0)
    return quotient + (1 if twice > divisor or (twice == divisor and quotient % 2 == 1) else 0)


def money(amount, currency, rounding=HALF_EVEN):
    """`{"amount_minor": int, "currency": str}`: `amount` (a decimal from `decimal_value` or
    `parse_decimal`, or its text) in the currency's minor units. `Rejected` with
    `invalid-currency`, `invalid-decimal`, `inexact-amount` (EXACT and too many digits) or
    `amount-out-of-range` (beyond a signed 64-bit integer)."""
    if rounding not in (HALF_EVEN, HALF_UP, EXACT):
        raise ValueError(f"rounding {rounding!r} is not HALF_EVEN, HALF_UP or EXACT")
    exponent = minor_unit_exponent(currency)
    negative, mantissa, scale = amount if isinstance(amount, tuple) else parse_decimal(amount)
    magnitude = minor_units(mantissa, scale, exponent, rounding)
    if magnitude is None:
        raise Rejected("inexact-amount", f"amount {format_decimal(amount)} has more digits than {currency} minor units")
    if magnitude >= 2**63:
        raise Rejected("amount-out-of-range", f"amount {format_decimal(amount)} {currency} is too large")
    return {"amount_minor": -magnitude if negative else magnitude, "currency": currency}


def format_decimal(amount):
    if not isinstance(amount, tuple):
        return str(amount).strip()
    negative, mantissa, scale = amount
    digits = str(mantissa)
    if scale > 0:
        digits = digits.rjust(scale + 1, "0")
        digits = digits[:-scale] + "." + digits[-scale:]
    elif scale < 0:
        digits += "0" * -scale
    return ("-" if negative else "") + digits


# ===== Events =====


def event(event_type, subject, data, partition_key=None):
    """A domain event; `data` is any JSON value (dicts, lists, str, int, `Number`), written as
    JSON, or a str that already is JSON. The partition key defaults to the subject."""
    from wit_world.imports import types

    if not isinstance(data, str) or isinstance(data, Number):
        data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return types.DomainEvent(
        event_type=event_type,
        subject=subject,
        partition_key=subject if partition_key is None else partition_key,
        data=data,
    )


EVENT_FIELDS = ("event_type", "subject", "partition_key", "data")


def check_events(events):
    """`events` as the contract carries them, or `OutputError` naming the field at fault."""
    if not isinstance(events, list):
        raise OutputError(f"translate returned a {type(events).__name__}: it must return a list of events")
    for n, one in enumerate(events):
        for name in EVENT_FIELDS:
            if not hasattr(one, name):
                raise OutputError(f"events[{n}] is a {type(one).__name__} without `{name}`: build it with dragoman_guest.event(...)")
            value = getattr(one, name)
            if not isinstance(value, str):
                hint = " (json.dumps it, or build the event with dragoman_guest.event, which does)" if name == "data" else ""
                raise OutputError(f"events[{n}].{name} is a {type(value).__name__}: it must be a str{hint}")
    return events


# ===== Refusals and faults =====


def failure(error):
    """A `Rejected` or `Transient` as the WIT error to raise."""
    from componentize_py_types import Err
    from wit_world.imports import types

    detail = types.Failure(code=error.code, message=error.message)
    if isinstance(error, Transient):
        return Err(types.TranslateError_Transient(detail))
    return Err(types.TranslateError_Rejected(detail))


def where(error):
    """`file, line N, in function` of the deepest frame of the plugin's own code that `error`
    passed through (not this module's, not the standard library's), or None."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if not f.filename.endswith("dragoman_guest.py") and "/lib/python" not in f.filename]
    frame = (own or frames or [None])[-1]
    if frame is None:
        return None
    return f"{frame.filename.rsplit('/', 1)[-1]}, line {frame.lineno}, in {frame.name}"


def fault(error):
    """A bug, not a refusal: write `plugin fault: Type: message (file, line N, in f)` to
    stderr, where the host reads it into the fault, and end the call."""
    place = where(error)
    suffix = f" ({place})" if place else ""
    sys.stderr.write(f"plugin fault: {type(error).__name__}: {error}{suffix}\n")
    raise SystemExit(1)


def translator(method):
    """Wraps `translate(self, message)` (or `decode(self, command, response)`): refusals become
    the WIT error, events are checked, anything else is a fault that keeps its file and
    line."""
    from componentize_py_types import Err

    @functools.wraps(method)
    def wrapper(*args):
        try:
            return check_events(method(*args))
        except (Rejected, Transient) as e:
            raise failure(e)
        except Err:
            raise
        except Exception as e:  # noqa: BLE001 - any bug is a fault, reported with its place
            fault(e)

    return wrapper


def key(method):
    """Wraps `idempotency_key(self, message)`: a refusal means no key (the translation says
    why), anything else is a fault that keeps its file and line."""

    @functools.wraps(method)
    def wrapper(*args):
        try:
            found = method(*args)
        except (Rejected, Transient):
            return None
        except Exception as e:  # noqa: BLE001 - any bug is a fault, reported with its place
            fault(e)
        if found is not None and not isinstance(found, str):
            fault(OutputError(f"idempotency_key returned a {type(found).__name__}: it must return a str or None"))
        return found

    return wrapper
