import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, type Dispatcher, request } from 'undici';
import {
  type CircuitBreakerOptions,
  CircuitOpenError,
  type CircuitStateChange,
  circuitBreaker,
  isCircuitOpenError,
  pipeline,
  resilient,
  retry,
  timeout,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const statusOf = async (dispatcher: Dispatcher, url: string): Promise<number | string> => {
  try {
    const res = await request(url, { dispatcher });
    await res.body.text();
    return res.statusCode;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
};

describe('circuit breaker', () => {
  let a: Upstream;
  let b: Upstream;
  let dispatcher: Dispatcher;
  before(async () => {
    a = await startUpstream({ kind: 'respond', status: 503 });
    b = await startUpstream({ kind: 'respond', status: 200, body: 'b' });
  });
  after(async () => {
    await a.close();
    await b.close();
  });
  afterEach(async () => {
    await dispatcher?.close();
    a.reset();
    b.reset();
  });

  const use = (options: CircuitBreakerOptions, inner: Parameters<typeof pipeline>[0] = []) => {
    const stage = circuitBreaker(options);
    const interceptor = pipeline([stage, ...inner]);
    dispatcher = resilient(new Agent(), interceptor);
    return { stage, interceptor };
  };

  test('A fails 10 times → A opens, B is still served; while open A sees nothing and callers fail in < 1 ms', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const { stage } = use({ consecutiveFailures: 10, failureRatio: false, halfOpenAfter: 60_000 });
    for (let i = 0; i < 10; i++) assert.equal(await statusOf(dispatcher, a.url('/')), 503);
    assert.equal(stage.state(a.origin), 'open');
    assert.equal(await statusOf(dispatcher, b.url('/')), 200);
    assert.equal(stage.state(b.origin), 'closed');

    const durations: number[] = [];
    for (let i = 0; i < 50; i++) {
      const started = performance.now();
      const error = await request(a.url('/'), { dispatcher }).catch((e: unknown) => e);
      durations.push(performance.now() - started);
      assert.ok(error instanceof CircuitOpenError);
      assert.equal(error.key, a.origin);
      assert.equal(error.state, 'open');
      assert.ok(error.retryAfterMs > 59_000 && error.retryAfterMs <= 60_000);
    }
    durations.sort((x, y) => x - y);
    assert.ok(durations[25]! < 1, `median ${durations[25]} ms`);
    assert.equal(a.count(), 10, 'no request reached A while open');
  });

  test('ratio trigger: 50 % failures over the window with enough calls opens it', async () => {
    let n = 0;
    a.setScript(() => ({ kind: 'respond', status: n++ % 2 === 0 ? 503 : 200 }));
    const { stage } = use({
      consecutiveFailures: false,
      failureRatio: 0.5,
      minimumThroughput: 20,
      window: 60_000,
    });
    for (let i = 0; i < 19; i++) await statusOf(dispatcher, a.url('/'));
    assert.equal(stage.state(a.origin), 'closed', 'below minimumThroughput it stays closed');
    await statusOf(dispatcher, a.url('/'));
    assert.equal(stage.state(a.origin), 'open');
    assert.equal(a.count(), 20);
  });

  test('ratio trigger: below minimumThroughput even 100 % failures do not open it', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const { stage } = use({ consecutiveFailures: false, failureRatio: 0.5, minimumThroughput: 20 });
    for (let i = 0; i < 15; i++) await statusOf(dispatcher, a.url('/'));
    assert.equal(stage.state(a.origin), 'closed');
  });

  test('half-open with 100 concurrent callers: exactly halfOpenProbes reach the server; success closes', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const { stage } = use({
      consecutiveFailures: 2,
      failureRatio: false,
      halfOpenAfter: 100,
      halfOpenProbes: 2,
    });
    await statusOf(dispatcher, a.url('/'));
    await statusOf(dispatcher, a.url('/'));
    assert.equal(stage.state(a.origin), 'open');
    a.reset();
    a.setScript({ kind: 'respond', status: 200, delayMs: 100 });
    await new Promise((r) => setTimeout(r, 120));
    const results = await Promise.all(Array.from({ length: 100 }, () => statusOf(dispatcher, a.url('/'))));
    assert.equal(results.filter((r) => r === 200).length, 2);
    assert.equal(results.filter((r) => r === 'BREAKWATER_CIRCUIT_OPEN').length, 98);
    assert.equal(a.count(), 2);
    assert.equal(stage.state(a.origin), 'closed');
  });

  test('a failed probe reopens it with a longer wait', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const changes: CircuitStateChange[] = [];
    const { stage } = use({
      consecutiveFailures: 1,
      failureRatio: false,
      halfOpenAfter: { initial: 100, max: 1_000 },
    });
    stage.onStateChange((c) => changes.push(c));
    await statusOf(dispatcher, a.url('/'));
    const first = (await request(a.url('/'), { dispatcher }).catch((e: unknown) => e)) as CircuitOpenError;
    assert.ok(first.retryAfterMs <= 100);
    await new Promise((r) => setTimeout(r, 110));
    assert.equal(await statusOf(dispatcher, a.url('/')), 503, 'the probe went through and failed');
    const second = (await request(a.url('/'), { dispatcher }).catch((e: unknown) => e)) as CircuitOpenError;
    assert.ok(second.retryAfterMs > 150 && second.retryAfterMs <= 200, `waits ${second.retryAfterMs} ms`);
    assert.deepEqual(
      changes.map((c) => c.to),
      ['open', 'half_open', 'open'],
    );
  });

  test('a probe that hangs is bounded by the attempt timeout and reopens the circuit', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const { stage } = use({ consecutiveFailures: 1, failureRatio: false, halfOpenAfter: 50 }, [timeout(100)]);
    await statusOf(dispatcher, a.url('/'));
    assert.equal(stage.state(a.origin), 'open');
    a.setScript({ kind: 'hang' });
    await new Promise((r) => setTimeout(r, 60));
    const started = performance.now();
    assert.equal(await statusOf(dispatcher, a.url('/')), 'BREAKWATER_TIMEOUT');
    assert.ok(performance.now() - started < 200);
    assert.equal(stage.state(a.origin), 'open');
  });

  test('404s and 400s never open it; 503, 429, resets and timeouts do', async () => {
    for (const status of [400, 404]) {
      a.setScript({ kind: 'respond', status });
      const { stage } = use({ consecutiveFailures: 3, failureRatio: false });
      for (let i = 0; i < 10; i++) assert.equal(await statusOf(dispatcher, a.url('/')), status);
      assert.equal(stage.state(a.origin), 'closed', `status ${status}`);
      await dispatcher.close();
    }
    const failures = [
      { kind: 'respond', status: 503 },
      { kind: 'respond', status: 429 },
      { kind: 'reset' },
      { kind: 'hang' },
    ] as const;
    for (const behaviour of failures) {
      a.setScript(behaviour);
      const { stage } = use({ consecutiveFailures: 3, failureRatio: false }, [timeout(50)]);
      for (let i = 0; i < 3; i++) await statusOf(dispatcher, a.url('/'));
      assert.equal(stage.state(a.origin), 'open', JSON.stringify(behaviour));
      await dispatcher.close();
    }
  });

  test('with retry outside it: a retry never waits on an open circuit, CircuitOpenError is not retried', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const stage = circuitBreaker({ consecutiveFailures: 2, failureRatio: false, halfOpenAfter: 60_000 });
    dispatcher = resilient(
      new Agent(),
      pipeline([retry({ maxAttempts: 5, backoff: { initialDelay: 1, maxDelay: 1 }, budget: false }), stage]),
    );
    const started = performance.now();
    const error = await request(a.url('/'), { dispatcher }).catch((e: unknown) => e);
    assert.ok(isCircuitOpenError(error), String(error));
    assert.equal((error as { attempts?: number }).attempts, 3, 'two failures, then the open circuit ends it');
    assert.equal(a.count(), 2);
    assert.ok(performance.now() - started < 500);
  });

  test('isolate and reset one key by hand', async () => {
    a.setScript({ kind: 'respond', status: 200 });
    const { stage } = use({});
    stage.isolate(a.origin);
    assert.equal(await statusOf(dispatcher, a.url('/')), 'BREAKWATER_CIRCUIT_OPEN');
    assert.equal(await statusOf(dispatcher, b.url('/')), 200);
    stage.reset(a.origin);
    assert.equal(await statusOf(dispatcher, a.url('/')), 200);
    assert.equal(a.count(), 1);
  });

  test('snapshot and restore: a restored open breaker stays open for the rest of its wait', async () => {
    a.setScript({ kind: 'respond', status: 503 });
    const { stage } = use({ consecutiveFailures: 1, failureRatio: false, halfOpenAfter: 300 });
    await statusOf(dispatcher, a.url('/'));
    const snapshot = JSON.parse(JSON.stringify(stage.toJSON()));
    await dispatcher.close();
    await new Promise((r) => setTimeout(r, 100));

    // A "restarted process": a new stage restored from the snapshot.
    const { stage: restored } = use({ consecutiveFailures: 1, failureRatio: false, halfOpenAfter: 300 });
    restored.restore(snapshot);
    assert.equal(restored.state(a.origin), 'open');
    const error = (await request(a.url('/'), { dispatcher }).catch((e: unknown) => e)) as CircuitOpenError;
    assert.ok(error instanceof CircuitOpenError);
    assert.ok(error.retryAfterMs <= 210, `counted from when it opened: ${error.retryAfterMs} ms left`);
    assert.equal(a.count(), 1);
    a.setScript({ kind: 'respond', status: 200 });
    await new Promise((r) => setTimeout(r, error.retryAfterMs + 20));
    assert.equal(await statusOf(dispatcher, a.url('/')), 200);
    assert.equal(restored.state(a.origin), 'closed');
  });

  test('10,000 keys stay bounded by maxKeys', async () => {
    a.setScript({ kind: 'respond', status: 200 });
    const stage = circuitBreaker({ maxKeys: 100 });
    dispatcher = resilient(new Agent(), pipeline([stage], { key: (opts) => `${opts.origin}${opts.path}` }));
    for (let batch = 0; batch < 100; batch++) {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => statusOf(dispatcher, a.url(`/tenant-${batch * 100 + i}`))),
      );
      assert.ok(stage.breakers.size <= 100, `holds ${stage.breakers.size}`);
    }
    assert.equal(a.count(), 10_000);
  });
});
