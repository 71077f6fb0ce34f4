/**
 * Whether request headers can be sent again on a retry. undici reads iterable headers (a `Map`,
 * `Headers`, an array of pairs, a generator) when it builds each request. A collection can be
 * iterated again; a one-shot iterator, whose `[Symbol.iterator]()` returns itself (a generator),
 * is used up by the first attempt, and a repeat would go out with no headers at all: a different
 * request than the caller made.
 */
export function isReplayableHeaders(headers: unknown): boolean {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return true;
  const iterate = (headers as { [Symbol.iterator]?: unknown })[Symbol.iterator];
  if (typeof iterate !== 'function') return true;
  // Calling [Symbol.iterator]() on a collection makes a fresh iterator and reads nothing.
  return (iterate as () => unknown).call(headers) !== headers;
}

/**
 * One request header's value as the caller gave it, in any of undici's shapes (an object, a flat
 * array, an array of pairs, an iterable collection), matched without regard to case; several
 * values are joined with `, `. A one-shot iterator is not read: that would use it up.
 */
export function requestHeader(headers: unknown, name: string): string | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const wanted = name.toLowerCase();
  const values: string[] = [];
  const take = (key: unknown, value: unknown): void => {
    if (typeof key !== 'string' || key.toLowerCase() !== wanted || value == null) return;
    if (Array.isArray(value)) for (const v of value) values.push(String(v));
    else values.push(String(value));
  };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const pair of headers) take(pair[0], pair[1]);
    else for (let i = 0; i + 1 < headers.length; i += 2) take(headers[i], headers[i + 1]);
  } else if (typeof (headers as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function') {
    if (!isReplayableHeaders(headers)) return undefined;
    for (const pair of headers as Iterable<unknown>) if (Array.isArray(pair)) take(pair[0], pair[1]);
  } else {
    for (const key of Object.keys(headers)) take(key, (headers as Record<string, unknown>)[key]);
  }
  return values.length === 0 ? undefined : values.join(', ');
}
