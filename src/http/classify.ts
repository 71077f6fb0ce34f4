/**
 * What an attempt's failure means: worth another try (a transient network error), safe to retry
 * for any method (the request provably never left), or the caller's own abort (never retried,
 * never the upstream's fault). The retry and circuit-breaker adapters both ask these questions,
 * so the answers live in one place, decided by error `code` — the only stable thing across
 * Node's socket errors, undici's errors and `fetch`'s `TypeError('fetch failed', { cause })`.
 */

import { ResilienceError, TimeoutError } from '../errors.js';

/**
 * Error codes of failures a repeat can fix: the connection or the network misbehaved, not the
 * request. Searched through the `cause` chain (see {@link errorCode}).
 */
export const TRANSIENT_NETWORK_CODES: ReadonlySet<string> = new Set([
  // The peer reset the connection (a restart, a load balancer dropping an idle keep-alive socket).
  'ECONNRESET',
  // Nothing listens on the port yet or any more: a deploy or a crash in progress.
  'ECONNREFUSED',
  // The local stack aborted the connection (e.g. too many retransmissions).
  'ECONNABORTED',
  // Written to a socket the peer had already closed: the keep-alive race.
  'EPIPE',
  // The OS gave up on the connection (unanswered SYN or retransmissions).
  'ETIMEDOUT',
  // DNS temporarily failed (a resolver timeout); ENOTFOUND is deliberately absent: a name that
  // does not exist will not exist a few hundred milliseconds later.
  'EAI_AGAIN',
  // No route to the network or host right now: a flapping link or a host being replaced.
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  // undici's SocketError: the socket closed or failed under a request ("other side closed").
  'UND_ERR_SOCKET',
  // undici could not open the connection within `connectTimeout`.
  'UND_ERR_CONNECT_TIMEOUT',
  // The upstream accepted the request but sent no headers within `headersTimeout`.
  'UND_ERR_HEADERS_TIMEOUT',
  // The body stalled for `bodyTimeout`. It fails after the headers, so the attempt boundary (rule
  // 1) keeps it from being retried; it is listed so the breaker counts it as the upstream's fault.
  'UND_ERR_BODY_TIMEOUT',
  // Deliberately absent: UND_ERR_CLOSED and UND_ERR_DESTROYED (the user closed the dispatcher; a
  // retry would fail the same way), UND_ERR_ABORTED (an abort, see isCallerAbort), UND_ERR_INFO
  // (informational), HPE_* parser errors and content-length mismatches (a broken upstream or a
  // broken request, which repeating reproduces).
]);

/**
 * Codes that prove the request never left this process: no byte of it reached the upstream, so
 * repeating it cannot duplicate a side effect, whatever the method. A subset of
 * {@link TRANSIENT_NETWORK_CODES}: only transient failures are retried at all.
 */
export const CONNECT_FAILURE_CODES: ReadonlySet<string> = new Set([
  // Refused at the TCP handshake.
  'ECONNREFUSED',
  // undici's connect timeout: the socket never became usable.
  'UND_ERR_CONNECT_TIMEOUT',
  // The name did not even resolve.
  'EAI_AGAIN',
  // No route: the SYN never went out. (Also reported after a connection was established when an
  // ICMP error arrives, so isConnectFailure checks the failing syscall when the error names one.)
  'ENETUNREACH',
  'EHOSTUNREACH',
  // ETIMEDOUT is absent: besides an unanswered SYN it also means a connection that died with
  // data in flight, and the code alone cannot tell which.
]);

/**
 * How deep to follow `cause` and `AggregateError.errors`: `fetch` wraps once, user code a few
 * times more; a cycle must end. Matches the bound of `findInCauseChain`.
 */
const MAX_DEPTH = 8;

/**
 * The first error with a string `code` in `codes`, looking at `err` itself, then inside an
 * `AggregateError`'s `errors` (Node's happy-eyeballs connect reports one failure per address that
 * way), then down its `cause`, depth first. Recursion and no arrays: nothing is allocated.
 */
function findCoded(err: unknown, codes: ReadonlySet<string>, depth: number): object | undefined {
  if (depth >= MAX_DEPTH || typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && codes.has(code)) return err;
  const errors = (err as { errors?: unknown }).errors;
  if (Array.isArray(errors)) {
    for (let i = 0; i < errors.length; i++) {
      const found = findCoded(errors[i], codes, depth + 1);
      if (found !== undefined) return found;
    }
  }
  return findCoded((err as { cause?: unknown }).cause, codes, depth + 1);
}

/**
 * The first `code` (a string property) in `err`'s cause chain, `AggregateError.errors` included,
 * that belongs to `codes`; `undefined` when none does. Depth is bounded, so cycles are safe.
 */
export function errorCode(err: unknown, codes: ReadonlySet<string>): string | undefined {
  const found = findCoded(err, codes, 0);
  return found === undefined ? undefined : (found as { code: string }).code;
}

/**
 * Node's code for an HTTP/2 stream the peer reset (RST_STREAM). Which reset it was is only in the
 * message, as the RFC 9113 error name: Node puts nothing else on the error.
 */
const HTTP2_STREAM_ERROR = 'ERR_HTTP2_STREAM_ERROR';

/**
 * The RFC 9113 error name of an HTTP/2 stream reset in `err`'s cause chain (`NGHTTP2_REFUSED_STREAM`,
 * `NGHTTP2_INTERNAL_ERROR`, …), or undefined. Node names it in the message of its
 * ERR_HTTP2_STREAM_ERROR ("Stream closed with error code NGHTTP2_…"), its only carrier; the name
 * is nghttp2's constant, not prose.
 */
export function http2ResetCode(err: unknown): string | undefined {
  const found = findCoded(err, HTTP2_CODES, 0) as { message?: unknown } | undefined;
  if (found === undefined || typeof found.message !== 'string') return undefined;
  return /\bNGHTTP2_[A-Z_]+\b/.exec(found.message)?.[0];
}

const HTTP2_CODES: ReadonlySet<string> = new Set([HTTP2_STREAM_ERROR]);

/**
 * HTTP/2 resets a repeat can fix: the stream was refused before processing (RFC 9113 §8.7), the
 * peer failed internally, or it is shedding load.
 */
const TRANSIENT_HTTP2_RESETS: ReadonlySet<string> = new Set([
  'NGHTTP2_REFUSED_STREAM',
  'NGHTTP2_INTERNAL_ERROR',
  'NGHTTP2_ENHANCE_YOUR_CALM',
]);

/** True when a transient network failure (see {@link TRANSIENT_NETWORK_CODES}) caused `err`. */
export function isTransientNetworkError(err: unknown): boolean {
  if (findCoded(err, TRANSIENT_NETWORK_CODES, 0) !== undefined) return true;
  const reset = http2ResetCode(err);
  return reset !== undefined && TRANSIENT_HTTP2_RESETS.has(reset);
}

/**
 * The HTTP status an error carries, as undici's `ResponseError` (code `UND_ERR_RESPONSE`) does when
 * its responseError interceptor turns a response into an error: such an error is classified by
 * that status, like the response it stands for.
 */
export function errorStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const status = (err as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599
    ? status
    : undefined;
}

/**
 * Whether an attempt that ended in `error` failed because of the upstream: a network error, a
 * timeout of this very attempt, or an error carrying a status in `failureStatus`. A timeout coming
 * from outside (`fromInside` false) counts only when it is an attempt timeout; a total timeout, a
 * caller's abort or the library's own refusals are nobody's verdict on the upstream.
 */
export function isUpstreamFailure(
  error: Error | null,
  fromInside: boolean,
  failureStatus?: readonly boolean[],
): boolean {
  if (error === null) return false;
  if (error instanceof TimeoutError) return fromInside || error.scope === 'attempt';
  if (error instanceof ResilienceError || isCallerAbort(error)) return false;
  const status = errorStatus(error);
  if (status !== undefined) return failureStatus?.[status] === true;
  return isTransientNetworkError(error);
}

/**
 * True when `err` proves the request never left (see {@link CONNECT_FAILURE_CODES}), so it may be
 * retried even when it is not idempotent. An error that names a data-transfer syscall is not
 * proof: EHOSTUNREACH from a `write` came after bytes may have been sent.
 */
export function isConnectFailure(err: unknown): boolean {
  // A refused HTTP/2 stream was provably not processed (RFC 9113 §8.7).
  if (http2ResetCode(err) === 'NGHTTP2_REFUSED_STREAM') return true;
  const found = findCoded(err, CONNECT_FAILURE_CODES, 0);
  if (found === undefined) return false;
  const syscall = (found as { syscall?: unknown }).syscall;
  return syscall !== 'write' && syscall !== 'writev' && syscall !== 'read';
}

/**
 * True when `err` is the caller's abort: anything named `AbortError` in the cause chain — undici's
 * `RequestAbortedError` (`UND_ERR_ABORTED`), undici's `AbortError`, the `DOMException` that
 * `request()` and `fetch()` reject with when their `signal` aborts — or the `DOMException` named
 * `TimeoutError` that a caller's `AbortSignal.timeout()` produces.
 *
 * The library's own `TimeoutError` is not a caller abort (a timeout stage fired, and an attempt
 * timeout is retried), and the walk stops at any error the library raised: its decision is the
 * nearer explanation. A caller who aborts with a reason of their own (`controller.abort(myError)`)
 * gets `myError` back from undici, which carries no mark of an abort; only the adapter, which
 * saw its controller being aborted, can tell that case.
 */
export function isCallerAbort(err: unknown): boolean {
  let current = err;
  for (let depth = 0; depth < MAX_DEPTH && typeof current === 'object' && current !== null; depth++) {
    if (current instanceof ResilienceError) return false;
    const name = (current as { name?: unknown }).name;
    if (name === 'AbortError') return true;
    if (name === 'TimeoutError' && current instanceof DOMException) return true;
    if ((current as { code?: unknown }).code === 'UND_ERR_ABORTED') return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

export type HttpStatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx';

/**
 * The class of an HTTP status, for metric labels. Out-of-range codes (undici passes through
 * whatever the upstream sent) fold into the nearest class, so a label never escapes the five.
 */
export function statusClass(status: number): HttpStatusClass {
  if (status < 200) return '1xx';
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}
