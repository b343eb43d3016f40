"""A Python translator with a bug: a body of `boom` raises an exception that is neither
`rejected` nor `transient`. The host must report it as a fault with its message and serve the
next message."""

import json

from componentize_py_types import Err  # noqa: F401 - the refusal type, unused on purpose
from wit_world import exports
from wit_world.imports import types


class Metadata(exports.Metadata):
    def info(self):
        return types.PluginInfo(name="py-stray", version="0.0.1", vendor_api_version="test")


class Inbound(exports.Inbound):
    def idempotency_key(self, message):
        return None

    def translate(self, message):
        if message.body == b"boom":
            raise ValueError("stray bug on a boom")
        data = json.dumps({"bytes": len(message.body)})
        return [types.DomainEvent(event_type="py.seen.v1", subject="s", partition_key="s", data=data)]
