// dragoman.js: the JavaScript side of the Dragoman guest SDK, one module with no dependency.
//
// It gives a translator built with componentize-js what the Rust SDK (`dragoman-guest`)
// gives one in Rust, with the same error codes (docs/plugins/contract.md lists them), so the
// same fixtures pass in either language:
//
// - `decode(message)`: the body by its bytes, whatever its declared content type: JSON
//   (numbers kept as their exact text, as `Num`), XML or form data, behind a UTF-8 or UTF-16
//   byte order mark;
// - `field`, `textValue`, `stringValue`, `integerValue`, `decimalValue`, `listValue`: checked
//   readers that name the field at fault;
// - `money(amount, currency, rounding)`: integer minor units, never through a float;
// - `event(eventType, subject, data)`: a domain event, its data written as JSON;
// - `translator(fn)`: wraps `translate` so a refusal (`Rejected`, `Transient`) becomes the
//   WIT error, the events are checked field by field, and any other exception is a plugin
//   fault whose message keeps the file and line it came from.
//
// Copy this file beside your app.js (`dragoman plugin new --lang js` does) and import it as
// './dragoman.js'.

export const VERSION = '0.1.0';
export const CONTRACT = 'dragoman:translator@0.1.0';

/** The input is wrong and will stay wrong: a `rejected` translate error. */
export class Rejected extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** A later attempt may succeed: a `transient` translate error. */
export class Transient extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** `translate` returned something the contract cannot carry; the message names the field. */
export class OutputError extends TypeError {
  constructor(message) {
    super(message);
    this.name = 'OutputError';
  }
}

/** A JSON number, kept as the text it was written with. */
export class Num {
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

// As the URL standard's application/x-www-form-urlencoded parser (and the Rust and Python
// SDKs) read a value: `+` is a space, `%XX` a byte, a `%` not followed by two hex digits stays
// as it is, and bytes that are not UTF-8 become U+FFFD.
const LENIENT_UTF8 = new TextDecoder('utf-8');
const UTF8 = new TextEncoder();

function formDecode(text) {
  const bytes = [];
  const chars = Array.from(text.replace(/\+/g, ' '));
  for (let i = 0; i < chars.length; i++) {
    const hex = chars[i] === '%' ? chars.slice(i + 1, i + 3).join('') : '';
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of UTF8.encode(chars[i])) bytes.push(b);
    }
  }
  return LENIENT_UTF8.decode(new Uint8Array(bytes));
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

export function decodeBody(bytes, declared) {
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
/** The body of `message` as one tree (objects, arrays, strings, `Num`), decoded by its bytes;
 * `Rejected` with `empty-body`, `invalid-encoding`, `malformed-json`, `malformed-xml`,
 * `malformed-form` or `unsupported-format`. */
export function decode(message) {
  return decodeBody(message.body, message.contentType);
}

// ===== Reading the vendor's fields =====

export function field(obj, name, path) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj) || obj instanceof Num) {
    throw new Rejected('invalid-value', `${path || '.'}: invalid type: expected a map`);
  }
  if (!Object.prototype.hasOwnProperty.call(obj, name)) {
    throw new Rejected('missing-field', `${path ? `${path}: ` : ''}missing field \`${name}\``);
  }
  return obj[name];
}

export function textValue(v, path) {
  if (typeof v === 'string') return v;
  if (v instanceof Num) return v.text;
  throw new Rejected('invalid-value', `${path}: invalid type: expected a string`);
}

export function stringValue(v, path) {
  if (typeof v === 'string') return v;
  throw new Rejected('invalid-value', `${path}: invalid type: expected a string`);
}

/** Whether `text` is an optional sign and one or more ASCII digits (no regular expression: this
 * runs for every line, and the engine interprets regular expressions slowly). */
export function isInteger(text) {
  let i = text[0] === '+' || text[0] === '-' ? 1 : 0;
  if (i >= text.length) return false;
  for (; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

export function integerValue(v, path) {
  const text = typeof v === 'string' ? v.trim() : v instanceof Num ? v.text : null;
  if (text === null || !isInteger(text)) throw new Rejected('invalid-value', `${path}: invalid value: \`${text}\` is not a whole number`);
  // Exact as a Number up to 15 digits; BigInt beyond.
  return text.length <= 15 ? Number(text) : BigInt(text);
}

/** An exact decimal: `digits` (no sign, no leading zeros) times 10 to the minus `scale`. */
export function parseDecimal(text) {
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

export function decimalValue(v, path) {
  const text = typeof v === 'string' ? v.trim() : v instanceof Num ? v.text : null;
  const decimal = text === null ? null : parseDecimal(text);
  if (!decimal) throw new Rejected('invalid-value', `${path}: invalid value: \`${text}\` is not a decimal number`);
  return decimal;
}

export function listValue(v, path) {
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
export const HALF_EVEN = 'half-even';
export const HALF_UP = 'half-up';
export const EXACT = 'exact';

/** The digits of the currency's minor unit (ISO 4217); a well-formed code this table does not
 * know gets 2, as in the Rust SDK. `Rejected` with `invalid-currency` for anything but three
 * upper-case ASCII letters. */
export function minorUnitExponent(currency) {
  const upper = typeof currency === 'string' && currency.length === 3 && [0, 1, 2].every((i) => currency.charCodeAt(i) >= 65 && currency.charCodeAt(i) <= 90);
  if (!upper) throw new Rejected('invalid-currency', `\`${currency}\` is not an ISO 4217 currency code`);
  if (ZERO.has(currency)) return 0;
  if (THREE.has(currency)) return 3;
  if (FOUR.has(currency)) return 4;
  return 2;
}

const I64_LIMIT = 2n ** 63n;

/** `mantissa` (a whole Number below 10^15) times 10^`shift`, rounded half to even; exact while
 * the result stays below 2^53. */
export function numberMinor(mantissa, shift) {
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

function decimalText(amount) {
  const digits = amount.digits.padStart(Math.max(amount.scale, 0) + 1, '0');
  const shown = amount.scale > 0 ? `${digits.slice(0, -amount.scale)}.${digits.slice(-amount.scale)}` : digits + '0'.repeat(Math.max(-amount.scale, 0));
  return (amount.negative ? '-' : '') + shown;
}

/** `{ amount_minor, currency }`: `amount` (a decimal from `decimalValue`, or its text, or a
 * `Num`) in the currency's minor units; `amount_minor` is a BigInt beyond 2^53, which `event`
 * writes exactly. `Rejected` with `invalid-currency`, `invalid-decimal`, `inexact-amount`
 * (EXACT and too many digits) or `amount-out-of-range` (beyond a signed 64-bit integer). */
export function money(amount, currency, rounding = HALF_EVEN) {
  if (![HALF_EVEN, HALF_UP, EXACT].includes(rounding)) throw new TypeError(`rounding ${rounding} is not HALF_EVEN, HALF_UP or EXACT`);
  const exponent = minorUnitExponent(currency);
  let decimal = amount;
  if (typeof amount === 'string' || amount instanceof Num) {
    const text = typeof amount === 'string' ? amount.trim() : amount.text;
    decimal = parseDecimal(text);
    if (!decimal) throw new Rejected('invalid-decimal', `\`${text}\` is not a decimal number`);
  }
  const shift = exponent - decimal.scale;
  if (rounding === HALF_EVEN && decimal.digits.length + Math.max(shift, 0) <= 15 && shift >= -15) {
    const magnitude = numberMinor(Number(decimal.digits), shift);
    return { amount_minor: decimal.negative && magnitude !== 0 ? -magnitude : magnitude, currency };
  }
  let magnitude;
  if (shift >= 0) {
    magnitude = BigInt(decimal.digits) * 10n ** BigInt(shift);
  } else {
    const mantissa = BigInt(decimal.digits);
    const divisor = 10n ** BigInt(-shift);
    const quotient = mantissa / divisor;
    const remainder = mantissa % divisor;
    const twice = remainder * 2n;
    if (rounding === EXACT && remainder !== 0n) {
      throw new Rejected('inexact-amount', `amount ${decimalText(decimal)} has more digits than ${currency} minor units`);
    }
    const up = rounding === HALF_UP ? twice >= divisor : twice > divisor || (twice === divisor && quotient % 2n === 1n);
    magnitude = quotient + (rounding !== EXACT && up ? 1n : 0n);
  }
  if (magnitude >= I64_LIMIT) throw new Rejected('amount-out-of-range', `amount ${decimalText(decimal)} ${currency} is too large`);
  const minor = magnitude < 2n ** 53n ? Number(magnitude) : magnitude;
  return { amount_minor: decimal.negative && magnitude !== 0n ? -minor : minor, currency };
}

// ===== Events =====

/** JSON with a BigInt written as its digits and a `Num` as its text in a string: integers of
 * any size, never through a float. */
export function toJson(value) {
  let big = false;
  const text = JSON.stringify(value, (_, v) => {
    if (typeof v === 'bigint') {
      big = true;
      return `__int:${v}`;
    }
    return v instanceof Num ? v.text : v;
  });
  return big ? text.replace(/"__int:(-?\d+)"/g, '$1') : text;
}

/** A domain event; `data` is any JSON value, written as JSON, or a string that already is
 * JSON. The partition key defaults to the subject. */
export function event(eventType, subject, data, partitionKey = subject) {
  return { eventType, subject, partitionKey, data: typeof data === 'string' ? data : toJson(data) };
}

const EVENT_FIELDS = ['eventType', 'subject', 'partitionKey', 'data'];

/** `events` as the contract carries them, or `OutputError` naming the field at fault. */
export function checkEvents(events) {
  if (!Array.isArray(events)) throw new OutputError(`translate returned ${typeof events}: it must return an array of events`);
  events.forEach((one, n) => {
    for (const name of EVENT_FIELDS) {
      const value = one === null || typeof one !== 'object' ? undefined : one[name];
      if (typeof value !== 'string') {
        const hint = name === 'data' ? ' (JSON.stringify it, or build the event with event(), which does)' : '';
        throw new OutputError(`events[${n}].${name} is ${value === undefined ? 'missing' : typeof value}: it must be a string${hint}`);
      }
    }
  });
  return events;
}

// ===== Refusals and faults =====

/** A `Rejected` or `Transient` as the WIT error to throw. */
export function failure(error) {
  const tag = error instanceof Transient ? 'transient' : 'rejected';
  return { tag, val: { code: error.code, message: error.message } };
}

/** `file, line N, in function` of the first frame of `error`'s stack in the plugin's own code
 * (not this module, not the componentizer's glue), or undefined. */
export function where(error) {
  const stack = (error && typeof error.stack === 'string' && error.stack) || '';
  const frames = stack
    .split('\n')
    .map((line) => /^(.*)@(.*?):(\d+):(\d+)$/.exec(line.trim()))
    .filter(Boolean);
  // Not this module's frames, nor those of the glue code the componentizer adds.
  const own = frames.filter((f) => !f[2].endsWith('dragoman.js') && !f[2].endsWith('initializer.js'));
  const frame = own[0];
  if (!frame) return undefined;
  return `${frame[2].split('/').pop()}, line ${frame[3]}, in ${frame[1] || 'a function'}`;
}

/** A bug, not a refusal: write `plugin fault: Type: message (file, line N, in f)` to stderr,
 * where the host reads it into the fault, and fail the call. */
export function fault(error) {
  const place = where(error);
  const name = (error && error.name) || 'Error';
  const message = error && error.message !== undefined ? error.message : String(error);
  console.error(`plugin fault: ${name}: ${message}${place ? ` (${place})` : ''}`);
  throw error;
}

/** Wraps `translate(message)` (or `decode(command, response)`): refusals become the WIT error,
 * events are checked, anything else is a fault that keeps its file and line. */
export function translator(fn) {
  return function translate(...args) {
    let events;
    try {
      events = checkEvents(fn.apply(this, args));
    } catch (e) {
      if (e instanceof Rejected || e instanceof Transient) throw failure(e);
      if (e && (e.tag === 'rejected' || e.tag === 'transient')) throw e;
      return fault(e);
    }
    return events;
  };
}

/** Wraps `idempotencyKey(message)`: a refusal means no key (the translation says why),
 * anything else is a fault that keeps its file and line. */
export function key(fn) {
  return function idempotencyKey(...args) {
    let found;
    try {
      found = fn.apply(this, args);
    } catch (e) {
      if (e instanceof Rejected || e instanceof Transient) return undefined;
      return fault(e);
    }
    if (found !== undefined && found !== null && typeof found !== 'string') {
      return fault(new OutputError(`idempotencyKey returned ${typeof found}: it must return a string or undefined`));
    }
    return found === null ? undefined : found;
  };
}
