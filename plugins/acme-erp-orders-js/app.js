// ACME ERP orders, vendor API v1, into the domain `Order`: the same contract, fixtures and
// output as the Rust `acme-erp-orders`, in JavaScript.
//
// The body is decoded by its bytes, whatever its declared content type: JSON (numbers kept
// as their exact text), XML or form data, behind a UTF-8 or UTF-16 byte order mark. Prices
// become integer minor units (BigInt) of the currency set by the route's plugin config key
// `currency` (EUR when unset), rounded half to even: no floating point number on the way.

import { get as configGet } from 'dragoman:translator/config@0.1.0';
import {
  Num,
  Rejected,
  decimalValue,
  decode,
  field,
  integerValue,
  key,
  listValue,
  minorUnitExponent,
  money,
  numberMinor,
  stringValue,
  textValue,
  toJson,
  translator,
} from './dragoman.js';

const PLUGIN = { name: 'acme-erp-orders', version: '1.0.0', vendorApiVersion: 'acme-erp/v1' };
const ORDER_CREATED = 'order.created.v1';
const DEFAULT_CURRENCY = 'EUR';

// ===== The translation =====

const STATUSES = { O: 'open', C: 'closed', X: 'cancelled' };

/** One vendor line as { sku, qty, price }, read by the checked helpers, which name the field
 * at fault. */
function parseLine(line, n) {
  const where = 'line_items[' + n + ']';
  return {
    sku: textValue(field(line, 'sku', where), where + '.sku'),
    qty: integerValue(field(line, 'qty', where), where + '.qty'),
    price: decimalValue(field(line, 'unit_prc', where), where + '.unit_prc'),
  };
}

// ===== The short way =====
//
// The engine interprets this code, so a call's cost is mostly the operations it runs. The
// usual order (string id and status, a list of lines with a string sku, a whole quantity and a
// plain decimal price, every value valid) is translated with native string and number
// operations; anything else, including every input that is refused, goes through `toOrder`,
// which decides. The short way returns exactly what `toOrder` would, or null.

/** The minor units of a plain price (ASCII digits with at most one dot, at most 15 digits)
 * rounded half to even, or null when the text is anything else or the result would not be
 * exact in a Number. */
function plainMinor(text, exponent) {
  const dot = text.indexOf('.');
  const digits = dot < 0 ? text : text.slice(0, dot) + text.slice(dot + 1);
  const shift = dot < 0 ? exponent : exponent - (text.length - dot - 1);
  if (digits.length > 15 || digits.length + shift > 15) return null;
  const mantissa = Number(digits);
  // A whole, non-negative Number below 10^15 prints as digits only; padded back with zeros it
  // equals `digits` exactly when `digits` is nothing but ASCII digits.
  if (!(mantissa >= 0) || !Number.isInteger(mantissa) || String(mantissa).padStart(digits.length, '0') !== digits) return null;
  return numberMinor(mantissa, shift);
}

function plainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Num);
}

/** The usual order, translated the short way, or null. */
function usualOrder(doc, currency) {
  if (!plainObject(doc)) return null;
  const rawId = doc.ord_id;
  const rawStatus = doc.ord_status;
  const raw = doc.line_items;
  if (typeof rawId !== 'string' || typeof rawStatus !== 'string' || !Array.isArray(raw) || raw.length === 0) return null;
  const id = rawId.trim();
  const code = rawStatus.trim();
  const status = Object.prototype.hasOwnProperty.call(STATUSES, code) ? STATUSES[code] : null;
  if (!id || status === null) return null;
  let exponent;
  try {
    exponent = minorUnitExponent(currency);
  } catch {
    return null;
  }
  const items = new Array(raw.length);
  for (let n = 0; n < raw.length; n += 1) {
    const line = raw[n];
    if (!plainObject(line)) return null;
    const sku = line.sku;
    const qty = line.qty;
    const price = line.unit_prc;
    if (typeof sku !== 'string' || !(qty instanceof Num) || qty.text.length > 15) return null;
    const quantity = Number(qty.text);
    if (!Number.isInteger(quantity) || quantity < 1 || String(quantity) !== qty.text) return null;
    const productSku = sku.trim();
    if (!productSku) return null;
    const minor = price instanceof Num ? plainMinor(price.text, exponent) : typeof price === 'string' ? plainMinor(price.trim(), exponent) : null;
    if (minor === null) return null;
    items[n] = { product_sku: productSku, quantity, unit_price: { amount_minor: minor, currency } };
  }
  return { id, status, items };
}

function toOrder(doc, currency) {
  const rawId = textValue(field(doc, 'ord_id', ''), 'ord_id');
  const rawStatus = stringValue(field(doc, 'ord_status', ''), 'ord_status');
  const raw = listValue(field(doc, 'line_items', ''), 'line_items');
  const lines = new Array(raw.length);
  for (let n = 0; n < raw.length; n += 1) lines[n] = parseLine(raw[n], n);
  const id = rawId.trim();
  if (!id) throw new Rejected('missing-field', 'missing field `ord_id`');
  const code = rawStatus.trim();
  if (!Object.prototype.hasOwnProperty.call(STATUSES, code)) throw new Rejected('unknown-status', `ord_status \`${code}\` is not one of O, C, X`);
  if (!lines.length) throw new Rejected('no-line-items', `order ${id} has no line items`);
  const items = new Array(lines.length);
  for (let n = 0; n < lines.length; n += 1) {
    const line = lines[n];
    if (line.qty <= 0) throw new Rejected('invalid-quantity', `line_items[${n}].qty is ${line.qty}; it must be at least 1`);
    if (line.price.negative) throw new Rejected('invalid-price', `line_items[${n}].unit_prc is negative`);
    const sku = line.sku.trim();
    if (!sku) throw new Rejected('missing-field', `missing field \`line_items[${n}].sku\``);
    items[n] = { product_sku: sku, quantity: line.qty, unit_price: money(line.price, currency) };
  }
  return { id, status: STATUSES[code], items };
}

export const metadata = {
  info() {
    return PLUGIN;
  },
};

export const inbound = {
  idempotencyKey: key((message) => {
    const id = textValue(field(decode(message), 'ord_id', ''), 'ord_id').trim();
    return id ? `order-created-${id}` : undefined;
  }),
  translate: translator((message) => {
    const doc = decode(message);
    const currency = configGet('currency') || DEFAULT_CURRENCY;
    const usual = usualOrder(doc, currency);
    const order = usual || toOrder(doc, currency);
    const data = usual ? JSON.stringify(order) : toJson(order);
    return [{ eventType: ORDER_CREATED, subject: order.id, partitionKey: order.id, data }];
  }),
};
