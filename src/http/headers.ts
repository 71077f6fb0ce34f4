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
