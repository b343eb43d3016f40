"""ACME ERP orders, vendor API v1, into the domain `Order`: the same contract, fixtures and
output as the Rust `acme-erp-orders`, in Python.

The body is decoded by its bytes, whatever its declared content type: JSON (numbers kept as
their exact text), XML or form data, behind a UTF-8 or UTF-16 byte order mark. Prices become
integer minor units of the currency set by the route's plugin config key `currency` (EUR when
unset), rounded half to even with integer arithmetic on the exact digits, never floats.
"""

import json

from dragoman_guest import (
    Rejected,
    decimal_value,
    decode,
    field,
    integer_value,
    key,
    list_value,
    minor_unit_exponent,
    minor_units,
    money,
    string_value,
    text_value,
    translator,
)
from wit_world import exports
from wit_world.imports import config, types

PLUGIN = types.PluginInfo(name="acme-erp-orders", version="1.0.0", vendor_api_version="acme-erp/v1")
ORDER_CREATED = "order.created.v1"
DEFAULT_CURRENCY = "EUR"


def parse_line(line, n):
    """One vendor line as (sku, qty, price), read by the checked helpers, which name the field
    at fault."""
    where = f"line_items[{n}]"
    return (
        text_value(field(line, "sku", where), f"{where}.sku"),
        integer_value(field(line, "qty", where), f"{where}.qty"),
        decimal_value(field(line, "unit_prc", where), f"{where}.unit_prc"),
    )


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
    for n, (sku, qty, price) in enumerate(parsed):
        if qty <= 0:
            raise Rejected("invalid-quantity", f"line_items[{n}].qty is {qty}; it must be at least 1")
        if price[0]:
            raise Rejected("invalid-price", f"line_items[{n}].unit_prc is negative")
        sku = sku.strip()
        if not sku:
            raise Rejected("missing-field", f"missing field `line_items[{n}].sku`")
        items.append({"product_sku": sku, "quantity": qty, "unit_price": money(price, currency)})
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


class Metadata(exports.Metadata):
    def info(self):
        return PLUGIN


class Inbound(exports.Inbound):
    @key
    def idempotency_key(self, message):
        order_id = text_value(field(decode(message), "ord_id", ""), "ord_id").strip()
        return f"order-created-{order_id}" if order_id else None

    @translator
    def translate(self, message):
        currency = config.get("currency") or DEFAULT_CURRENCY
        document = decode(message)
        usual = usual_order(document, currency)
        if usual is None:
            order = to_order(document, currency)
            usual = (order["id"], json.dumps(order, separators=(",", ":")))
        order_id, data = usual
        return [types.DomainEvent(event_type=ORDER_CREATED, subject=order_id, partition_key=order_id, data=data)]
