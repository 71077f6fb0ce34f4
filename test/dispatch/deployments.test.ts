import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect as connectH2, createServer as createH2Server, constants as h2 } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, type Dispatcher, fetch, interceptors, request } from 'undici';
import { CoreLink } from '../../src/dispatch/core-link.js';
import { isConnectFailure, isTransientNetworkError } from '../../src/http/classify.js';
import {
  bulkhead,
  CircuitOpenError,
  circuitBreaker,
  pipeline,
  prometheusMetrics,
  resilient,
  retry,
  standardPipeline,
  timeout,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Defects found by trying Breakwater as a new user would (behind a CDN, over HTTP/2, under
// WebSockets, with undici's own interceptors); each test is named after one and fails without
// its fix.

const quickRetry = (maxAttempts = 3) =>
  retry({ maxAttempts, backoff: { initialDelay: 5, maxDelay: 20 }, budget: false });

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

describe('a 103 Early Hints response in front of the answer (CDNs send them)', () => {
  let server: Server;
  let origin: string;
  const statuses: number[] = [];
  let seen = 0;
  before(async () => {
    server = createServer((_req, res) => {
      seen++;
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      const status = statuses.shift() ?? 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status === 200 ? 'final' : 'busy');
    });
    origin = await listen(server);
  });
  after(() => stop(server));
  afterEach(() => {
    statuses.length = 0;
    seen = 0;
  });

  for (const mode of ['resilient', 'compose'] as const) {
    const make = (registry?: Registry) => {
      const metrics = registry === undefined ? undefined : prometheusMetrics({ registry });
      const interceptor = pipeline([timeout(2_000), quickRetry()], { metrics });
      return mode === 'resilient' ? resilient(new Agent(), interceptor) : new Agent().compose(interceptor);
    };

    test(`${mode}: request() gets the final response, and the 103 through onInfo`, async (t) => {
      const dispatcher = make();
      t.after(() => dispatcher.destroy());
      const infos: number[] = [];
      const res = await request(`${origin}/`, {
        dispatcher,
        onInfo: ({ statusCode }) => infos.push(statusCode),
      });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'final');
      assert.deepEqual(infos, [103]);
    });

    test(`${mode}: fetch() gets the final response instead of hanging`, async (t) => {
      const dispatcher = make();
      t.after(() => dispatcher.destroy());
      const res = await fetch(`${origin}/`, { dispatcher, signal: AbortSignal.timeout(1_500) });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'final');
    });

    test(`${mode}: a 103 then a 503 is retried, and no attempt is labelled 1xx`, async (t) => {
      const registry = new Registry();
      const dispatcher = make(registry);
      t.after(() => dispatcher.destroy());
      statuses.push(503);
      const res = await request(`${origin}/`, { dispatcher });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'final');
      assert.equal(seen, 2, 'the 503 was retried');
      const text = await registry.metrics();
      assert.doesNotMatch(text, /status_class="1xx"/);
      assert.match(text, /breakwater_attempts_total\{[^}]*status_class="5xx"[^}]*\} 1/);
      assert.match(text, /breakwater_attempts_total\{[^}]*status_class="2xx"[^}]*\} 1/);
    });
  }
});

describe('resilient() is the dispatcher it wraps', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  test("the wrapped Agent's connect and disconnect events, stats, closed and destroyed", async () => {
    const agent = new Agent();
    const dispatcher = resilient(agent, standardPipeline());
    const events: string[] = [];
    dispatcher.on('connect', () => events.push('connect'));
    dispatcher.on('disconnect', () => events.push('disconnect'));
    const res = await request(upstream.url('/'), { dispatcher });
    await res.body.text();
    assert.deepEqual(events, ['connect']);
    assert.deepEqual(dispatcher.stats, agent.stats);
    assert.equal(dispatcher.closed, false);
    await dispatcher.close();
    assert.equal(dispatcher.closed, true);
    assert.equal(dispatcher.destroyed, agent.destroyed);
    assert.deepEqual(events, ['connect', 'disconnect']);
  });

  test("the Agent's WebSocket limit reaches undici's WebSocket: maxPayloadSize of 1 KiB stays 1 KiB", async () => {
    const agent = new Agent({ webSocket: { maxPayloadSize: 1024 } } as ConstructorParameters<
      typeof Agent
    >[0]);
    const dispatcher = resilient(agent, standardPipeline());
    // undici's WebSocket reads exactly this property of the dispatcher it was given.
    const options = dispatcher.webSocketOptions as { maxPayloadSize?: number } | undefined;
    assert.equal(options?.maxPayloadSize, 1024);
    assert.deepEqual(
      dispatcher.eventSourceOptions,
      (agent as { eventSourceOptions?: unknown }).eventSourceOptions,
    );
    await dispatcher.close();
  });

  test("dispatch() returns the wrapped dispatcher's answer", async () => {
    let answered = 0;
    class Busy extends Agent {
      override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
        super.dispatch(opts, handler);
        answered++;
        return false;
      }
    }
    const dispatcher = resilient(new Busy(), pipeline([quickRetry()]));
    let resolve!: () => void;
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    const returned = dispatcher.dispatch(
      { origin: upstream.origin, path: '/', method: 'GET' },
      {
        onRequestStart() {},
        onResponseStart() {},
        onResponseData() {},
        onResponseEnd: () => resolve(),
        onResponseError: () => resolve(),
      },
    );
    await done;
    assert.equal(answered, 1);
    assert.equal(returned, false, 'the busy answer reached the caller');
    await dispatcher.close();
  });
});

describe('HTTP/2 stream resets', () => {
  // Node's own HTTP/2 client and server (h2c on loopback) make the real errors undici passes on.
  async function resetError(code: number): Promise<Error | undefined> {
    const server = createH2Server();
    server.on('stream', (stream) => {
      // The server's side of a stream it resets errors too; only the client's error is of interest.
      stream.on('error', () => {});
      stream.close(code);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const session = connectH2(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const req = session.request({ ':path': '/' });
      req.end();
      let error: Error | undefined;
      req.on('error', (err: Error) => {
        error = err;
      });
      // Not events.once: it rejects when 'error' comes first.
      await new Promise((resolve) => req.on('close', resolve));
      return error;
    } finally {
      session.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  test('REFUSED_STREAM was not processed (RFC 9113 §8.7): retryable for any method', async () => {
    const error = await resetError(h2.NGHTTP2_REFUSED_STREAM);
    assert.equal((error as { code?: string }).code, 'ERR_HTTP2_STREAM_ERROR');
    assert.equal(isTransientNetworkError(error), true);
    assert.equal(isConnectFailure(error), true);
    assert.equal(isConnectFailure(new TypeError('fetch failed', { cause: error })), true);
  });

  test('INTERNAL_ERROR before headers: retryable for idempotent methods only', async () => {
    const error = await resetError(h2.NGHTTP2_INTERNAL_ERROR);
    assert.equal(isTransientNetworkError(error), true);
    assert.equal(isConnectFailure(error), false);
  });

  test('a stream the peer cancelled (CANCEL) is not taken for a transient failure', async () => {
    const error = await resetError(h2.NGHTTP2_CANCEL);
    assert.equal(isTransientNetworkError(error), false);
    assert.equal(isTransientNetworkError(new Error('x', { cause: error })), false);
  });
});

describe('undici interceptors composed inside Breakwater', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test("responseError's ResponseError is classified by its status: retried and counted by the breaker", async (t) => {
    upstream.setScript({ kind: 'respond', status: 503, body: 'down' });
    const breaker = circuitBreaker({ consecutiveFailures: 3 });
    const interceptor = pipeline([quickRetry(3), breaker]);
    const dispatcher = resilient(new Agent().compose(interceptors.responseError()), interceptor);
    t.after(() => dispatcher.destroy());
    const error = await request(upstream.url('/'), { dispatcher }).then(
      () => assert.fail('expected the ResponseError'),
      (err: unknown) => err as { code?: string; statusCode?: number },
    );
    assert.equal(error.code, 'UND_ERR_RESPONSE');
    assert.equal(error.statusCode, 503);
    assert.equal(upstream.count(), 3, 'retried as a 503 would be');
    assert.equal(breaker.state(upstream.origin), 'open', 'three failures counted');
  });
});

describe('a discarded response drains in the background', () => {
  let server: Server;
  let origin: string;
  let connections = 0;
  let seen = 0;
  before(async () => {
    server = createServer((_req, res) => {
      seen++;
      if (seen < 3) {
        // An 8 KB error body whose second half comes 30 ms after the first: longer than the backoff.
        res.writeHead(503, { 'content-length': String(8192) });
        res.write(Buffer.alloc(4096, 97));
        setTimeout(() => res.end(Buffer.alloc(4096, 98)), 30);
      } else {
        res.end('ok');
      }
    });
    server.on('connection', () => connections++);
    origin = await listen(server);
  });
  after(() => stop(server));

  test('a short backoff does not cut the drain: three attempts over connections: 1 use one connection', async (t) => {
    const dispatcher = resilient(new Agent({ connections: 1 }), pipeline([quickRetry(3)]));
    t.after(() => dispatcher.destroy());
    const res = await request(`${origin}/`, { dispatcher });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok');
    assert.equal(seen, 3);
    assert.equal(connections, 1, 'each discarded body was read to its end and the socket reused');
  });
});

describe('per-key maps', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  test('key maps shrink back to maxKeys once a burst of busy keys goes idle', async (t) => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 50 });
    const slots = bulkhead({ maxConcurrent: 1, maxQueue: 0, maxKeys: 50 });
    const breaker = circuitBreaker({ maxKeys: 50 });
    const interceptor = pipeline([quickRetry(), breaker, slots], {
      key: (opts) => String((opts.headers as Record<string, string>)['x-tenant']),
    });
    const dispatcher = resilient(new Agent({ connections: 100 }), interceptor);
    t.after(() => dispatcher.destroy());
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        request(upstream.url('/'), { dispatcher, headers: { 'x-tenant': `t${i}` } }).then((r) =>
          r.body.text(),
        ),
      ),
    );
    assert.equal(upstream.count(), 100, 'every key had its request in flight at once');
    assert.ok(slots.states.size <= 50, `bulkhead keys: ${slots.states.size}`);
    assert.ok(breaker.breakers.size <= 50, `breaker keys: ${breaker.breakers.size}`);
  });
});

describe('a request leaving a queue meets the circuit as it is then', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  test('requests waiting in the bulkhead are not sent to an upstream whose circuit opened', async (t) => {
    upstream.setScript({ kind: 'respond', status: 503, body: 'down', delayMs: 10 });
    const interceptor = standardPipeline({
      retry: false,
      bulkhead: { maxConcurrent: 2 },
      circuitBreaker: { consecutiveFailures: 4 },
    });
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.destroy());
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () =>
        request(upstream.url('/'), { dispatcher }).then(
          async (r) => {
            await r.body.text();
            return r.statusCode;
          },
          (err: unknown) => (err instanceof CircuitOpenError ? 'open' : String(err)),
        ),
      ),
    );
    // The 4th failure opens it; at most the two then in flight (admitted while closed) still go.
    assert.ok(upstream.count() <= 6, `the upstream saw ${upstream.count()} of 20`);
    assert.equal(outcomes.filter((o) => o === 'open').length, 20 - upstream.count());
    assert.ok(outcomes.every((o) => o === 503 || o === 'open'));
  });
});

describe('one definition of a failing status', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test("the retry stage's statuses are what the breaker and requests_total call failures", async (t) => {
    const registry = new Registry();
    const breaker = circuitBreaker({ consecutiveFailures: 2 });
    const interceptor = pipeline([retry({ maxAttempts: 1, statuses: [502] }), breaker], {
      metrics: prometheusMetrics({ registry }),
    });
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.destroy());
    const send = async () => (await request(upstream.url('/'), { dispatcher })).body.text();
    upstream.setScript({ kind: 'respond', status: 503, body: 'not ours to count' });
    await send();
    await send();
    assert.equal(breaker.state(upstream.origin), 'closed', '503 is not in statuses: no failure');
    assert.match(await registry.metrics(), /breakwater_requests_total\{[^}]*outcome="success"[^}]*\} 2/);
    upstream.setScript({ kind: 'respond', status: 502, body: 'bad gateway' });
    await send();
    await send();
    assert.equal(breaker.state(upstream.origin), 'open', '502 is: two in a row open it');
    assert.match(await registry.metrics(), /breakwater_requests_total\{[^}]*outcome="failure"[^}]*\} 2/);
  });
});

describe('the handler API of the dispatcher underneath', () => {
  test('a dispatcher that refuses legacy handlers is recognised by its error code, whatever the message', () => {
    const link = new CoreLink(() => true, false);
    link.legacy = true;
    const refusal = Object.assign(new Error('a message in another words'), { code: 'UND_ERR_INVALID_ARG' });
    assert.equal(link.refusedLegacy(refusal, true), false, 'not once the handler was called');
    assert.equal(link.legacy, true);
    assert.equal(
      link.refusedLegacy(new Error('invalid onRequestStart'), false),
      false,
      'no code: not a refusal',
    );
    assert.equal(link.refusedLegacy(refusal, false), true);
    assert.equal(link.legacy, false, 'later attempts speak the current API');
  });
});

describe('pipeline lifecycle', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  test("a closed pipeline's breaker subscription is disposed: its metrics hear nothing more", async () => {
    upstream.setScript({ kind: 'respond', status: 503, body: 'down' });
    const breaker = circuitBreaker({ consecutiveFailures: 1 });
    const first = new Registry();
    const closed = pipeline([breaker], { metrics: prometheusMetrics({ registry: first }) });
    await closed.close();
    const dispatcher = resilient(new Agent(), pipeline([breaker]));
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    await dispatcher.close();
    assert.equal(breaker.state(upstream.origin), 'open');
    assert.doesNotMatch(await first.metrics(), /breakwater_circuit_transitions_total\{[^}]*\} [1-9]/);
  });
});
