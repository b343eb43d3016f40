// {{name}}: a Dragoman translator. Replace the vendor and domain shapes with yours.
//
// `dragoman.js` beside this file is the SDK: body decoding, checked field readers, money and
// the wrappers that turn refusals into the contract's errors and keep a bug's file and line.

import { EXACT, decimalValue, decode, event, field, key, money, stringValue, textValue, translator } from './dragoman.js';

/** The vendor's message (JSON, XML or form data, decoded alike) as our domain's payload. */
function received(doc) {
  const id = textValue(field(doc, 'id', ''), 'id');
  const kind = doc.kind === undefined || doc.kind === null ? '' : stringValue(doc.kind, 'kind');
  let amount = null;
  if (doc.amount !== undefined && doc.amount !== null) {
    const currency = stringValue(field(doc, 'currency', ''), 'currency');
    // An amount with more digits than the currency has is refused, not rounded.
    amount = money(decimalValue(doc.amount, 'amount'), currency, EXACT);
  }
  return { id, kind, amount };
}

export const metadata = {
  info() {
    return { name: '{{name}}', version: '0.1.0', vendorApiVersion: 'vendor/v1' };
  },
};

export const inbound = {
  idempotencyKey: key((message) => `example-${textValue(field(decode(message), 'id', ''), 'id')}`),
  translate: translator((message) => {
    const payload = received(decode(message));
    return [event('example.received.v1', payload.id, payload)];
  }),
};
