import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, afterEach, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, fetch, request } from 'undici';
import {
  InvalidOptionError,
  isRateLimitedError,
  pipeline,
  prometheusMetrics,
  RateLimitedError,
  rateLimit,
  resilient,
  retry,
  standardPipeline,
  timeout,
} from '../../src/index.js';
import { elapsed } from '../helpers/timing.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

/** The most arrival times that fall in any window [t, t + ms). */
export function maxInWindow(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! <= sorted[i]! - ms) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}

describe('rateLimit', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok' });
  });
  after(() => upstream.close());
  afterEach(() => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
    upstream.reset();
  });

  test('perSecond 50, burst 10: 200 at once all succeed in about 4 s; no second of the server sees more than 60', async (t) => {
    // Ten connections opened beforehand: what is measured is the limiter, not how long the
    // burst's TCP handshakes take (they delay the burst's arrival into the next tokens' second).
    const agent = new Agent();
    await Promise.all(
      Array.from({ length: 10 }, () =>
        request(upstream.url('/'), { dispatcher: agent }).then((r) => r.body.text()),
      ),
    );
    upstream.reset();
    const dispatcher = resilient(agent, pipeline([rateLimit({ perSecond: 50, burst: 10, maxWait: 30_000 })]));
    t.after(() => dispatcher.close());
    // When each request was let through, as breakwater:attempt:start tells it.
    const sent: number[] = [];
    const onStart = () => sent.push(performance.now());
    subscribe('breakwater:attempt:start', onStart);
    t.after(() => unsubscribe('breakwater:attempt:start', onStart));
    const run = await elapsed(() =>
      Promise.all(
        Array.from({ length: 200 }, () =>
          request(upstream.url('/'), { dispatcher }).then((r) => r.body.text()),
        ),
      ),
    );
    assert.equal(run.error, undefined);
    assert.equal(run.value!.length, 200);
    assert.equal(upstream.count(), 200);
    // The last of 200 is due at (200 - 10) × 20 ms = 3.8 s.
    assert.ok(run.ms >= 3_600, `all done after ${run.ms} ms: too early for 50/s`);
    assert.ok(run.ms < 6_000, `all done after ${run.ms} ms`);
    assert.equal(sent.length, 200);
    const released = maxInWindow(sent, 1_000);
    assert.ok(released <= 60, `${released} requests were let through in one second`);
    // The server runs in this process: the burst reaches it a loop turn or two after it was let
    // through, while the requests after it are each one interval apart. That lag can bring one
    // more request into the burst's second, never more: nothing after the burst is sent closer
    // together than one interval, even when a timer fires late.
    const max = maxInWindow(
      upstream.requests.map((r) => r.receivedAt),
      1_000,
    );
    assert.ok(max <= 61, `the server saw ${max} requests in one second`);
  });

  test('maxWait 0: the excess fails at once with RateLimitedError and a retryAfterMs; the server never sees it', async (t) => {
    const dispatcher = resilient(new Agent(), pipeline([rateLimit({ perSecond: 10, burst: 5, maxWait: 0 })]));
    t.after(() => dispatcher.close());
    const started = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => request(upstream.url('/'), { dispatcher }).then((r) => r.body.text())),
    );
    const refusedAfter = performance.now() - started;
    const refused = results
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason);
    assert.equal(refused.length, 15);
    assert.equal(upstream.count(), 5);
    assert.ok(refusedAfter < 500, `settled after ${refusedAfter} ms`);
    for (const error of refused) {
      assert.ok(error instanceof RateLimitedError);
      assert.equal(error.code, 'BREAKWATER_RATE_LIMITED');
      assert.equal(error.key, upstream.origin);
      // The next token comes 100 ms after the burst; the refused ones took no turn.
      assert.ok(error.retryAfterMs > 50 && error.retryAfterMs <= 100, `retryAfterMs ${error.retryAfterMs}`);
    }
    // Seen through fetch's TypeError too.
    const viaFetch = await fetch(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    assert.ok(viaFetch instanceof TypeError);
    assert.ok(isRateLimitedError(viaFetch));
    assert.ok(!isRateLimitedError(new Error('x')));
  });

  test("the library's own refusal is never retried, and counts as outcome rate_limited on breakwater:rejected", async (t) => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const dispatcher = resilient(
      new Agent(),
      standardPipeline({ metrics, rateLimit: { perSecond: 1, burst: 1, maxWait: 0 } }),
    );
    t.after(() => dispatcher.close());
    const seen: unknown[] = [];
    const onRejected = (message: unknown) => seen.push(message);
    subscribe('breakwater:rejected', onRejected);
    t.after(() => unsubscribe('breakwater:rejected', onRejected));
    await request(upstream.url('/'), { dispatcher }).then((r) => r.body.text());
    const error = await request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    assert.ok(error instanceof RateLimitedError);
    assert.equal((error as Error & { attempts?: number }).attempts, 1);
    assert.equal(upstream.count(), 1);
    assert.deepEqual(seen, [{ key: upstream.origin, reason: 'rate_limit' }]);
    const text = await registry.metrics();
    assert.match(text, /breakwater_requests_total\{[^}]*outcome="rate_limited"[^}]*\} 1/);
  });

  test('a request waiting for its turn leaves at once when its caller aborts, or its deadline passes', async (t) => {
    const dispatcher = resilient(
      new Agent(),
      pipeline([timeout(300), rateLimit({ perSecond: 0.5, burst: 1, maxWait: 10_000 })]),
    );
    t.after(() => dispatcher.close());
    await request(upstream.url('/'), { dispatcher }).then((r) => r.body.text());
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('caller gave up')), 100);
    const aborted = await elapsed(() =>
      request(upstream.url('/'), { dispatcher, signal: controller.signal }),
    );
    assert.match(String(aborted.error), /caller gave up/);
    assert.ok(aborted.ms < 250, `left after ${aborted.ms} ms`);
    const late = await elapsed(() => request(upstream.url('/'), { dispatcher }));
    assert.equal((late.error as Error).name, 'TimeoutError');
    assert.ok(late.ms >= 280 && late.ms < 600, `timed out after ${late.ms} ms`);
    assert.equal(upstream.count(), 1);
  });

  test('a 429 with Retry-After: 1 pauses the key: the next requests wait about 1 s instead of reaching the upstream', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 429, headers: { 'retry-after': '1' } },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const dispatcher = resilient(
      new Agent(),
      pipeline([rateLimit({ perSecond: 100, burst: 20, maxWait: 5_000 })]),
    );
    t.after(() => dispatcher.close());
    const first = await request(upstream.url('/'), { dispatcher });
    await first.body.text();
    assert.equal(first.statusCode, 429);
    const refusedAt = upstream.requests[0]!.receivedAt;
    const next = await Promise.all(
      Array.from({ length: 5 }, () => request(upstream.url('/'), { dispatcher }).then((r) => r.statusCode)),
    );
    assert.deepEqual(next, [200, 200, 200, 200, 200]);
    assert.equal(upstream.count(), 6);
    for (const r of upstream.requests.slice(1)) {
      const after = r.receivedAt - refusedAt;
      assert.ok(after >= 950 && after < 2_000, `a request reached the upstream ${after} ms after the 429`);
    }
    // Through fetch (parsed headers), with maxWait 0: refused at once with the pause as retryAfterMs.
    upstream.setScript([
      { kind: 'respond', status: 429, headers: { 'retry-after': '1' } },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    upstream.reset();
    const strict = resilient(new Agent(), pipeline([rateLimit({ perSecond: 100, burst: 20, maxWait: 0 })]));
    t.after(() => strict.close());
    assert.equal((await fetch(upstream.url('/'), { dispatcher: strict })).status, 429);
    const refused = await fetch(upstream.url('/'), { dispatcher: strict }).catch((e: unknown) => e);
    assert.ok(isRateLimitedError(refused));
    const cause = (refused as { cause: RateLimitedError }).cause;
    assert.ok(cause.retryAfterMs > 800 && cause.retryAfterMs <= 1_010, `retryAfterMs ${cause.retryAfterMs}`);
    assert.equal(upstream.count(), 1);
  });

  test('X-RateLimit-Remaining 0 with a reset pauses the key; fromResponses: false ignores it', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 200, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1' } },
      { kind: 'respond', status: 200 },
    ]);
    const learning = resilient(new Agent(), pipeline([rateLimit({ perSecond: 100, maxWait: 0 })]));
    t.after(() => learning.close());
    await request(upstream.url('/'), { dispatcher: learning }).then((r) => r.body.text());
    assert.ok(isRateLimitedError(await request(upstream.url('/'), { dispatcher: learning }).catch((e) => e)));
    upstream.reset();
    const deaf = resilient(
      new Agent(),
      pipeline([rateLimit({ perSecond: 100, maxWait: 0, fromResponses: false })]),
    );
    t.after(() => deaf.close());
    await request(upstream.url('/'), { dispatcher: deaf }).then((r) => r.body.text());
    await request(upstream.url('/'), { dispatcher: deaf }).then((r) => r.body.text());
    assert.equal(upstream.count(), 2);
  });

  test('after a retry stage it counts every attempt, and a retry waits for its turn like any attempt', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 503 },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const dispatcher = resilient(
      new Agent(),
      pipeline([
        retry({ maxAttempts: 2, backoff: { initialDelay: 1, maxDelay: 1 }, budget: false }),
        rateLimit({ perSecond: 5, burst: 1, maxWait: 1_000 }),
      ]),
    );
    t.after(() => dispatcher.close());
    const res = await elapsed(() => request(upstream.url('/'), { dispatcher }).then((r) => r.statusCode));
    assert.equal(res.value, 200);
    assert.equal(upstream.count(), 2);
    const gap = upstream.requests[1]!.receivedAt - upstream.requests[0]!.receivedAt;
    // The token comes 200 ms after the first attempt took its own; the first attempt also opened
    // the connection, which delayed its arrival a little.
    assert.ok(gap >= 120, `the retry reached the upstream ${gap} ms after the first attempt`);
  });

  test('bad options throw InvalidOptionError naming the field', () => {
    assert.throws(
      () => rateLimit({ perSecond: 0 }),
      (e: unknown) => e instanceof InvalidOptionError && /rateLimit\.perSecond/.test(e.message),
    );
    assert.throws(() => rateLimit({ perSecond: 1, burst: 0.5 }), /rateLimit\.burst/);
    assert.throws(() => rateLimit({ perSecond: 1, maxWait: -1 }), /rateLimit\.maxWait/);
    assert.throws(() => rateLimit({ perSecond: 1, bogus: 1 } as never), /rateLimit\.bogus/);
    assert.throws(() => standardPipeline({ rateLimit: { perSecond: 'x' } as never }), /rateLimit\.perSecond/);
  });
});
