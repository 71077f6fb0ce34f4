import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { CircuitOpenError, circuitBreaker, pipeline, resilient } from '../../src/index.js';
import { redisStore } from '../../src/redis/index.js';
import { runScript } from '../helpers/child.js';
import { type RedisServer, skipUnlessRedis, startRedis } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// The fleet tests: several processes (child processes, or the example's cluster workers) sharing a
// rate limit or a circuit breaker through a real Redis. They are in one file so that they run one
// after another: each is heavy, and two at once on a small machine starve the processes whose
// timing they measure.

const skip = skipUnlessRedis();

const PER_SECOND = 60;
const BURST = 10;
const WORKERS = 3;
const EACH = 150;

/** The most arrival times that fall in any window [t, t + ms). */
function maxInWindow(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! <= sorted[i]! - ms) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}

interface QuotaRun {
  ok: number;
  failed: string[];
  unhandled: string[];
}

describe('fleet quota: 3 processes share one rate limit through Redis', { skip }, () => {
  let redis: RedisServer;
  let upstream: Upstream;
  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok' });
  });
  after(async () => {
    await upstream?.close();
    await redis?.stop();
  });

  /** Runs the fleet; resolves to the most requests the upstream saw in one second. */
  async function fleet(redisUrl: string, prefix: string): Promise<number> {
    upstream.reset();
    // Every worker starts at the same wall-clock time, after all of them had time to load.
    const startAt = Date.now() + 4_000;
    const options = JSON.stringify({ perSecond: PER_SECOND, burst: BURST, count: EACH, prefix });
    const runs = await Promise.all(
      Array.from({ length: WORKERS }, () =>
        runScript(
          'test/fixtures/fleet-worker.ts',
          ['quota', upstream.url('/'), redisUrl, String(startAt), options],
          60_000,
        ),
      ),
    );
    for (const run of runs) {
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as QuotaRun;
      assert.deepEqual(result.failed, []);
      assert.equal(result.ok, EACH);
      assert.deepEqual(result.unhandled, []);
    }
    assert.equal(upstream.count(), WORKERS * EACH);
    return maxInWindow(
      upstream.requests.map((r) => r.receivedAt),
      1_000,
    );
  }

  test(`with the store the upstream never sees more than ${PER_SECOND} × 1.1 + ${BURST} in a second; without it, about 3 × that`, async (t) => {
    const shared = await fleet(redis.url, 'bw-fleet-quota:');
    assert.ok(shared <= PER_SECOND * 1.1 + BURST, `with the store: ${shared} in one second`);
    const alone = await fleet('none', '');
    // Each process alone lets its burst and its own 60/s through.
    assert.ok(alone >= 2.5 * (PER_SECOND + BURST) * 0.9, `without the store: ${alone} in one second`);
    assert.ok(alone > 2 * shared, `without the store ${alone}, with it ${shared}`);
    t.diagnostic(`most requests in one second: ${shared} with the store, ${alone} without`);
  });
});

async function until(check: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!check() && performance.now() < end) await new Promise((r) => setTimeout(r, 5));
}

describe('fleet circuit breaker', { skip }, () => {
  let redis: RedisServer;
  let upstream: Upstream;
  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream({ kind: 'respond', status: 503 });
  });
  after(async () => {
    await upstream?.close();
    await redis?.stop();
  });

  test('an opening in one pipeline opens the others at once; one probe for all; its success closes all', async (t) => {
    // A generous timeout: this is about what the pipelines share, not about a late store.
    const store = redisStore({ url: redis.url, prefix: 'bw-breaker:', timeoutMs: 250 });
    t.after(() => store.close());
    await store.ready();
    upstream.setScript({ kind: 'respond', status: 503 });
    upstream.reset();
    const stageA = circuitBreaker({ consecutiveFailures: 3, failureRatio: false, halfOpenAfter: 400 });
    const stageB = circuitBreaker({ consecutiveFailures: 3, failureRatio: false, halfOpenAfter: 400 });
    const a = resilient(new Agent(), pipeline([stageA], { store }));
    const b = resilient(new Agent(), pipeline([stageB], { store }));
    t.after(() => Promise.all([a.close(), b.close()]));
    // The subscriber connection comes up in the background.
    await new Promise((r) => setTimeout(r, 200));
    const send = (dispatcher: typeof a) =>
      request(upstream.url('/'), { dispatcher }).then(
        async (r) => {
          await r.body.text();
          return r.statusCode;
        },
        (e: unknown) => e,
      );
    for (let i = 0; i < 3; i++) assert.equal(await send(a), 503);
    assert.equal(stageA.state(upstream.origin), 'open');
    await until(() => stageB.state(upstream.origin) === 'open', 1_000);
    assert.equal(stageB.state(upstream.origin), 'open', 'B heard of the opening');
    const refused = await send(b);
    assert.ok(refused instanceof CircuitOpenError);
    assert.equal(upstream.count(), 3);
    // A pipeline that starts after the opening (it was not listening) reads it when it first meets
    // the key: at most the request sent within that round trip reaches the upstream.
    const stageC = circuitBreaker({ consecutiveFailures: 3, failureRatio: false, halfOpenAfter: 400 });
    const c = resilient(new Agent(), pipeline([stageC], { store }));
    t.after(() => c.close());
    const firstOfC = await send(c);
    await until(() => stageC.state(upstream.origin) === 'open', 1_000);
    assert.equal(stageC.state(upstream.origin), 'open', 'C read the opening');
    assert.ok((await send(c)) instanceof CircuitOpenError);
    assert.ok(upstream.count() <= 4, `C's first request: ${String(firstOfC)}`);
    const beforeProbe = upstream.count();

    // Half-open: both want to probe at once; one lock, one probe reaches the upstream.
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 100 });
    await new Promise((r) => setTimeout(r, 450));
    const [ra, rb] = await Promise.all([send(a), send(b)]);
    const answers = [ra, rb];
    assert.equal(upstream.count(), beforeProbe + 1, `answers ${String(ra)} / ${String(rb)}`);
    assert.equal(answers.filter((x) => x === 200).length, 1);
    assert.equal(answers.filter((x) => x instanceof CircuitOpenError).length, 1);
    await until(
      () => stageA.state(upstream.origin) === 'closed' && stageB.state(upstream.origin) === 'closed',
      1_000,
    );
    assert.equal(stageA.state(upstream.origin), 'closed');
    assert.equal(stageB.state(upstream.origin), 'closed');
    assert.equal(await send(b), 200);
  });

  test('3 processes, an upstream down for 3 s: with the store one process opens them all and one probe goes per period; without, each finds out alone', async (t) => {
    const threshold = 5;
    const halfOpenAfter = 500;
    const outageMs = 3_000;
    const run = async (redisUrl: string, prefix: string) => {
      let outageStart = Number.POSITIVE_INFINITY;
      let outageEnd = Number.POSITIVE_INFINITY;
      let hits = 0;
      upstream.setScript(() => {
        const now = Date.now();
        if (now >= outageStart && now < outageEnd) {
          hits++;
          return { kind: 'respond', status: 503 };
        }
        return { kind: 'respond', status: 200, body: 'ok' };
      });
      const startAt = Date.now() + 4_000;
      outageStart = startAt + 500;
      outageEnd = outageStart + outageMs;
      // One busy process, two quiet ones: the busy one finds the outage first.
      const workers = [
        { pauseMs: 10, concurrency: 2 },
        { pauseMs: 150, concurrency: 1 },
        { pauseMs: 150, concurrency: 1 },
      ];
      const runs = await Promise.all(
        workers.map((w) =>
          runScript(
            'test/fixtures/fleet-worker.ts',
            [
              'breaker',
              upstream.url('/'),
              redisUrl,
              String(startAt),
              JSON.stringify({
                consecutiveFailures: threshold,
                halfOpenAfter,
                durationMs: 500 + outageMs + 1_500,
                prefix,
                ...w,
              }),
            ],
            60_000,
          ),
        ),
      );
      const results = runs.map((r) => {
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
          transitions: Array<{ to: string; at: number }>;
          state: string;
          unhandled: string[];
        };
      });
      for (const r of results) {
        assert.deepEqual(r.unhandled, []);
        assert.equal(r.state, 'closed');
      }
      // Every process closed within one probe period of the recovery (and a little for the probe).
      const closedAfter = results.map(
        (r) => r.transitions.filter((x) => x.to === 'closed').at(-1)!.at - outageEnd,
      );
      return { hits, closedAfter };
    };
    const shared = await run(redis.url, 'bw-fleet-breaker:');
    const alone = await run('none', '');
    t.diagnostic(`upstream hits during the outage: ${shared.hits} with the store, ${alone.hits} without`);
    t.diagnostic(
      `closed after recovery (ms): with ${shared.closedAfter.join(', ')}; without ${alone.closedAfter.join(', ')}`,
    );
    const probes = Math.ceil(outageMs / halfOpenAfter) + 1;
    // In flight when the opening is heard: the busy process's two, one each for the quiet ones.
    const inFlight = 2 + 2;
    assert.ok(shared.hits <= threshold + inFlight + probes, `with the store: ${shared.hits} hits`);
    assert.ok(alone.hits >= 3 * threshold, `without the store: ${alone.hits} hits`);
    assert.ok(alone.hits > 1.5 * shared.hits, `without ${alone.hits}, with ${shared.hits}`);
    for (const ms of shared.closedAfter)
      assert.ok(ms <= halfOpenAfter + 300, `a process closed ${ms} ms after recovery`);
  });
});

// examples/fleet.ts, run as a user would run it against a Redis of its own. It lives here rather
// than in test/examples/examples.test.ts: its cluster of workers is heavy, and there it would run
// beside the demo's latency measurements. The store timeout is generous: the
// test machine may be loaded, and a store that answers late sends workers to their local limits.

const KILL_AFTER_MS = 60_000;

test('fleet: cluster workers share one quota through Redis; the upstream sees the fleet within it', {
  skip: skipUnlessRedis(),
}, async () => {
  const redis = await startRedis();
  try {
    const run = await runScript(
      'examples/fleet.ts',
      ['--redis', redis.url, '--timeout-ms', '250'],
      KILL_AFTER_MS,
    );
    assert.equal(run.code, 0, `fleet exited with 0 (stderr: ${run.stderr})`);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(out.example, 'fleet');
    assert.deepEqual(out.workerExitCodes, [0, 0, 0]);
    assert.equal(out.upstreamRequests, 90);
    // 30 a second and a burst of 5 for the fleet: 90 requests take about 3 s, not 1.
    assert.ok(
      (out.mostInOneSecond as number) <= 30 * 1.1 + 5,
      `the upstream saw ${out.mostInOneSecond} in one second`,
    );
    assert.ok((out.seconds as number) >= 2.5, `the fleet took ${out.seconds} s`);
  } finally {
    await redis.stop();
  }
});
