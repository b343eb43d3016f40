// ACME ERP orders, vendor API v1, into the domain `Order`: the same contract, fixtures and
// output as the Rust `acme-erp-orders`, in JavaScript.
//
// The body is decoded by its bytes, whatever its declared content type: JSON (numbers kept
// as their exact text), XML or form data, behind a UTF-8 or UTF-16 byte order mark. Prices
// become integer minor units (BigInt) of the currency set by the route's plugin config key
// `currency` (EUR when unset), rounded half to even: no floating point number on the way.

import { get as configGet } from 'dragoman:translator/config@0.1.0';

const PLUGIN = { name: 'acme-erp-orders', version: '1.0.0', vendorApiVersion: 'acme-erp/v1' };
const ORDER_CREATED = 'order.created.v1';
const DEFAULT_CURRENCY = 'EUR';

/** The input is wrong and will stay wrong: a `rejected` translate error. */
class Rejected extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** A JSON number, kept as the text it was written with. */
class Num {
  constructor(text) {
    this.text = text;
  }
}

// ===== Text =====

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function utf8(bytes, offset) {
  try {
    return STRICT_UTF8.decode(bytes.subarray(offset));
  } catch {
    throw new Rejected('invalid-encoding', `the body is not valid UTF-8 (first bad byte at offset ${firstBadByte(bytes, offset)})`);
  }
}

/** Where strict UTF-8 decoding fails, as the Rust SDK reports it (only on the error path). */
function firstBadByte(bytes, offset) {
  let i = offset;
  while (i < bytes.length) {
    const b = bytes[i];
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (need < 0) return i - offset;
    for (let k = 1; k <= need; k += 1) {
      if (i + k >= bytes.length || (bytes[i + k] & 0xc0) !== 0x80) return i - offset;
    }
    try {
      STRICT_UTF8.decode(bytes.subarray(i, i + need + 1));
    } catch {
      return i - offset;
    }
    i += need + 1;
  }
  return i - offset;
}

function utf16(bytes, bigEndian) {
  if ((bytes.length - 2) % 2 !== 0) throw new Rejected('invalid-encoding', 'the UTF-16 body has an odd number of bytes');
  const units = [];
  for (let i = 2; i < bytes.length; i += 2) {
    units.push(bigEndian ? (bytes[i] << 8) | bytes[i + 1] : bytes[i] | (bytes[i + 1] << 8));
  }
  let out = '';
  for (let i = 0; i < units.length; i += 1) {
    const u = units[i];
    if (u >= 0xd800 && u <= 0xdbff) {
      const low = units[i + 1];
      if (low === undefined || low < 0xdc00 || low > 0xdfff) throw new Rejected('invalid-encoding', 'the UTF-16 body is malformed');
      out += String.fromCharCode(u, low);
      i += 1;
    } else if (u >= 0xdc00 && u <= 0xdfff) {
      throw new Rejected('invalid-encoding', 'the UTF-16 body is malformed');
    } else {
      out += String.fromCharCode(u);
    }
  }
  return out;
}

function bodyText(bytes) {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return utf8(bytes, 3);
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return utf16(bytes, false);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return utf16(bytes, true);
  return utf8(bytes, 0);
}

// ===== JSON, with exact numbers =====

// The engine's JSON.parse, with the source text of every number (JSON.parse source text
// access): numbers keep their exact text and never pass through a float.
function parseJson(text) {
  try {
    return JSON.parse(text, (_, value, context) => (typeof value === 'number' ? new Num(context.source) : value));
  } catch (e) {
    throw new Rejected('malformed-json', `the body is not valid JSON: ${e.message}`);
  }
}

function isJson(text) {
  try {
    parseJson(text);
    return true;
  } catch {
    return false;
  }
}

// ===== XML =====

const XML_TOKEN = /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<!\[CDATA\[([\s\S]*?)\]\]>|<!DOCTYPE[^>]*>|<(\/)?([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/)?>|([^<]+)/y;
const XML_ATTR = /([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g;
const XML_NAMED = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function unescapeXml(text) {
  if (/&(?!(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);)/.test(text)) {
    throw new Rejected('malformed-xml', 'the body is not valid XML: a bare `&` or an unknown entity');
  }
  return text.replace(/&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);/g, (_, name) => {
    if (name.startsWith('#x')) return String.fromCodePoint(parseInt(name.slice(2), 16));
    if (name.startsWith('#')) return String.fromCodePoint(parseInt(name.slice(1), 10));
    return XML_NAMED[name];
  });
}

const local = (name) => name.split(':').pop();

function parseXml(text) {
  const bad = (what) => new Rejected('malformed-xml', `the body is not valid XML: ${what}`);
  const stack = [];
  let root = null;
  let at = 0;
  while (at < text.length) {
    XML_TOKEN.lastIndex = at;
    const m = XML_TOKEN.exec(text);
    if (!m) throw bad(`unexpected input at offset ${at}`);
    at = XML_TOKEN.lastIndex;
    const [, cdata, close, name, attrs, empty, chars] = m;
    if (name) {
      const tag = local(name);
      if (close) {
        if (!stack.length || stack[stack.length - 1].tag !== tag) throw bad(`unexpected end tag \`${tag}\``);
        stack.pop();
        continue;
      }
      const attrib = {};
      for (const a of (attrs || '').matchAll(XML_ATTR)) {
        if (a[1] === 'xmlns' || a[1].startsWith('xmlns:')) continue;
        attrib[local(a[1])] = unescapeXml(a[2] ?? a[3]);
      }
      const node = { tag, attrib, children: [], texts: [] };
      if (stack.length) stack[stack.length - 1].children.push(node);
      else if (root === null) root = node;
      else throw bad('more than one root element');
      if (!empty) stack.push(node);
    } else if (chars !== undefined) {
      if (stack.length) stack[stack.length - 1].texts.push(unescapeXml(chars));
      else if (chars.trim()) throw bad('text outside the root element');
    } else if (cdata !== undefined && stack.length) {
      stack[stack.length - 1].texts.push(cdata);
    }
  }
  if (root === null || stack.length) throw bad('an element is not closed');
  return element(root);
}

function insert(obj, key, value) {
  if (!(key in obj)) obj[key] = value;
  else if (Array.isArray(obj[key])) obj[key].push(value);
  else obj[key] = [obj[key], value];
}

function element(node) {
  const out = {};
  for (const [k, v] of Object.entries(node.attrib)) out[`@${k}`] = v;
  for (const child of node.children) insert(out, child.tag, element(child));
  const text = node.texts.join('').trim();
  if (!node.children.length && !Object.keys(out).length) return text ? text : null;
  if (text) out['#text'] = text;
  return out;
}

// ===== Form data =====

function looksLikeForm(text) {
  const t = text.trimEnd();
  if (!t.includes('=') || !/^[A-Za-z0-9%+\-._~*[\]=!$'(),;:@/?&]*$/.test(t)) return false;
  return t.split('&').every((pair) => pair.split('=')[0].length > 0);
}

function formDecode(text) {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    throw new Rejected('malformed-form', 'form data with a bad percent escape');
  }
}

function parseForm(text) {
  const root = {};
  for (const pair of text.trimEnd().split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = formDecode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : formDecode(pair.slice(eq + 1));
    const path = keyPath(key);
    if (!path) throw new Rejected('malformed-form', `form key \`${key}\` has unbalanced brackets`);
    place(root, path, value);
  }
  return arrays(root);
}

function keyPath(key) {
  const open = key.indexOf('[');
  if (open < 0) return [key];
  const path = [key.slice(0, open)];
  let rest = key.slice(open);
  while (rest) {
    const end = rest.indexOf(']');
    if (rest[0] !== '[' || end < 0) return null;
    path.push(rest.slice(1, end));
    rest = rest.slice(end + 1);
  }
  return path;
}

function place(obj, path, value) {
  const [first, ...rest] = path;
  if (!rest.length) { insert(obj, first, value); return; }
  if (rest.length === 1 && rest[0] === '') {
    if (!(first in obj)) obj[first] = [];
    if (Array.isArray(obj[first])) obj[first].push(value);
    else obj[first] = [obj[first], value];
    return;
  }
  if (!(first in obj)) obj[first] = {};
  if (typeof obj[first] !== 'object' || obj[first] === null || Array.isArray(obj[first])) obj[first] = { '#text': obj[first] };
  place(obj[first], rest, value);
}

function arrays(value) {
  if (Array.isArray(value)) return value.map(arrays);
  if (value && typeof value === 'object' && !(value instanceof Num)) {
    const keys = Object.keys(value);
    const mapped = {};
    for (const k of keys) mapped[k] = arrays(value[k]);
    if (keys.length && keys.every((k) => /^\d+$/.test(k))) {
      return keys.sort((a, b) => Number(a) - Number(b)).map((k) => mapped[k]);
    }
    return mapped;
  }
  return value;
}

// ===== Decoding =====

function decode(bytes, declared) {
  const text = bodyText(bytes);
  const trimmed = text.trimStart();
  if (!trimmed) throw new Rejected('empty-body', 'the body is empty');
  const first = trimmed[0];
  if (first === '{' || first === '[') return parseJson(trimmed);
  if (first === '<') return parseXml(trimmed);
  const declaredForm = (declared || '').trim().toLowerCase().startsWith('application/x-www-form-urlencoded');
  if (looksLikeForm(trimmed) && (declaredForm || !isJson(trimmed))) return parseForm(trimmed);
  if (isJson(trimmed)) return parseJson(trimmed);
  throw new Rejected('unsupported-format', `the body is neither JSON, XML nor form data (declared content type: ${declared || 'none'})`);
}

// ===== Reading the vendor's fields =====

function field(obj, name, path) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj) || obj instanceof Num) {
    throw new Rejected('invalid-value', `${path || '.'}: invalid type: expected a map`);
  }
  if (!Object.prototype.hasOwnProperty.call(obj, name)) {
    throw new Rejected('missing-field', `${path ? `${path}: ` : ''}missing field \`${name}\``);
  }
  return obj[name];
}

function textValue(v, path) {
  if (typeof v === 'string') return v;
  if (v instanceof Num) return v.text;
  throw new Rejected('invalid-value', `${path}: invalid type: expected a string`);
}

function stringValue(v, path) {
  if (typeof v === 'string') return v;
  throw new Rejected('invalid-value', `${path}: invalid type: expected a string`);
}

/** Whether `text` is an optional sign and one or more ASCII digits (no regular expression: this
 * runs for every line, and the engine interprets regular expressions slowly). */
function isInteger(text) {
  let i = text[0] === '+' || text[0] === '-' ? 1 : 0;
  if (i >= text.length) return false;
  for (; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function integerValue(v, path) {
  const text = typeof v === 'string' ? v.trim() : v instanceof Num ? v.text : null;
  if (text === null || !isInteger(text)) throw new Rejected('invalid-value', `${path}: invalid value: \`${text}\` is not a whole number`);
  // Exact as a Number up to 15 digits; BigInt beyond.
  return text.length <= 15 ? Number(text) : BigInt(text);
}

/** An exact decimal: `digits` (no sign, no leading zeros) times 10 to the minus `scale`. */
function parseDecimal(text) {
  let at = text[0] === '+' || text[0] === '-' ? 1 : 0;
  const negative = text[0] === '-';
  const dot = text.indexOf('.', at);
  let end = text.length;
  let exponent = 0;
  const e = Math.max(text.indexOf('e', at), text.indexOf('E', at));
  if (e >= 0) {
    if (!isInteger(text.slice(e + 1))) return null;
    exponent = Number(text.slice(e + 1));
    end = e;
  }
  const whole = text.slice(at, dot >= 0 && dot < end ? dot : end);
  const fraction = dot >= 0 && dot < end ? text.slice(dot + 1, end) : '';
  if (!whole && !fraction) return null;
  if ((whole && !isInteger(whole)) || (fraction && !isInteger(fraction)) || whole[0] === '+' || whole[0] === '-' || fraction[0] === '+' || fraction[0] === '-') return null;
  let digits = whole + fraction;
  let first = 0;
  while (first < digits.length - 1 && digits[first] === '0') first += 1;
  digits = digits.slice(first);
  return { negative: negative && digits !== '0', digits, scale: fraction.length - exponent };
}

function decimalValue(v, path) {
  const text = typeof v === 'string' ? v.trim() : v instanceof Num ? v.text : null;
  const decimal = text === null ? null : parseDecimal(text);
  if (!decimal) throw new Rejected('invalid-value', `${path}: invalid value: \`${text}\` is not a decimal number`);
  return decimal;
}

function listValue(v, path) {
  if (v === null) return [];
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object' && !(v instanceof Num)) {
    const values = Object.values(v);
    if (values.length === 1 && Array.isArray(values[0])) return values[0];
    if (values.length === 1 && values[0] && typeof values[0] === 'object' && !(values[0] instanceof Num)) return [values[0]];
    return [v];
  }
  throw new Rejected('invalid-value', `${path}: invalid type: expected a list`);
}

// ===== Money =====

const ZERO = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const THREE = new Set(['BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND']);
const FOUR = new Set(['CLF', 'UYW']);

function minorUnitExponent(currency) {
  const upper = currency.length === 3 && [0, 1, 2].every((i) => currency.charCodeAt(i) >= 65 && currency.charCodeAt(i) <= 90);
  if (!upper) throw new Rejected('invalid-currency', `\`${currency}\` is not an ISO 4217 currency code`);
  if (ZERO.has(currency)) return 0;
  if (THREE.has(currency)) return 3;
  if (FOUR.has(currency)) return 4;
  return 2;
}

const I64_LIMIT = 2n ** 63n;

/** `mantissa` (a whole Number below 10^15) times 10^`shift`, rounded half to even; exact while
 * the result stays below 2^53. */
function numberMinor(mantissa, shift) {
  if (shift >= 0) return mantissa * 10 ** shift;
  const divisor = 10 ** -shift;
  let quotient = Math.floor(mantissa / divisor);
  let rest = mantissa - quotient * divisor;
  // The float division may round across a whole number; the integer remainder tells.
  if (rest < 0) {
    quotient -= 1;
    rest += divisor;
  } else if (rest >= divisor) {
    quotient += 1;
    rest -= divisor;
  }
  return quotient + (rest * 2 > divisor || (rest * 2 === divisor && quotient % 2 === 1) ? 1 : 0);
}

/** Integer minor units, rounded half to even: exact Number arithmetic while every value stays
 * below 2^53, BigInt beyond. */
function money(amount, currency, exponent) {
  const shift = exponent - amount.scale;
  let magnitude;
  if (amount.digits.length + Math.max(shift, 0) <= 15 && shift >= -15) {
    magnitude = numberMinor(Number(amount.digits), shift);
    return { amount_minor: amount.negative ? -magnitude : magnitude, currency };
  }
  if (shift >= 0) {
    magnitude = BigInt(amount.digits) * 10n ** BigInt(shift);
  } else {
    const mantissa = BigInt(amount.digits);
    const divisor = 10n ** BigInt(-shift);
    const quotient = mantissa / divisor;
    const twice = (mantissa % divisor) * 2n;
    magnitude = quotient + (twice > divisor || (twice === divisor && quotient % 2n === 1n) ? 1n : 0n);
  }
  if (magnitude >= I64_LIMIT) throw new Rejected('amount-out-of-range', `amount is too large for ${currency}`);
  return { amount_minor: amount.negative ? -magnitude : magnitude, currency };
}

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
  // The currency is checked once, where the first price needs it (as the Rust plugin does).
  let exponent = null;
  const items = new Array(lines.length);
  for (let n = 0; n < lines.length; n += 1) {
    const line = lines[n];
    if (line.qty <= 0) throw new Rejected('invalid-quantity', `line_items[${n}].qty is ${line.qty}; it must be at least 1`);
    if (line.price.negative) throw new Rejected('invalid-price', `line_items[${n}].unit_prc is negative`);
    const sku = line.sku.trim();
    if (!sku) throw new Rejected('missing-field', `missing field \`line_items[${n}].sku\``);
    if (exponent === null) exponent = minorUnitExponent(currency);
    items[n] = { product_sku: sku, quantity: line.qty, unit_price: money(line.price, currency, exponent) };
  }
  return { id, status: STATUSES[code], items };
}

/** JSON with BigInt written as its digits: integers of any size, never through a float. */
function stringify(order) {
  const big = order.items.some((item) => typeof item.quantity === 'bigint' || typeof item.unit_price.amount_minor === 'bigint');
  if (!big) return JSON.stringify(order);
  return JSON.stringify(order, (_, v) => (typeof v === 'bigint' ? `__int:${v}` : v)).replace(/"__int:(-?\d+)"/g, '$1');
}

/** A bug, not a refusal: report it where the host reads it, then fail the call. */
function fault(error) {
  console.error(`plugin fault: ${error}\n${(error && error.stack) || ""}`);
  throw error;
}

function refusal(error) {
  return { tag: 'rejected', val: { code: error.code, message: error.message } };
}

export const metadata = {
  info() {
    return PLUGIN;
  },
};

export const inbound = {
  idempotencyKey(message) {
    try {
      const id = textValue(field(decode(message.body, message.contentType), 'ord_id', ''), 'ord_id').trim();
      return id ? `order-created-${id}` : undefined;
    } catch (e) {
      if (e instanceof Rejected) return undefined;
      return fault(e);
    }
  },
  translate(message) {
    let order;
    let data;
    try {
      const doc = decode(message.body, message.contentType);
      const currency = configGet('currency') || DEFAULT_CURRENCY;
      order = usualOrder(doc, currency);
      if (order) {
        data = JSON.stringify(order);
      } else {
        order = toOrder(doc, currency);
        data = stringify(order);
      }
    } catch (e) {
      if (e instanceof Rejected) throw refusal(e);
      return fault(e);
    }
    return [{ eventType: ORDER_CREATED, subject: order.id, partitionKey: order.id, data }];
  },
};
