import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import {
  bulkhead,
  CircuitBreakerStage,
  type CircuitStateChange,
  pipeline,
  prometheusMetrics,
  resilient,
  standardPipeline,
} from '../../src/index.js';
import { type KneeUpstream, quantile, startKneeUpstream } from '../helpers/knee-upstream.js';
import { startUpstream } from '../helpers/upstream.js';

// The adaptive bulkhead against real local servers. The knee upstream serves a fixed number of
// requests at once and queues the rest itself: the client cannot see that queue, only its latency.

/** `callers` closed loops of GETs through `dispatcher` until `ms` have passed. */
async function load(
  origin: string,
  dispatcher: Agent | ReturnType<typeof resilient>,
  callers: number,
  ms: number,
): Promise<{ ok: number; failed: number }> {
  const end = Date.now() + ms;
  let ok = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      try {
        const res = await request(`${origin}/`, { dispatcher });
        await res.body.dump();
        if (res.statusCode === 200) ok++;
        else failed++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  return { ok, failed };
}

describe('adaptive bulkhead', () => {
  const agents: Agent[] = [];
  const upstreams: KneeUpstream[] = [];
  after(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await Promise.all(upstreams.map((u) => u.close()));
  });

  const setUp = async (workers: number, maxQueue = 500, serviceMs: [number, number] = [10, 20]) => {
    const upstream = await startKneeUpstream({
      workers,
      maxQueue,
      serviceMin: serviceMs[0],
      serviceMax: serviceMs[1],
    });
    upstreams.push(upstream);
    const agent = new Agent({ connections: 512, keepAliveTimeout: 10_000 });
    agents.push(agent);
    return { upstream, agent };
  };

  test("keeps the upstream's own queue short under overload, where a static 4 × limit fills it", async () => {
    const workers = 8;
    const runOnce = async (maxConcurrent: number | 'adaptive') => {
      // Service times long beside the delays of a loaded machine's event loop, which the client
      // measures as latency too.
      const { upstream, agent } = await setUp(workers, 500, [40, 60]);
      // The adaptive limit starts at the static one: only adapting brings it down to the knee.
      const interceptor = pipeline([
        maxConcurrent === 'adaptive'
          ? bulkhead({ maxConcurrent, maxQueue: 10_000, adaptive: { initial: 4 * workers } })
          : bulkhead({ maxConcurrent, maxQueue: 10_000 }),
      ]);
      const dispatcher = resilient(agent, interceptor);
      // Warm up (the adaptive limit measures its baseline and converges), then measure.
      await load(upstream.origin, dispatcher, 120, 1_500);
      upstream.reset();
      const { ok } = await load(upstream.origin, dispatcher, 120, 2_000);
      return { ok, p90Queue: quantile(upstream.stats.queueSeen, 0.9), interceptor };
    };
    const adaptive = await runOnce('adaptive');
    const staticFour = await runOnce(workers * 4);
    const limit = adaptive.interceptor.health()[Object.keys(adaptive.interceptor.health())[0]!]!;
    assert.ok(
      limit.concurrencyLimit !== undefined && limit.concurrencyLimit >= 1,
      'health() reports the limit',
    );
    // The benchmark holds it to one worker's worth on a quiet machine; a loaded one, where the
    // in-process upstream's timers run late too, gets half as much again.
    assert.ok(
      adaptive.p90Queue <= 1.5 * workers,
      `adaptive: the upstream queue's p90 was ${adaptive.p90Queue} (limit ${limit.concurrencyLimit})`,
    );
    assert.ok(
      staticFour.p90Queue >= 2 * workers,
      `static 4 ×: the upstream queue's p90 was ${staticFour.p90Queue}`,
    );
    assert.ok(adaptive.ok > 0.7 * staticFour.ok, `adaptive served ${adaptive.ok}, static ${staticFour.ok}`);
  });

  test('under overload a drop lowers the limit before the breaker opens', async () => {
    // Four workers and no queue: a fifth request at once gets a 503.
    const { upstream, agent } = await setUp(4, 0);
    const run = async (maxConcurrent: number | 'adaptive') => {
      const interceptor = standardPipeline({
        bulkhead:
          maxConcurrent === 'adaptive'
            ? { maxConcurrent, maxQueue: 10_000, adaptive: { initial: 8 } }
            : { maxConcurrent, maxQueue: 10_000 },
        retry: { backoff: { initialDelay: 1, maxDelay: 5 } },
      });
      const limitNow = () => Object.values(interceptor.health())[0]?.concurrencyLimit;
      const breaker = interceptor.stages.find((s) => s instanceof CircuitBreakerStage)!;
      // The limit each time the breaker opened.
      const limitsAtOpen: Array<number | undefined> = [];
      breaker.onStateChange((change) => {
        if (change.to === 'open') limitsAtOpen.push(limitNow());
      });
      const limits: number[] = [];
      const dispatcher = resilient(agent, interceptor);
      const sampler = setInterval(() => {
        const limit = limitNow();
        if (limit !== undefined) limits.push(limit);
      }, 20);
      upstream.reset();
      await load(upstream.origin, dispatcher, 40, 1_500).finally(() => clearInterval(sampler));
      return { limitsAtOpen, limits, refused: upstream.stats.refused, served: upstream.stats.served };
    };
    const adaptive = await run('adaptive');
    const fixed = await run(64);
    const summary = `adaptive: limits ${adaptive.limits.join(' ')}, ${adaptive.served} served, ${adaptive.refused} dropped, breaker opened at limits [${adaptive.limitsAtOpen}]; static 64: ${fixed.served} served, ${fixed.refused} dropped, opened ${fixed.limitsAtOpen.length} times`;
    assert.ok(adaptive.refused > 0, `the upstream dropped some requests (${summary})`);
    // Past the baseline measurement (the limit held at 3), the limit came back down to the knee.
    const adapting = adaptive.limits.slice(adaptive.limits.findIndex((limit) => limit > 3));
    assert.ok(
      adapting.length > 0 && Math.min(...adapting) <= 6,
      `the limit came down to the knee (${summary})`,
    );
    // Drops lower the limit from its initial 8 at once: a breaker that opens finds it lowered.
    assert.ok(
      adaptive.limitsAtOpen.every((limit) => limit !== undefined && limit < 8),
      `the breaker opened before a drop lowered the limit (${summary})`,
    );
    assert.ok(fixed.limitsAtOpen.length > 0, `with a static 64 the breaker opened (${summary})`);
  });

  test('a hedge is not sent when no slot is free', async (t) => {
    const upstream = await startUpstream({ kind: 'respond', delayMs: 150 });
    t.after(() => upstream.close());
    const agent = new Agent();
    t.after(() => agent.close());
    const send = async (initial: number) => {
      const interceptor = standardPipeline({
        bulkhead: {
          maxConcurrent: 'adaptive',
          maxQueue: 100,
          adaptive: { initial, min: initial, max: initial, baselineConcurrency: initial },
        },
        retry: { hedge: { delay: 20 } },
      });
      const dispatcher = resilient(agent, interceptor);
      upstream.reset();
      await Promise.all(
        [1, 2].map(async () => (await request(`${upstream.origin}/`, { dispatcher })).body.dump()),
      );
      return upstream.requests.length;
    };
    assert.equal(await send(2), 2, 'both slots busy: no hedge went out');
    assert.equal(await send(4), 4, 'with free slots both requests were hedged');
  });

  test('breakwater_concurrency_limit reads the limit at scrape time', async (t) => {
    const upstream = await startUpstream({ kind: 'respond', delayMs: 1 });
    t.after(() => upstream.close());
    const agent = new Agent();
    t.after(() => agent.close());
    const registry = new Registry();
    const interceptor = pipeline(
      [bulkhead({ maxConcurrent: 'adaptive', maxQueue: 10, adaptive: { initial: 7 } })],
      {
        metrics: prometheusMetrics({ registry }),
      },
    );
    const dispatcher = resilient(agent, interceptor);
    assert.doesNotMatch(await registry.metrics(), /breakwater_concurrency_limit\{/, 'no key, no sample');
    await (await request(`${upstream.origin}/`, { dispatcher })).body.dump();
    const limit = interceptor.health()[upstream.origin]!.concurrencyLimit!;
    // The first attempts measure the no-load latency under a limit of 3.
    assert.equal(limit, 3);
    assert.match(
      await registry.metrics(),
      new RegExp(`breakwater_concurrency_limit\\{origin="${upstream.origin}"\\} ${limit}\n`),
    );
  });

  test('options are checked at construction', () => {
    assert.throws(
      () => bulkhead({ maxConcurrent: 'adaptiv' as 'adaptive', maxQueue: 1 }),
      /bulkhead\.maxConcurrent/,
    );
    assert.throws(
      () => bulkhead({ maxConcurrent: 4, maxQueue: 1, adaptive: { initial: 2 } }),
      /bulkhead\.adaptive/,
    );
    assert.throws(
      () => bulkhead({ maxConcurrent: 'adaptive', maxQueue: 1, adaptive: { min: 0 } }),
      /bulkhead\.adaptive\.min/,
    );
  });
});
