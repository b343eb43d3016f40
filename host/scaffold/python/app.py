"""{{name}}: a Dragoman translator. Replace the vendor and domain shapes with yours."""

import json
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types


class Rejected(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def parse(message):
    try:
        document = json.loads(message.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Rejected("malformed-json", f"the body is not valid JSON: {e}")
    if not isinstance(document, dict) or "id" not in document:
        raise Rejected("missing-field", "missing field `id`")
    return document


class Metadata(exports.Metadata):
    def info(self):
        return types.PluginInfo(name="{{name}}", version="0.1.0", vendor_api_version="vendor/v1")


class Inbound(exports.Inbound):
    def idempotency_key(self, message):
        try:
            return f"example-{parse(message)['id']}"
        except Rejected:
            return None

    def translate(self, message):
        try:
            document = parse(message)
            received = {"id": str(document["id"]), "kind": str(document.get("kind") or "")}
        except Rejected as e:
            raise Err(types.TranslateError_Rejected(types.Failure(code=e.code, message=e.message)))
        except Exception as e:
            # A bug, not a refusal: say what it was where the host reads it, and end the call.
            sys.stderr.write(f"plugin fault: {type(e).__name__}: {e}\n")
            raise SystemExit(1)
        data = json.dumps(received)
        return [types.DomainEvent(event_type="example.received.v1", subject=received["id"], partition_key=received["id"], data=data)]
