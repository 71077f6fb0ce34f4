/**
 * Whether a request body can be sent again on a retry. A retry re-dispatches the
 * same `opts`, so the body must yield the same bytes a second time. A consumed stream does not:
 * undici then sends an empty body without complaint, and the upstream receives a different
 * request than the caller made — worse than not retrying.
 */

/**
 * True for bodies undici can send any number of times: none, a string, any `ArrayBufferView`
 * (`Buffer`, `Uint8Array`, `DataView`…), an `ArrayBuffer`, or a `Blob` (a `File` included).
 *
 * Blob, with evidence from undici 7 (`lib/core/request.js` keeps the Blob object itself as the
 * request's body, and `lib/dispatcher/client-h1.js`/`client-h2.js` call `body.stream()` — or
 * `arrayBuffer()` — when each request is written): every dispatch reads the Blob afresh, and a
 * Blob's bytes are immutable, so a second dispatch sends the same bytes (the test sends one twice
 * to a real server). Only real `Blob` instances qualify; a Blob-like object's `stream()` may be
 * one-shot.
 *
 * False for everything else: Node `Readable`s, WHATWG `ReadableStream`s and (async) iterables,
 * which the first attempt consumes; and `FormData`, conservatively. undici re-encodes its own
 * `FormData` on each dispatch, so that one could be replayed, but the brand check it uses
 * (`webidl.is.FormData`) rejects Node's global `FormData` when the installed undici is another
 * copy than Node's bundled one, and the request then fails outright; `fetch()` turns a FormData
 * into a stream before dispatching anyway. It counts among the iterables: not replayable.
 */
export function isReplayableBody(body: unknown): boolean {
  if (body === undefined || body === null || typeof body === 'string') return true;
  if (typeof body !== 'object') return false;
  return ArrayBuffer.isView(body) || body instanceof ArrayBuffer || body instanceof Blob;
}
