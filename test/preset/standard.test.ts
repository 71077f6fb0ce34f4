import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, type Dispatcher, request } from 'undici';
import {
  BulkheadStage,
  CircuitBreakerStage,
  InvalidOptionError,
  type RequestOverrides,
  RetryStage,
  resilient,
  type StandardPipelineOptions,
  standardPipeline,
  TimeoutError,
  TimeoutStage,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// The preset as SPEC's "Defaults of standardPipeline" table states it, read back from the stages
// it built, then checked against a real upstream: what the server received, what the caller got.

/** `request()`'s options have no `breakwater` field in undici's types; a spread carries it. */
const override = (breakwater: RequestOverrides): { breakwater: RequestOverrides } => ({ breakwater });

const kinds = (options?: StandardPipelineOptions): string[] =>
  standardPipeline(options).stages.map((s) => (s instanceof TimeoutStage ? `timeout:${s.until}` : s.kind));

describe('standardPipeline defaults', () => {
  const [total, retryStage, breaker, bulkheadStage, attempt] = standardPipeline().stages;

  test('five stages, outermost first: total timeout → retry → circuit breaker → bulkhead → attempt timeout', () => {
    assert.ok(total instanceof TimeoutStage);
    assert.ok(retryStage instanceof RetryStage);
    assert.ok(breaker instanceof CircuitBreakerStage);
    assert.ok(bulkheadStage instanceof BulkheadStage);
    assert.ok(attempt instanceof TimeoutStage);
  });

  test('total timeout: 30 s through the end of the body', () => {
    assert.ok(total instanceof TimeoutStage);
    assert.equal(total.ms, 30_000);
    assert.equal(total.until, 'end');
  });

  test('attempt timeout: 10 s to the response headers', () => {
    assert.ok(attempt instanceof TimeoutStage);
    assert.equal(attempt.ms, 10_000);
    assert.equal(attempt.until, 'headers');
  });

  test('retry: 3 attempts, statuses 408 429 500 502 503 504, Retry-After up to 30 s, idempotent methods', () => {
    assert.ok(retryStage instanceof RetryStage);
    assert.equal(retryStage.maxAttempts, 3);
    assert.deepEqual([...retryStage.statuses], [408, 429, 500, 502, 503, 504]);
    assert.equal(retryStage.maxRetryAfter, 30_000);
    assert.deepEqual(
      [...retryStage.methods].sort(),
      ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PUT', 'QUERY', 'TRACE'].sort(),
    );
  });

  test('retry backoff: decorrelated jitter from 100 ms, capped at 10 s', () => {
    assert.ok(retryStage instanceof RetryStage);
    // The backoff keeps its options private, so read them off the delays it produces. With
    // initialDelay 100 the first delay lies in [0, 100 × 2·tanh(2) / 1.4 ≈ 137.7) and a quarter of
    // them exceed 110; initialDelay 50 or 200 would fail one of the two checks.
    const firsts = Array.from({ length: 400 }, () => retryStage.backoff.first().delay);
    assert.ok(Math.max(...firsts) < 137.8, `first delays below 137.8 ms (max ${Math.max(...firsts)})`);
    assert.ok(
      firsts.some((d) => d > 110),
      'some first delays exceed 110 ms',
    );
    // Far enough along, the exponential passes the cap and the cap itself is the delay.
    let step = retryStage.backoff.first();
    for (let i = 0; i < 20; i++) step = step.next();
    assert.equal(step.delay, 10_000);
  });

  test('retry budget: 20 % of requests + 10 retries/s over a 10 s window, per key', () => {
    assert.ok(retryStage instanceof RetryStage);
    assert.ok(retryStage.budgets !== null, 'a budget by default');
    // The budget takes time as an argument, so a private key on a made-up clock reads it exactly.
    const budget = retryStage.budgets.get('test:budget-defaults');
    assert.equal(budget.remaining(0), 100, 'the floor: 10/s × 10 s');
    for (let i = 0; i < 50; i++) budget.recordRequest(0);
    assert.equal(budget.remaining(0), 110, '+ 0.2 × 50 requests');
    assert.equal(budget.remaining(10_999), 100, 'the requests have left the 10 s window');
    retryStage.budgets.delete('test:budget-defaults');
  });

  test('circuit breaker: 10 consecutive, or 50 % over 30 s with ≥ 20 calls; half-open after 5 s growing to 60 s; 1 probe', () => {
    assert.ok(breaker instanceof CircuitBreakerStage);
    assert.deepEqual(breaker.options, {
      consecutiveFailures: 10,
      failureRatio: 0.5,
      window: 30_000,
      minimumThroughput: 20,
      halfOpenAfter: { initial: 5_000, max: 60_000 },
      halfOpenProbes: 1,
    });
  });

  test('bulkhead: 64 in flight, 1024 queued, per key', () => {
    assert.ok(bulkheadStage instanceof BulkheadStage);
    assert.equal(bulkheadStage.maxConcurrent, 64);
    assert.equal(bulkheadStage.maxQueue, 1024);
  });

  test('a stage given options keeps the preset defaults for the fields left out', () => {
    const [, r, cb, bh] = standardPipeline({
      retry: { maxAttempts: 5 },
      circuitBreaker: { consecutiveFailures: 3 },
      bulkhead: { maxQueue: 0 },
    }).stages;
    assert.ok(r instanceof RetryStage && cb instanceof CircuitBreakerStage && bh instanceof BulkheadStage);
    assert.equal(r.maxAttempts, 5);
    assert.equal(r.maxRetryAfter, 30_000);
    assert.equal(cb.options.consecutiveFailures, 3);
    assert.deepEqual(cb.options.halfOpenAfter, { initial: 5_000, max: 60_000 });
    assert.equal(bh.maxConcurrent, 64);
    assert.equal(bh.maxQueue, 0);
  });

  test('timeouts take milliseconds or { ms, until }', () => {
    const [t, , , , a] = standardPipeline({
      totalTimeout: { ms: 5_000, until: 'headers' },
      attemptTimeout: 1_000,
    }).stages;
    assert.ok(t instanceof TimeoutStage && a instanceof TimeoutStage);
    assert.deepEqual([t.ms, t.until, a.ms, a.until], [5_000, 'headers', 1_000, 'headers']);
  });
});

describe('standardPipeline: false drops a stage', () => {
  const all = ['timeout:end', 'retry', 'circuitBreaker', 'bulkhead', 'timeout:headers'];
  const cases: Array<[keyof StandardPipelineOptions, string]> = [
    ['totalTimeout', 'timeout:end'],
    ['retry', 'retry'],
    ['circuitBreaker', 'circuitBreaker'],
    ['bulkhead', 'bulkhead'],
    ['attemptTimeout', 'timeout:headers'],
  ];
  for (const [option, kind] of cases) {
    test(`${option}: false`, () => {
      assert.deepEqual(
        kinds({ [option]: false }),
        all.filter((k) => k !== kind),
      );
    });
  }

  test('every stage false leaves an empty pipeline', () => {
    assert.deepEqual(
      kinds({
        totalTimeout: false,
        retry: false,
        circuitBreaker: false,
        bulkhead: false,
        attemptTimeout: false,
      }),
      [],
    );
  });
});

describe('standardPipeline: combinations are validated at construction', () => {
  test('attemptTimeout > totalTimeout throws InvalidOptionError naming attemptTimeout', () => {
    assert.throws(
      () => standardPipeline({ totalTimeout: 1_000, attemptTimeout: 2_000 }),
      (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError, String(err));
        assert.equal(err.code, 'BREAKWATER_INVALID_OPTION');
        assert.equal(err.path, 'attemptTimeout');
        assert.match(err.message, /attemptTimeout/);
        assert.match(err.message, /1000/, 'the message says what the limit was');
        assert.match(err.message, /got 2000/);
        return true;
      },
    );
  });

  test('the default attempt timeout (10 s) above a shorter total timeout is refused too', () => {
    assert.throws(() => standardPipeline({ totalTimeout: 5_000 }), { path: 'attemptTimeout' });
  });

  test('{ ms } forms are compared the same way', () => {
    assert.throws(() => standardPipeline({ totalTimeout: { ms: 100 }, attemptTimeout: { ms: 101 } }), {
      path: 'attemptTimeout',
    });
  });

  test('equal timeouts, or either one dropped, are accepted', () => {
    standardPipeline({ totalTimeout: 1_000, attemptTimeout: 1_000 });
    standardPipeline({ totalTimeout: false, attemptTimeout: 60_000 });
    standardPipeline({ totalTimeout: 1_000, attemptTimeout: false });
  });

  test('a bad value inside a stage names its path', () => {
    assert.throws(() => standardPipeline({ attemptTimeout: { ms: -1 } }), { path: 'attemptTimeout.ms' });
    assert.throws(() => standardPipeline({ retry: { maxAttempts: 0 } }), { path: 'retry.maxAttempts' });
    assert.throws(() => standardPipeline({ bulkhead: { maxConcurrent: 0 } }), {
      path: 'bulkhead.maxConcurrent',
    });
  });
});

describe('standardPipeline against a real upstream', () => {
  let upstream: Upstream;
  let dispatcher: Dispatcher | undefined;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(async () => {
    await dispatcher?.close();
    dispatcher = undefined;
  });

  /** A fresh dispatcher per test (breaker and budget state start clean), with quick backoffs. */
  const use = (options: StandardPipelineOptions = {}): Dispatcher => {
    upstream.reset();
    dispatcher = resilient(
      new Agent(),
      standardPipeline({ retry: { backoff: { initialDelay: 5, maxDelay: 20 } }, ...options }),
    );
    return dispatcher;
  };

  const flaky503 = () =>
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);

  test('503, 503, 200 → the caller gets 200; the upstream saw 3 requests', async () => {
    const d = use();
    flaky503();
    const res = await request(upstream.url('/'), { dispatcher: d });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok');
    assert.equal(upstream.count(), 3);
  });

  test('with the real default backoff (100 ms initial) too', async () => {
    upstream.reset();
    dispatcher = resilient(new Agent(), standardPipeline());
    flaky503();
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.equal(upstream.count(), 3);
  });

  test('retry: false → the first 503 is the answer, one upstream request', async () => {
    const d = use({ retry: false });
    flaky503();
    const res = await request(upstream.url('/'), { dispatcher: d });
    assert.equal(res.statusCode, 503);
    assert.equal(await res.body.text(), 'busy');
    assert.equal(upstream.count(), 1);
  });

  test('health() reports the key the request used', async () => {
    upstream.reset();
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
    const interceptor = standardPipeline();
    dispatcher = resilient(new Agent(), interceptor);
    await (await request(upstream.url('/'), { dispatcher })).body.dump();
    const health = interceptor.health()[upstream.origin];
    assert.ok(health, `a health entry for ${upstream.origin}`);
    assert.equal(health.circuit, 'closed');
    assert.equal(health.inFlight, 0);
    assert.equal(health.queued, 0);
    assert.equal(typeof health.retryBudgetLeft, 'number');
  });

  describe('per-request overrides (the breakwater dispatch option)', () => {
    test('a different totalTimeout for one call: hang → TimeoutError with that ms', async () => {
      const d = use();
      upstream.setScript({ kind: 'hang' });
      const started = performance.now();
      const error = await request(upstream.url('/'), {
        dispatcher: d,
        ...override({ totalTimeout: 150 }),
      }).catch((e: unknown) => e);
      assert.ok(error instanceof TimeoutError, `got ${String(error)}`);
      assert.equal(error.scope, 'total');
      assert.equal(error.ms, 150);
      assert.ok(performance.now() - started < 5_000, 'long before the 10 s attempt timeout');
      // The next call without the override still has the preset's 30 s: a 300 ms answer arrives.
      upstream.setScript({ kind: 'respond', status: 200, body: 'late', delayMs: 300 });
      const res = await request(upstream.url('/'), { dispatcher: d });
      assert.equal(await res.body.text(), 'late');
    });

    test('a different attemptTimeout for one call: the hung attempt is cut and retried', async () => {
      const d = use();
      upstream.setScript([{ kind: 'hang' }, { kind: 'respond', status: 200, body: 'second' }]);
      const res = await request(upstream.url('/'), { dispatcher: d, ...override({ attemptTimeout: 100 }) });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'second');
      assert.equal(upstream.count(), 2);
    });

    test('maxAttempts: 1 for one call → one upstream request, the 503 returned', async () => {
      const d = use();
      flaky503();
      const res = await request(upstream.url('/'), { dispatcher: d, ...override({ maxAttempts: 1 }) });
      assert.equal(res.statusCode, 503);
      await res.body.dump();
      assert.equal(upstream.count(), 1);
      // The preset's 3 attempts still hold for the next call (script continues: 503, then 200).
      const next = await request(upstream.url('/'), { dispatcher: d });
      assert.equal(next.statusCode, 200);
      await next.body.dump();
      assert.equal(upstream.count(), 3);
    });

    test('a POST is not retried by default', async () => {
      const d = use();
      flaky503();
      const res = await request(upstream.url('/orders'), { dispatcher: d, method: 'POST', body: 'order' });
      assert.equal(res.statusCode, 503);
      await res.body.dump();
      assert.equal(upstream.count({ method: 'POST' }), 1);
    });

    test('one POST opted into retries with { idempotent: true } → 200 after 3 requests, same body each time', async () => {
      const d = use();
      flaky503();
      const res = await request(upstream.url('/orders'), {
        dispatcher: d,
        method: 'POST',
        body: 'order',
        ...override({ idempotent: true }),
      });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(upstream.count({ method: 'POST' }), 3);
      assert.deepEqual(
        upstream.requests.map((r) => r.body.toString()),
        ['order', 'order', 'order'],
      );
    });

    test('a POST with an Idempotency-Key header is retried without an opt-in', async () => {
      const d = use();
      flaky503();
      const res = await request(upstream.url('/orders'), {
        dispatcher: d,
        method: 'POST',
        headers: { 'idempotency-key': 'order-1' },
        body: 'order',
      });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
      assert.equal(upstream.count({ method: 'POST' }), 3);
    });
  });
});
