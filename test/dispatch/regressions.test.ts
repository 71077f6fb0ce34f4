import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, afterEach, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request, upgrade } from 'undici';
import {
  bulkhead,
  circuitBreaker,
  InvalidOptionError,
  pipeline,
  prometheusMetrics,
  resilient,
  retry,
  timeout,
} from '../../src/index.js';
import { runScript } from '../helpers/child.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Each test is named after a bug found in review and fails without its fix.

describe('regressions', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test('a URL origin edited between requests is resolved again, not reused from the last request', async (t) => {
    const other = await startUpstream();
    t.after(() => other.close());
    const interceptor = pipeline([bulkhead({ maxConcurrent: 4, maxQueue: 0 })]);
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.destroy());
    // Dispatcher#request hands `opts` to dispatch() as given, so the same URL object arrives twice.
    const origin = new URL(upstream.origin);
    await (await dispatcher.request({ origin, path: '/', method: 'GET' })).body.text();
    origin.port = new URL(other.origin).port;
    await (await dispatcher.request({ origin, path: '/', method: 'GET' })).body.text();
    assert.equal(upstream.count(), 1);
    assert.equal(other.count(), 1);
    assert.deepEqual(Object.keys(interceptor.health()).sort(), [upstream.origin, other.origin].sort());
  });

  test('a key function that dispatches to another origin does not move the outer request to its metrics', async (t) => {
    const other = await startUpstream();
    t.after(() => other.close());
    const registry = new Registry();
    let dispatcher: ReturnType<typeof resilient> | undefined;
    const inner: Promise<unknown>[] = [];
    const key = (opts: { origin?: unknown }): string => {
      const origin = String(opts.origin);
      // The first request, to `upstream`, sends one to `other` from inside its key function.
      if (origin === upstream.origin && inner.length === 0) {
        inner.push(request(other.url('/'), { dispatcher }).then((r) => r.body.text()));
      }
      return origin;
    };
    dispatcher = resilient(
      new Agent(),
      pipeline([retry()], { metrics: prometheusMetrics({ registry }), key }),
    );
    t.after(() => dispatcher?.destroy());
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    await Promise.all(inner);
    const counted = (await registry.getSingleMetric('breakwater_requests_total')?.get())?.values ?? [];
    assert.deepEqual(
      counted.map((v) => [v.labels.origin, v.value]).sort(),
      [
        [other.origin, 1],
        [upstream.origin, 1],
      ].sort(),
    );
  });

  test('upgrade() through resilient() reaches the caller instead of hanging', async (t) => {
    const server = createServer();
    server.on('upgrade', (_req, socket) => {
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => new Promise((r) => server.close(r)));
    const { port } = server.address() as { port: number };
    const dispatcher = resilient(new Agent(), pipeline([timeout(1_000), retry()]));
    t.after(() => dispatcher.destroy());
    const result = await upgrade(`http://127.0.0.1:${port}/`, {
      dispatcher,
      protocol: 'echo',
      signal: AbortSignal.timeout(2_000),
    });
    assert.equal(result.headers.upgrade, 'echo');
    result.socket.destroy();
  });

  test('a discarded response that stalls does not hold its bulkhead slot through the backoff', async (t) => {
    upstream.setScript((req) =>
      req.path === '/stall'
        ? { kind: 'trickle', status: 503, intervalMs: 50, count: 100 }
        : { kind: 'respond', status: 200, body: 'other' },
    );
    const interceptor = pipeline([
      retry({ maxAttempts: 2, backoff: { initialDelay: 1_500, maxDelay: 1_500 } }),
      bulkhead({ maxConcurrent: 1, maxQueue: 5 }),
    ]);
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.destroy());
    const stalled = request(upstream.url('/stall'), { dispatcher }).catch(() => undefined);
    await upstream.waitForRequests(1, 1_000);
    const started = performance.now();
    const res = await request(upstream.url('/other'), { dispatcher });
    assert.equal(await res.body.text(), 'other');
    assert.ok(performance.now() - started < 500, `waited ${performance.now() - started} ms for a slot`);
    void stalled;
  });

  test('destroy() reaches every live request, even when aborting one settles another', async () => {
    upstream.setScript({ kind: 'respond', status: 503, delayMs: 50 });
    const interceptor = pipeline([
      retry({ maxAttempts: 3, budget: false, backoff: { initialDelay: 10_000, maxDelay: 10_000 } }),
      bulkhead({ maxConcurrent: 1, maxQueue: 10 }),
      circuitBreaker({ consecutiveFailures: 1, failureRatio: false, halfOpenAfter: 60_000 }),
    ]);
    const dispatcher = resilient(new Agent(), interceptor);
    const sleeping = request(upstream.url('/a'), { dispatcher }).catch((e: unknown) => e);
    await upstream.waitForRequests(1, 1_000);
    await new Promise((r) => setTimeout(r, 100));
    const more = Array.from({ length: 3 }, () =>
      request(upstream.url('/b'), { dispatcher }).catch((e: unknown) => e),
    );
    const started = performance.now();
    await dispatcher.destroy();
    const errors = await Promise.all([sleeping, ...more]);
    assert.ok(performance.now() - started < 100, 'all settled at once');
    for (const e of errors) assert.ok(e instanceof Error);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(upstream.count(), 1, 'nothing woke up later to try again');
  });

  test('per-request overrides are validated: a bad value fails that request, naming it', async (t) => {
    upstream.setScript({ kind: 'respond', status: 200 });
    const dispatcher = resilient(new Agent(), pipeline([timeout(1_000), retry(), timeout(500)]));
    t.after(() => dispatcher.close());
    const cases: Array<[object, string]> = [
      [{ totalTimeout: 3e9 }, 'breakwater.totalTimeout'],
      [{ attemptTimeout: 0 }, 'breakwater.attemptTimeout'],
      [{ totalTimeout: '5000' }, 'breakwater.totalTimeout'],
      [{ maxAttempts: 0 }, 'breakwater.maxAttempts'],
    ];
    for (const [breakwater, path] of cases) {
      const error = await request(upstream.url('/'), { dispatcher, ...({ breakwater } as object) }).catch(
        (e: unknown) => e,
      );
      assert.ok(error instanceof InvalidOptionError, `${JSON.stringify(breakwater)}: ${String(error)}`);
      assert.ok(error.message.includes(path), error.message);
    }
    assert.equal(upstream.count(), 0);
  });

  test('a bad attemptTimeout override on a request that waited for a slot fails that request only', async (t) => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 50 });
    const interceptor = pipeline([retry(), bulkhead({ maxConcurrent: 1, maxQueue: 1 }), timeout(500)]);
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.close());
    const first = request(upstream.url('/'), { dispatcher });
    // It queues behind the first, and its override is read only when it gets the slot.
    const second = request(upstream.url('/'), {
      dispatcher,
      ...({ breakwater: { attemptTimeout: 0 } } as object),
    }).catch((e: unknown) => e);
    const res = await first;
    assert.equal(await res.body.text(), 'ok', 'the request that freed the slot is unharmed');
    const error = await second;
    assert.ok(error instanceof InvalidOptionError && error.message.includes('breakwater.attemptTimeout'));
    assert.equal(upstream.count(), 1);
    const health = interceptor.health()[upstream.origin];
    assert.equal(health?.inFlight, 0, 'no slot left taken');
    assert.equal(health?.queued, 0);
  });

  test('a process whose only pending work is a request in backoff stays alive and finishes it', async () => {
    let calls = 0;
    const server = createServer((_req, res) => {
      calls++;
      res.writeHead(calls === 1 ? 503 : 200).end(calls === 1 ? 'busy' : 'done');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as { port: number };
      const run = await runScript('test/fixtures/retry-then-exit.ts', [`http://127.0.0.1:${port}/`], 15_000);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), { status: 200, body: 'done' });
      assert.equal(calls, 2);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
