"""SwiftShip, a parcel carrier, into our domain: a tracking update whose status says the parcel
was picked up becomes `order.shipped.v1`.

The carrier's quirks, kept here:
- It declares `Content-Type: application/json` and sends XML; the SDK decodes by the bytes.
- One update may carry several `<Shipment>` elements (a batch), each with the order's
  reference as an attribute.
- Status codes: `PU` (picked up) is the shipment of the order; `LC` (label created), `IT` (in
  transit), `OD` (out for delivery), `DL` (delivered) and `EX` (exception) give no domain
  event (the domain model has none for them yet); any other code is rejected
  (`unknown-status`), since a new code may mean something the domain must hear.
- `EventTime` is local time with an offset; it is kept as given (RFC 3339) as the event's
  `occurred_at`.
"""

import re

from dragoman_guest import Rejected, decode, event, field, key, text_value, translator
from wit_world import exports
from wit_world.imports import types

PLUGIN = types.PluginInfo(name="swiftship-tracking", version="1.0.0", vendor_api_version="swiftship-tracking/2")
SHIPPED = "order.shipped.v1"
QUIET = {"LC", "IT", "OD", "DL", "EX"}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def shipments(document):
    """The `<Shipment>` elements of an update, one or many."""
    found = field(document, "Shipment", "")
    return found if isinstance(found, list) else [found]


def read(shipment, n):
    """(order id, tracking number, status code, event time) of one shipment."""
    where = f"Shipment[{n}]"
    order_id = text_value(field(shipment, "@reference", where), f"{where}.reference").strip()
    tracking = text_value(field(shipment, "TrackingNumber", where), f"{where}.TrackingNumber").strip()
    status = field(shipment, "Status", where)
    code = text_value(field(status, "@code", f"{where}.Status"), f"{where}.Status.code").strip()
    when = text_value(field(shipment, "EventTime", where), f"{where}.EventTime").strip()
    if not order_id:
        raise Rejected("missing-field", f"missing field `{where}.reference`")
    if not tracking:
        raise Rejected("missing-field", f"missing field `{where}.TrackingNumber`")
    if not RFC3339.match(when):
        raise Rejected("invalid-value", f"{where}.EventTime `{when}` is not an RFC 3339 instant")
    return order_id, tracking, code, when


class Metadata(exports.Metadata):
    def info(self):
        return PLUGIN


class Inbound(exports.Inbound):
    @key
    def idempotency_key(self, message):
        found = shipments(decode(message))
        if len(found) != 1:
            return None  # a batch: the host keys it by the hash of its body
        _, tracking, code, when = read(found[0], 0)
        return f"swiftship-{tracking}-{code}-{when}"

    @translator
    def translate(self, message):
        events = []
        for n, shipment in enumerate(shipments(decode(message))):
            order_id, tracking, code, when = read(shipment, n)
            if code == "PU":
                data = {"order_id": order_id, "carrier": "swiftship", "tracking_number": tracking, "occurred_at": when}
                events.append(event(SHIPPED, order_id, data))
            elif code not in QUIET:
                raise Rejected("unknown-status", f"Shipment[{n}].Status code `{code}` is not one of PU, {', '.join(sorted(QUIET))}")
        return events
