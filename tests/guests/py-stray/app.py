"""A Python translator with a bug: a body of `boom` raises an exception that is neither
`rejected` nor `transient`. Wrapped by the SDK's `translator`, as the scaffold is, the host
reports it as a fault with its message, file and line, and serves the next message. A body of
`dict` returns an event whose data is a dict, not JSON text: the wrapper names the field."""

import json

from dragoman_guest import translator
from wit_world import exports
from wit_world.imports import types


class Metadata(exports.Metadata):
    def info(self):
        return types.PluginInfo(name="py-stray", version="0.0.1", vendor_api_version="test")


def check(body):
    if body == b"boom":
        raise ValueError("stray bug on a boom")  # line 20: the fault names it


class Inbound(exports.Inbound):
    def idempotency_key(self, message):
        return None

    @translator
    def translate(self, message):
        check(message.body)
        data = json.dumps({"bytes": len(message.body)})
        if message.body == b"dict":
            data = {"bytes": 4}
        return [types.DomainEvent(event_type="py.seen.v1", subject="s", partition_key="s", data=data)]
