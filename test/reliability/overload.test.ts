// Overload: ten times more concurrent requests than the bulkhead and its queue hold. The excess
// is rejected at once (in the very turn of the event loop that issued it), the admitted ones are
// served with at most maxConcurrent upstream at a time, the heap is the same after the last round
// as after the first, and the event loop keeps turning.

import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { Dispatcher } from 'undici';
import {
  BulkheadRejectedError,
  bulkhead,
  pipeline,
  prometheusMetrics,
  type ResilienceInterceptor,
  RetryStage,
  resilient,
  standardPipeline,
} from '../../src/index.js';
import { type Behaviour, startUpstream, type Upstream } from '../helpers/upstream.js';
import {
  closeAndCheck,
  destroyQuietly,
  errorLabel,
  exchange,
  type Outcome,
  ownRequests,
  ProcessGuard,
  requestId,
  settledHeap,
  trackedAgent,
} from './harness.js';

const MAX_CONCURRENT = 8;
const MAX_QUEUE = 32;
const HOLD = MAX_CONCURRENT + MAX_QUEUE;
const OFFERED = HOLD * 10;
const ROUNDS = 4;
const BURSTS = 8;
/**
 * No answer leaves the upstream before this many ms after its round began, so every request of a
 * round is in flight at the same time, however long issuing them takes on a loaded machine.
 */
const GATE_MS = 300;
let gateAt = 0;

const gated = (): Behaviour => ({
  kind: 'respond',
  status: 200,
  body: 'ok',
  delayMs: Math.max(0, gateAt - performance.now()),
});

interface Timed extends Outcome {
  /** The burst that issued it. */
  burst: number;
  /** The burst during whose turn of the event loop it settled (`bursts` when after the last one). */
  settledIn: number;
}

interface Round {
  ok: Timed[];
  rejected: Timed[];
  other: Timed[];
}

/**
 * Offers OFFERED requests at once, in `bursts` bursts issued on consecutive turns of the event
 * loop: the loop delay measured is then the pipeline's, not that of one synchronous loop of the
 * test creating hundreds of requests.
 */
async function round(dispatcher: Dispatcher, bursts = BURSTS): Promise<Round> {
  gateAt = performance.now() + GATE_MS;
  const pending: Array<Promise<Timed>> = [];
  let current = 0;
  for (let b = 0; b < bursts; b++) {
    current = b;
    for (let i = 0; i < OFFERED / bursts; i++) {
      pending.push(
        exchange(upstreamUrl, { dispatcher, headers: { 'x-request-id': requestId() } }).then((x) => ({
          ...x,
          burst: b,
          settledIn: current,
        })),
      );
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  current = bursts;
  const r: Round = { ok: [], rejected: [], other: [] };
  for (const o of await Promise.all(pending)) {
    if (o.status === 200 && o.error === undefined) r.ok.push(o);
    else if (o.error instanceof BulkheadRejectedError) r.rejected.push(o);
    else r.other.push(o);
  }
  return r;
}

let upstreamUrl = '';

describe('overload: 10 × what the bulkhead and its queue hold', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream(gated);
    upstreamUrl = upstream.url('/');
  });
  after(() => upstream.close());

  const rigs: Array<{ name: string; make: (registry: Registry) => ResilienceInterceptor }> = [
    {
      name: 'standardPipeline with metrics',
      make: (registry) =>
        standardPipeline({
          totalTimeout: 5_000,
          attemptTimeout: 2_000,
          bulkhead: { maxConcurrent: MAX_CONCURRENT, maxQueue: MAX_QUEUE },
          metrics: prometheusMetrics({ registry }),
        }),
    },
    {
      name: 'the bulkhead stage alone',
      make: () => pipeline([bulkhead({ maxConcurrent: MAX_CONCURRENT, maxQueue: MAX_QUEUE })]),
    },
  ];

  for (const { name, make } of rigs) {
    for (const mode of ['compose', 'resilient'] as const) {
      test(`${name} (${mode}): excess rejected at once, heap flat, loop not blocked`, async (t) => {
        upstream.reset();
        const guard = new ProcessGuard();
        const registry = new Registry();
        const interceptor = make(registry);
        const { agent, connector } = trackedAgent();
        const dispatcher = mode === 'compose' ? agent.compose(interceptor) : resilient(agent, interceptor);
        const loop = monitorEventLoopDelay({ resolution: 10 });
        const retries: string[] = [];
        const retryStage = interceptor.stages.find((s): s is RetryStage => s instanceof RetryStage);
        const subscription = retryStage?.onRetry((e) =>
          retries.push(`${e.reason} ${e.statusCode ?? errorLabel(e.error)}`),
        );
        try {
          // Warm-up rounds, so the first measured heap already holds everything built lazily.
          const WARM_UP = 3;
          for (let i = 0; i < WARM_UP; i++) await round(dispatcher);
          let served = ownRequests(upstream);
          let maxConcurrent = upstream.maxConcurrent;
          upstream.reset();
          const heapBefore = await settledHeap();
          loop.enable();
          // Only a summary of each round is kept: the outcomes (errors and their stacks) and the
          // upstream's records are the test's garbage, not the pipeline's.
          const summaries: Array<{ other: string[]; ok: number; rejected: number; late: number }> = [];
          for (let i = 0; i < ROUNDS; i++) {
            const r = await round(dispatcher);
            served += ownRequests(upstream);
            maxConcurrent = Math.max(maxConcurrent, upstream.maxConcurrent);
            upstream.reset();
            summaries.push({
              other: r.other.map((o) => errorLabel(o.error)),
              ok: r.ok.length,
              rejected: r.rejected.length,
              // Rejection happens in dispatch: each one reaches its caller in the turn of the
              // event loop that issued it, waiting for no slot, timer or socket.
              late: r.rejected.filter((o) => o.settledIn !== o.burst).length,
            });
          }
          loop.disable();
          const heapAfter = await settledHeap();

          for (const r of summaries) {
            assert.deepEqual(r.other, [], 'every request either served or rejected');
            assert.equal(r.ok, HOLD, 'the bulkhead and its queue are served in full');
            assert.equal(r.rejected, OFFERED - HOLD);
            assert.equal(r.late, 0, `${r.late} rejections settled in a later turn`);
          }
          assert.ok(maxConcurrent <= MAX_CONCURRENT, `upstream saw ${maxConcurrent} at once`);
          // Under heavy machine load undici itself occasionally writes an idempotent request a
          // second time after a keep-alive socket died under it (seen in CI: 4 of 280, no retry of
          // ours scheduled), so the upstream may count a handful more than we sent; never fewer.
          const expected = HOLD * (ROUNDS + WARM_UP) + retries.length;
          assert.ok(
            served >= expected && served <= expected * 1.03,
            `upstream served ${served}, expected ${expected} (retries: ${retries.join(', ')})`,
          );

          // Flat-ish. Even after full collections the heap moves by about 1 MiB once the rounds
          // have made code hot (compiled code and feedback count as heap), and it does not grow
          // with more rounds; 3 MiB here would be 2 KiB kept per request. (The soak measures
          // leaks precisely, over a million requests.)
          const growth = heapAfter - heapBefore;
          assert.ok(
            growth < 3 * 1024 * 1024,
            `heap grew ${(growth / 1024).toFixed(0)} KiB over ${ROUNDS} rounds`,
          );
          const p99 = loop.percentile(99) / 1e6;
          t.diagnostic(`heap growth ${(growth / 1024).toFixed(0)} KiB, loop delay p99 ${p99.toFixed(1)} ms`);
          assert.ok(p99 < 100, `event loop delay p99 ${p99.toFixed(1)} ms`);

          if (name.includes('metrics')) {
            const text = await registry.metrics();
            const total = new RegExp(
              `breakwater_bulkhead_rejections_total\\{origin="${upstream.origin}"\\} (\\d+)`,
            );
            assert.equal(Number(total.exec(text)?.[1]), (OFFERED - HOLD) * (ROUNDS + WARM_UP));
          }
          await closeAndCheck(interceptor, dispatcher, upstream, connector);
          await guard.assertClean();
        } finally {
          subscription?.dispose();
          loop.disable();
          guard.dispose();
          await destroyQuietly(dispatcher);
        }
      });
    }
  }

  test('upstream hanging under overload: the queue empties by its deadline, nothing waits past it', async () => {
    upstream.reset();
    upstream.setScript({ kind: 'hang' });
    const guard = new ProcessGuard();
    const interceptor = standardPipeline({
      totalTimeout: 300,
      attemptTimeout: 300,
      retry: { maxAttempts: 1 },
      bulkhead: { maxConcurrent: MAX_CONCURRENT, maxQueue: MAX_QUEUE },
    });
    const { agent, connector } = trackedAgent();
    const dispatcher = agent.compose(interceptor);
    try {
      // One burst: issuing must not outlast the deadline under test.
      const r = await round(dispatcher, 1);
      assert.equal(r.rejected.length, OFFERED - HOLD);
      assert.equal(r.ok.length, 0);
      assert.equal(r.other.length, HOLD);
      for (const o of r.other) {
        assert.equal(errorLabel(o.error), 'BREAKWATER_TIMEOUT');
        assert.ok(o.ms < 300 + 100, `timed out after ${o.ms.toFixed(0)} ms`);
      }
      // Slots freed by the first deadlines may admit a queued request a moment before its own.
      const sent = ownRequests(upstream);
      assert.ok(sent >= MAX_CONCURRENT && sent <= HOLD, `${sent} reached the upstream`);
      await closeAndCheck(interceptor, dispatcher, upstream, connector);
      await guard.assertClean();
    } finally {
      guard.dispose();
      await destroyQuietly(dispatcher);
      upstream.setScript(gated);
    }
  });
});
