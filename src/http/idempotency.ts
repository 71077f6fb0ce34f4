/**
 * Whether a request may be sent twice without doubling its effect. A retry of a
 * POST that did reach the upstream charges the card twice; the retry stage asks here first.
 */

/**
 * Methods RFC 9110 §9.2.2 defines as idempotent (QUERY from the safe-method-with-body draft),
 * upper-case as undici's `opts.method` carries them.
 */
export const IDEMPOTENT_METHODS: readonly string[] = Object.freeze([
  'GET',
  'HEAD',
  'OPTIONS',
  'PUT',
  'DELETE',
  'TRACE',
  'QUERY',
]);

const IDEMPOTENCY_KEY = 'idempotency-key';

/**
 * True when the request carries an `Idempotency-Key` header with a non-blank value: the upstream
 * promised to deduplicate it (IETF httpapi-idempotency-key-header), so even a POST may be retried.
 *
 * Accepts every shape undici's dispatch `opts.headers` takes: `null`/`undefined`; a plain object
 * (any letter case; value a string, a number or an array of them — `fetch()` passes this shape);
 * a flat array `['name', 'value', …]`; any iterable of `[name, value]` pairs, such as a `Map` or a
 * WHATWG `Headers`; and an array of pairs (undici 7 itself rejects that one, but a wrapper in
 * front of it may normalise it, so it is recognised rather than misread as a flat array). Runs for
 * each non-idempotent request, so it walks the headers in place and lower-cases only names of the
 * right length.
 */
export function hasIdempotencyKey(headers: unknown): boolean {
  if (typeof headers !== 'object' || headers === null) return false;

  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) return hasKeyInPairs(headers);
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (isIdempotencyKeyName(headers[i]) && hasValue(headers[i + 1])) return true;
    }
    return false;
  }

  if (hasSafeIterator(headers)) return hasKeyInPairs(headers as Iterable<unknown>);

  for (const name in headers) {
    if (Object.hasOwn(headers, name) && isIdempotencyKeyName(name)) {
      if (hasValue((headers as Record<string, unknown>)[name])) return true;
    }
  }
  return false;
}

function hasKeyInPairs(pairs: Iterable<unknown>): boolean {
  for (const pair of pairs) {
    if (Array.isArray(pair) && isIdempotencyKeyName(pair[0]) && hasValue(pair[1])) return true;
  }
  return false;
}

/**
 * An iterator the object's class provides, not one planted on `Object.prototype` by prototype
 * pollution: undici makes the same check (its `hasSafeIterator`) before treating headers as pairs.
 */
function hasSafeIterator(value: object): boolean {
  const iterator = (value as { [Symbol.iterator]?: unknown })[Symbol.iterator];
  return (
    typeof iterator === 'function' &&
    iterator !== (Object.prototype as { [Symbol.iterator]?: unknown })[Symbol.iterator]
  );
}

function isIdempotencyKeyName(name: unknown): boolean {
  return (
    typeof name === 'string' &&
    name.length === IDEMPOTENCY_KEY.length &&
    name.toLowerCase() === IDEMPOTENCY_KEY
  );
}

/** undici sends numbers as their text and `null` as an empty value; a blank key identifies nothing. */
function hasValue(value: unknown): boolean {
  if (typeof value === 'string') return value.trim().length > 0;
  if (typeof value === 'number' || typeof value === 'bigint') return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (hasValue(value[i])) return true;
  }
  return false;
}
