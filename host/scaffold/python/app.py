"""{{name}}: a Dragoman translator. Replace the vendor and domain shapes with yours.

`dragoman_guest.py` beside this file is the SDK: body decoding, checked field readers, money
and the wrappers that turn refusals into the contract's errors and keep a bug's file and line.
"""

from dragoman_guest import EXACT, decimal_value, decode, event, field, key, money, string_value, text_value, translator
from wit_world import exports
from wit_world.imports import types


def received(document):
    """The vendor's message (JSON, XML or form data, decoded alike) as our domain's payload."""
    payment_id = text_value(field(document, "id", ""), "id")
    kind = document.get("kind")
    amount = document.get("amount")
    if amount is not None:
        currency = string_value(field(document, "currency", ""), "currency")
        # An amount with more digits than the currency has is refused, not rounded.
        amount = money(decimal_value(amount, "amount"), currency, EXACT)
    return {"id": payment_id, "kind": "" if kind is None else string_value(kind, "kind"), "amount": amount}


class Metadata(exports.Metadata):
    def info(self):
        return types.PluginInfo(name="{{name}}", version="0.1.0", vendor_api_version="vendor/v1")


class Inbound(exports.Inbound):
    @key
    def idempotency_key(self, message):
        return f"example-{text_value(field(decode(message), 'id', ''), 'id')}"

    @translator
    def translate(self, message):
        payload = received(decode(message))
        return [event("example.received.v1", payload["id"], payload)]
