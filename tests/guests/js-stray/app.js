// A JavaScript translator with a bug: a body of `boom` throws an error that is neither
// `rejected` nor `transient`. Wrapped by the SDK's `translator`, as the scaffold is, the host
// reports it as a fault with its message, file and line, and serves the next message. A body
// of `object` returns an event whose data is an object, not JSON text: the wrapper names the
// field.

import { translator } from './dragoman.js';

export const metadata = {
  info() {
    return { name: 'js-stray', version: '0.0.1', vendorApiVersion: 'test' };
  },
};

function check(body) {
  if (body.length === 4 && String.fromCharCode(...body) === 'boom') {
    throw new TypeError('stray bug on a boom'); // line 17: the fault names it
  }
}

export const inbound = {
  idempotencyKey() {
    return undefined;
  },
  translate: translator((message) => {
    check(message.body);
    const object = message.body.length === 6 && String.fromCharCode(...message.body) === 'object';
    const data = object ? { bytes: 6 } : JSON.stringify({ bytes: message.body.length });
    return [{ eventType: 'js.seen.v1', subject: 's', partitionKey: 's', data }];
  }),
};
