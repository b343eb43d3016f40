// {{name}}: a Dragoman translator. Replace the vendor and domain shapes with yours.

class Rejected extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function parse(message) {
  let document;
  try {
    document = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(message.body));
  } catch (e) {
    throw new Rejected('malformed-json', `the body is not valid JSON: ${e}`);
  }
  if (!document || typeof document !== 'object' || !('id' in document)) {
    throw new Rejected('missing-field', 'missing field `id`');
  }
  return document;
}

// A bug, not a refusal: say what it was where the host reads it, and end the call.
function fault(error) {
  console.error(`plugin fault: ${error}\n${(error && error.stack) || ''}`);
  throw error;
}

export const metadata = {
  info() {
    return { name: '{{name}}', version: '0.1.0', vendorApiVersion: 'vendor/v1' };
  },
};

export const inbound = {
  idempotencyKey(message) {
    try {
      return `example-${parse(message).id}`;
    } catch (e) {
      if (e instanceof Rejected) return undefined;
      return fault(e);
    }
  },
  translate(message) {
    let received;
    try {
      const document = parse(message);
      received = { id: String(document.id), kind: String(document.kind || '') };
    } catch (e) {
      if (e instanceof Rejected) throw { tag: 'rejected', val: { code: e.code, message: e.message } };
      return fault(e);
    }
    return [{ eventType: 'example.received.v1', subject: received.id, partitionKey: received.id, data: JSON.stringify(received) }];
  },
};
