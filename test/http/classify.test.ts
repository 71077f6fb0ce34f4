import assert from 'node:assert/strict';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { after, before, describe, test } from 'node:test';
import { Agent, errors, fetch, request } from 'undici';
import { CircuitOpenError, TimeoutError } from '../../src/errors.js';
import {
  CONNECT_FAILURE_CODES,
  errorCode,
  isCallerAbort,
  isConnectFailure,
  isTransientNetworkError,
  statusClass,
  TRANSIENT_NETWORK_CODES,
} from '../../src/http/classify.js';
import { refusedOrigin, startUpstream, type Upstream } from '../helpers/upstream.js';

/** Runs `fn` and returns what it threw; fails the test when it did not throw. */
async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

/** An error with a `code`, as Node's socket errors are. */
function coded(code: string, options?: ErrorOptions & { syscall?: string }): Error {
  const err = new Error(code, options) as Error & { code: string; syscall?: string };
  err.code = code;
  if (options?.syscall !== undefined) err.syscall = options.syscall;
  return err;
}

describe('classify: errors from real sockets', () => {
  let refused: string;
  let upstream: Upstream;

  before(async () => {
    refused = await refusedOrigin();
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  test('request() to a closed port: ECONNREFUSED, transient, a connect failure', async () => {
    const err = await thrown(() => request(refused));
    assert.equal(errorCode(err, TRANSIENT_NETWORK_CODES), 'ECONNREFUSED');
    assert.equal(isTransientNetworkError(err), true);
    assert.equal(isConnectFailure(err), true);
    assert.equal(isCallerAbort(err), false);
  });

  test("fetch() to a closed port: found inside TypeError('fetch failed', { cause })", async () => {
    const err = await thrown(() => fetch(refused));
    assert.ok(err instanceof TypeError);
    assert.equal(err.message, 'fetch failed');
    assert.equal(errorCode(err, CONNECT_FAILURE_CODES), 'ECONNREFUSED');
    assert.equal(isTransientNetworkError(err), true);
    assert.equal(isConnectFailure(err), true);
  });

  test("happy-eyeballs connect to two addresses: ECONNREFUSED inside Node's AggregateError", async () => {
    const { port } = new URL(refused);
    // Two loopback addresses, nothing listening on either: Node tries both, then aggregates.
    const lookup = (
      _host: string,
      options: LookupOptions,
      callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
    ) => {
      if (options.all) {
        callback(null, [
          { address: '127.0.0.1', family: 4 },
          { address: '127.0.0.2', family: 4 },
        ]);
      } else callback(null, '127.0.0.1', 4);
    };
    const agent = new Agent({ connect: { lookup, autoSelectFamily: true } });
    try {
      const err = await thrown(() => request(`http://breakwater.test:${port}/`, { dispatcher: agent }));
      assert.ok(err instanceof AggregateError, `got ${String(err)}`);
      assert.equal(err.errors.length, 2);
      assert.equal(isConnectFailure(err), true);
      // Node also copies the first code onto the aggregate; the search must not depend on it.
      Object.defineProperty(err, 'code', { value: undefined });
      assert.equal(errorCode(err, CONNECT_FAILURE_CODES), 'ECONNREFUSED');
      assert.equal(isConnectFailure(err), true);
    } finally {
      await agent.close();
    }
  });

  test('the upstream resets the socket before answering: transient, not a connect failure', async () => {
    upstream.setScript({ kind: 'reset' });
    const err = await thrown(() => request(upstream.url('/reset')));
    assert.equal(isTransientNetworkError(err), true, `got ${String(err)}`);
    assert.equal(isConnectFailure(err), false);
    assert.equal(isCallerAbort(err), false);
  });

  test('headersTimeout: UND_ERR_HEADERS_TIMEOUT, transient, not a connect failure', async () => {
    upstream.setScript({ kind: 'hang' });
    const err = await thrown(() => request(upstream.url('/hang'), { headersTimeout: 50 }));
    assert.equal(errorCode(err, TRANSIENT_NETWORK_CODES), 'UND_ERR_HEADERS_TIMEOUT');
    assert.equal(isConnectFailure(err), false);
  });

  test("the caller's signal aborts request() and fetch(): a caller abort, not transient", async () => {
    upstream.setScript({ kind: 'hang' });
    for (const send of [
      (signal: AbortSignal) => request(upstream.url('/abort'), { signal }),
      (signal: AbortSignal) => fetch(upstream.url('/abort'), { signal }),
    ]) {
      const controller = new AbortController();
      const pending = thrown(() => send(controller.signal));
      setTimeout(() => controller.abort(), 20);
      const err = await pending;
      assert.equal(isCallerAbort(err), true, `got ${String(err)}`);
      assert.equal(isTransientNetworkError(err), false);
    }
  });

  test("the caller's AbortSignal.timeout(): a caller abort", async () => {
    upstream.setScript({ kind: 'hang' });
    const err = await thrown(() => request(upstream.url('/deadline'), { signal: AbortSignal.timeout(20) }));
    assert.ok(err instanceof DOMException && err.name === 'TimeoutError', `got ${String(err)}`);
    assert.equal(isCallerAbort(err), true);
    assert.equal(isTransientNetworkError(err), false);
  });

  test('a closed dispatcher is not transient: a retry would fail the same way', async () => {
    const agent = new Agent();
    await agent.close();
    const err = await thrown(() => request(upstream.url('/'), { dispatcher: agent }));
    assert.equal((err as { code?: string }).code, 'UND_ERR_DESTROYED');
    assert.equal(isTransientNetworkError(err), false);
    assert.equal(isCallerAbort(err), false);
  });
});

describe('classify: constructed errors', () => {
  test('connect failures are a subset of the transient codes', () => {
    for (const code of CONNECT_FAILURE_CODES) assert.ok(TRANSIENT_NETWORK_CODES.has(code), code);
  });

  test('the transient set is exactly the documented one', () => {
    assert.deepEqual([...TRANSIENT_NETWORK_CODES].sort(), [
      'EAI_AGAIN',
      'ECONNABORTED',
      'ECONNREFUSED',
      'ECONNRESET',
      'EHOSTDOWN',
      'EHOSTUNREACH',
      'ENETDOWN',
      'ENETUNREACH',
      'EPIPE',
      'ETIMEDOUT',
      'UND_ERR_BODY_TIMEOUT',
      'UND_ERR_CONNECT_TIMEOUT',
      'UND_ERR_HEADERS_TIMEOUT',
      'UND_ERR_SOCKET',
    ]);
    assert.deepEqual([...CONNECT_FAILURE_CODES].sort(), [
      'EAI_AGAIN',
      'ECONNREFUSED',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'UND_ERR_CONNECT_TIMEOUT',
    ]);
  });

  test("undici's own errors, by class", () => {
    assert.equal(isTransientNetworkError(new errors.SocketError('other side closed')), true);
    assert.equal(isTransientNetworkError(new errors.ConnectTimeoutError()), true);
    assert.equal(isConnectFailure(new errors.ConnectTimeoutError()), true);
    assert.equal(isTransientNetworkError(new errors.HeadersTimeoutError()), true);
    assert.equal(isTransientNetworkError(new errors.BodyTimeoutError()), true);
    assert.equal(isConnectFailure(new errors.BodyTimeoutError()), false);
    assert.equal(isTransientNetworkError(new errors.ClientClosedError()), false);
    assert.equal(isTransientNetworkError(new errors.ClientDestroyedError()), false);
    assert.equal(isTransientNetworkError(new errors.InformationalError('x')), false);
    assert.equal(isTransientNetworkError(new errors.RequestAbortedError()), false);
    assert.equal(isTransientNetworkError(new errors.ResponseContentLengthMismatchError()), false);
  });

  test('ENOTFOUND is not transient, so not retried at all', () => {
    const err = coded('ENOTFOUND', { syscall: 'getaddrinfo' });
    assert.equal(isTransientNetworkError(err), false);
    assert.equal(isConnectFailure(err), false);
    assert.equal(isTransientNetworkError(coded('EAI_AGAIN', { syscall: 'getaddrinfo' })), true);
    assert.equal(isConnectFailure(coded('EAI_AGAIN', { syscall: 'getaddrinfo' })), true);
  });

  test('an unreachable host is a connect failure only when the connect failed', () => {
    assert.equal(isConnectFailure(coded('EHOSTUNREACH', { syscall: 'connect' })), true);
    assert.equal(isConnectFailure(coded('EHOSTUNREACH')), true);
    const afterSending = coded('EHOSTUNREACH', { syscall: 'write' });
    assert.equal(isConnectFailure(afterSending), false);
    assert.equal(isTransientNetworkError(afterSending), true);
  });

  test('ETIMEDOUT and ECONNRESET are transient but not connect failures', () => {
    for (const code of ['ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']) {
      assert.equal(isTransientNetworkError(coded(code)), true, code);
      assert.equal(isConnectFailure(coded(code)), false, code);
    }
  });

  test('the first matching code wins, outermost first', () => {
    const err = coded('ECONNRESET', { cause: coded('ECONNREFUSED') });
    assert.equal(errorCode(err, TRANSIENT_NETWORK_CODES), 'ECONNRESET');
    assert.equal(errorCode(err, CONNECT_FAILURE_CODES), 'ECONNREFUSED');
    assert.equal(errorCode(coded('ENOTFOUND', { cause: coded('EPIPE') }), TRANSIENT_NETWORK_CODES), 'EPIPE');
  });

  test('AggregateError.errors are searched, before the cause', () => {
    const inner = new AggregateError([new Error('no code'), coded('ECONNREFUSED')], 'all failed', {
      cause: coded('ECONNRESET'),
    });
    assert.equal(errorCode(inner, TRANSIENT_NETWORK_CODES), 'ECONNREFUSED');
    const wrapped = new TypeError('fetch failed', { cause: inner });
    assert.equal(isConnectFailure(wrapped), true);
  });

  test('the search is bounded at depth 8 and survives cycles', () => {
    let err: Error = coded('ECONNRESET');
    for (let i = 0; i < 7; i++) err = new Error(`wrap ${i}`, { cause: err });
    assert.equal(errorCode(err, TRANSIENT_NETWORK_CODES), 'ECONNRESET', 'depth 7 is found');
    err = new Error('wrap 7', { cause: err });
    assert.equal(errorCode(err, TRANSIENT_NETWORK_CODES), undefined, 'depth 8 is not');

    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    assert.equal(isTransientNetworkError(a), false);
    assert.equal(isCallerAbort(a), false);
    const aggregate = new AggregateError([]);
    (aggregate as { errors: unknown[] }).errors.push(aggregate);
    assert.equal(isTransientNetworkError(aggregate), false);
  });

  test('non-string codes and non-errors are ignored', () => {
    assert.equal(errorCode(new DOMException('x', 'AbortError'), TRANSIENT_NETWORK_CODES), undefined);
    assert.equal(errorCode({ code: 104 }, TRANSIENT_NETWORK_CODES), undefined);
    assert.equal(errorCode({ code: 'ECONNRESET' }, TRANSIENT_NETWORK_CODES), 'ECONNRESET');
    for (const value of [undefined, null, 'ECONNRESET', 42]) {
      assert.equal(isTransientNetworkError(value), false);
      assert.equal(isConnectFailure(value), false);
      assert.equal(isCallerAbort(value), false);
    }
  });

  test('caller aborts: by name, by code, as DOMException, through the cause chain', () => {
    const named = new Error('aborted');
    named.name = 'AbortError';
    assert.equal(isCallerAbort(named), true);
    assert.equal(isCallerAbort(new errors.RequestAbortedError()), true);
    assert.equal(isCallerAbort({ code: 'UND_ERR_ABORTED' }), true);
    assert.equal(isCallerAbort(new DOMException('This operation was aborted', 'AbortError')), true);
    assert.equal(isCallerAbort(new TypeError('fetch failed', { cause: named })), true);
    assert.equal(isCallerAbort(new Error('plain')), false);
  });

  test("the library's own TimeoutError is not a caller abort, even wrapping one", () => {
    const ours = new TimeoutError('attempt', 100);
    assert.equal(ours.name, 'TimeoutError');
    assert.equal(isCallerAbort(ours), false);
    assert.equal(isCallerAbort(new TypeError('fetch failed', { cause: ours })), false);
    const oursAroundAbort = new CircuitOpenError('k', 'open', 1) as Error & { cause?: unknown };
    oursAroundAbort.cause = new DOMException('aborted', 'AbortError');
    assert.equal(isCallerAbort(oursAroundAbort), false, 'the walk stops at an error the library raised');
    const notDomTimeout = new Error('deadline');
    notDomTimeout.name = 'TimeoutError';
    assert.equal(isCallerAbort(notDomTimeout), false, 'only a DOMException named TimeoutError counts');
  });
});

describe('statusClass', () => {
  const cases: Array<[number, string]> = [
    [100, '1xx'],
    [199, '1xx'],
    [200, '2xx'],
    [204, '2xx'],
    [299, '2xx'],
    [301, '3xx'],
    [399, '3xx'],
    [400, '4xx'],
    [404, '4xx'],
    [499, '4xx'],
    [500, '5xx'],
    [503, '5xx'],
    [599, '5xx'],
    [0, '1xx'],
    [600, '5xx'],
  ];
  for (const [status, expected] of cases) {
    test(`${status} → ${expected}`, () => assert.equal(statusClass(status), expected));
  }
});
