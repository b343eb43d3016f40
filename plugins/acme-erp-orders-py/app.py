"""ACME ERP orders, vendor API v1, into the domain `Order`: the same contract, fixtures and
output as the Rust `acme-erp-orders`, in Python.

The body is decoded by its bytes, whatever its declared content type: JSON (numbers kept as
their exact text), XML or form data, behind a UTF-8 or UTF-16 byte order mark. Prices become
integer minor units of the currency set by the route's plugin config key `currency` (EUR when
unset), rounded half to even with integer arithmetic on the exact digits, never floats.
"""

import json
import re
import sys
import traceback
from urllib.parse import parse_qsl

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, types

PLUGIN = types.PluginInfo(name="acme-erp-orders", version="1.0.0", vendor_api_version="acme-erp/v1")
ORDER_CREATED = "order.created.v1"
DEFAULT_CURRENCY = "EUR"


class Rejected(Exception):
    """The input is wrong and will stay wrong: a `rejected` translate error."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Number(str):
    """A JSON number, kept as the text it was written with."""


# ===== Decoding the body =====


def body_text(body):
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    elif body.startswith(b"\xff\xfe") or body.startswith(b"\xfe\xff"):
        encoding = "utf-16-le" if body.startswith(b"\xff\xfe") else "utf-16-be"
        try:
            return body[2:].decode(encoding)
        except UnicodeDecodeError as e:
            raise Rejected("invalid-encoding", f"the UTF-16 body is malformed: {e}")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected("invalid-encoding", f"the body is not valid UTF-8 (first bad byte at offset {e.start})")


FORM_BYTES = re.compile(r"^[A-Za-z0-9%+\-._~*\[\]=!$'(),;:@/?&]*$")


def looks_like_form(text):
    text = text.rstrip()
    if "=" not in text or not FORM_BYTES.match(text):
        return False
    return all(pair.split("=")[0] for pair in text.split("&"))


def decode(body, declared):
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
    text = value.strip() if isinstance(value, str) else None
    match = DECIMAL.match(text) if text is not None else None
    if match is None or not (match.group(2) or match.group(3)):
        raise Rejected("invalid-value", f"{path}: invalid value: `{value}` is not a decimal number")
    sign, whole, fraction, exponent = match.groups()
    fraction = fraction or ""
    mantissa = int(whole + fraction or "0")
    return (sign == "-" and mantissa != 0, mantissa, len(fraction) - int(exponent or 0))


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


def parse_line(line, n):
    """One vendor line as (sku, qty, price), read by the checked helpers, which name the field
    at fault."""
    where = f"line_items[{n}]"
    return (
        text_value(field(line, "sku", where), f"{where}.sku"),
        integer_value(field(line, "qty", where), f"{where}.qty"),
        decimal_value(field(line, "unit_prc", where), f"{where}.unit_prc"),
    )


# ===== Money =====

ZERO_DECIMALS = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
THREE_DECIMALS = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
FOUR_DECIMALS = {"CLF", "UYW"}


def minor_unit_exponent(currency):
    if len(currency) != 3 or not all("A" <= c <= "Z" for c in currency):
        raise Rejected("invalid-currency", f"`{currency}` is not an ISO 4217 currency code")
    if currency in ZERO_DECIMALS:
        return 0
    if currency in THREE_DECIMALS:
        return 3
    if currency in FOUR_DECIMALS:
        return 4
    return 2


def minor_units(mantissa, scale, exponent):
    """mantissa * 10**-scale in units of 10**-exponent, rounded half to even, with integers only."""
    shift = exponent - scale
    if shift >= 0:
        return mantissa * 10**shift
    divisor = 10**-shift
    quotient, remainder = divmod(mantissa, divisor)
    twice = remainder * 2
    return quotient + (1 if twice > divisor or (twice == divisor and quotient % 2 == 1) else 0)


def money(amount, currency, exponent):
    """Integer minor units, rounded half to even, with integers only."""
    negative, mantissa, scale = amount
    magnitude = minor_units(mantissa, scale, exponent)
    if magnitude >= 2**63:
        raise Rejected("amount-out-of-range", f"amount is too large for {currency}")
    return {"amount_minor": -magnitude if negative else magnitude, "currency": currency}


# ===== The translation =====

STATUSES = {"O": "open", "C": "closed", "X": "cancelled"}


def to_order(document, currency):
    order_id = text_value(field(document, "ord_id", ""), "ord_id")
    status = string_value(field(document, "ord_status", ""), "ord_status")
    lines = list_value(field(document, "line_items", ""), "line_items")
    parsed = [parse_line(line, n) for n, line in enumerate(lines)]
    order_id = order_id.strip()
    if not order_id:
        raise Rejected("missing-field", "missing field `ord_id`")
    code = status.strip()
    if code not in STATUSES:
        raise Rejected("unknown-status", f"ord_status `{code}` is not one of O, C, X")
    if not parsed:
        raise Rejected("no-line-items", f"order {order_id} has no line items")
    items = []
    exponent = None
    for n, (sku, qty, price) in enumerate(parsed):
        if qty <= 0:
            raise Rejected("invalid-quantity", f"line_items[{n}].qty is {qty}; it must be at least 1")
        if price[0]:
            raise Rejected("invalid-price", f"line_items[{n}].unit_prc is negative")
        sku = sku.strip()
        if not sku:
            raise Rejected("missing-field", f"missing field `line_items[{n}].sku`")
        if exponent is None:
            # The currency is checked once, where the first price needs it.
            exponent = minor_unit_exponent(currency)
        items.append({"product_sku": sku, "quantity": qty, "unit_price": money(price, currency, exponent)})
    return {"id": order_id, "status": STATUSES[code], "items": items}


# ===== The short way =====
#
# The usual order (string id and status, a list of lines with a string sku, a whole quantity
# and a plain decimal price, every value valid) is translated in one pass that writes the JSON
# as it goes; anything else, including every input that is refused, goes through `to_order`,
# which decides. The short way gives exactly what `to_order` and `json.dumps` would, or None.

encode_string = json.encoder.encode_basestring_ascii


def usual_order(document, currency):
    """(order id, the event's JSON) for the usual order, or None."""
    if type(document) is not dict:
        return None
    order_id, status, lines = document.get("ord_id"), document.get("ord_status"), document.get("line_items")
    if type(order_id) is not str or type(status) is not str or type(lines) is not list or not lines:
        return None
    order_id, code = order_id.strip(), status.strip()
    if not order_id or code not in STATUSES:
        return None
    try:
        exponent = minor_unit_exponent(currency)
    except Rejected:
        return None
    unit = ',"currency":' + encode_string(currency) + "}},"
    parts = ['{"id":', encode_string(order_id), ',"status":"', STATUSES[code], '","items":[']
    for line in lines:
        if type(line) is not dict:
            return None
        sku, qty, price = line.get("sku"), line.get("qty"), line.get("unit_prc")
        if type(sku) is not str or type(qty) is not int or qty <= 0:
            return None
        sku = sku.strip()
        if not sku:
            return None
        if type(price) is int and price >= 0:
            mantissa, scale = price, 0
        elif isinstance(price, str):
            whole, dot, fraction = price.strip().partition(".")
            if not (whole.isdigit() and whole.isascii() and (not dot or (fraction.isdigit() and fraction.isascii()))):
                return None
            mantissa, scale = int(whole + fraction), len(fraction)
        else:
            return None
        magnitude = minor_units(mantissa, scale, exponent)
        if magnitude >= 2**63:
            return None
        parts += ('{"product_sku":', encode_string(sku), ',"quantity":', str(qty), ',"unit_price":{"amount_minor":', str(magnitude), unit)
    parts[-1] = unit[:-1] + "]}"
    return order_id, "".join(parts)


def refusal(error):
    return Err(types.TranslateError_Rejected(types.Failure(code=error.code, message=error.message)))


def fault(error):
    """A bug, not a refusal: say what it was on stderr, where the host reads it, and trap."""
    sys.stderr.write(f"plugin fault: {type(error).__name__}: {error}\n")
    traceback.print_exc(file=sys.stderr)
    raise SystemExit(1)


class Metadata(exports.Metadata):
    def info(self):
        return PLUGIN


class Inbound(exports.Inbound):
    def idempotency_key(self, message):
        try:
            order_id = text_value(field(decode(message.body, message.content_type), "ord_id", ""), "ord_id").strip()
        except Rejected:
            return None
        except Exception as e:  # noqa: BLE001 - any bug is a fault, reported with its message
            fault(e)
        return f"order-created-{order_id}" if order_id else None

    def translate(self, message):
        try:
            currency = config.get("currency") or DEFAULT_CURRENCY
            document = decode(message.body, message.content_type)
            usual = usual_order(document, currency)
            if usual is None:
                order = to_order(document, currency)
                usual = (order["id"], json.dumps(order, separators=(",", ":")))
        except Rejected as e:
            raise refusal(e)
        except Exception as e:  # noqa: BLE001 - any bug is a fault, reported with its message
            fault(e)
        order_id, data = usual
        return [types.DomainEvent(event_type=ORDER_CREATED, subject=order_id, partition_key=order_id, data=data)]
