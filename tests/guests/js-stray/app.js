// A JavaScript translator with a bug: a body of `boom` throws an error that is neither
// `rejected` nor `transient`. Wrapped as docs/plugins/javascript.md shows, the host reports it
// as a fault with its message and serves the next message.

function fault(error) {
  console.error(`plugin fault: ${error}\n${(error && error.stack) || ""}`);
  throw error;
}

export const metadata = {
  info() {
    return { name: 'js-stray', version: '0.0.1', vendorApiVersion: 'test' };
  },
};

export const inbound = {
  idempotencyKey() {
    return undefined;
  },
  translate(message) {
    try {
      if (message.body.length === 4 && String.fromCharCode(...message.body) === 'boom') {
        throw new TypeError('stray bug on a boom');
      }
      return [{ eventType: 'js.seen.v1', subject: 's', partitionKey: 's', data: JSON.stringify({ bytes: message.body.length }) }];
    } catch (e) {
      return fault(e);
    }
  },
};
