// A caller's abort settles the request within 50 ms whatever phase it is in — queued behind the
// bulkhead, connecting, awaiting headers, sleeping in backoff, reading the body — sends nothing
// further upstream, releases the socket, and leaves no listener on the caller's signal.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Dispatcher, fetch } from 'undici';
import { type ResilienceInterceptor, resilient, standardPipeline } from '../../src/index.js';
import { listenerCount } from '../helpers/signals.js';
import { type Script, startUpstream, type Upstream } from '../helpers/upstream.js';
import {
  closeAndCheck,
  destroyQuietly,
  errorLabel,
  exchange,
  type Outcome,
  ProcessGuard,
  StallRecorder,
  sleep,
  type TrackingConnector,
  trackedAgent,
} from './harness.js';

const SETTLE_MS = 50;
const CONNECT_DELAY_MS = 300;

type Client = 'request' | 'fetch';

/** Like `exchange()`, through `fetch()`: the body read to its end, discarded. */
async function fetchExchange(url: string, dispatcher: Dispatcher, signal: AbortSignal): Promise<Outcome> {
  const started = performance.now();
  let status: number | undefined;
  let bytes = 0;
  try {
    const res = await fetch(url, { dispatcher, signal });
    status = res.status;
    try {
      for await (const chunk of res.body!) bytes += chunk.length;
    } catch (error) {
      return { status, error, inBody: true, bytes, ms: performance.now() - started, startedAt: started };
    }
    return { status, inBody: false, bytes, ms: performance.now() - started, startedAt: started };
  } catch (error) {
    return { error, inBody: false, bytes, ms: performance.now() - started, startedAt: started };
  }
}

interface Phase {
  name: string;
  script: Script;
  connectDelayMs?: number;
  /** Resolves once the request to abort is in this phase. */
  reached(
    upstream: Upstream,
    interceptor: ResilienceInterceptor,
    connector: TrackingConnector,
  ): Promise<void>;
  /** Requests of the `/target` path the upstream may have seen (the aborted one never repeats). */
  upstreamSees: number;
  /** Whether the aborted request held a socket the upstream should see closed. */
  socketClosedByClient: boolean;
  /** A request occupying the only bulkhead slot first. */
  blocker?: boolean;
}

const PHASES: readonly Phase[] = [
  {
    name: 'queued behind the bulkhead',
    script: { kind: 'hang' },
    blocker: true,
    reached: async (upstream, interceptor) => {
      await upstream.waitForRequests(1, 1_000);
      await sleep(5);
      assert.equal(interceptor.health()[upstream.origin]?.queued, 1, 'the target is queued');
    },
    upstreamSees: 0,
    socketClosedByClient: false,
  },
  {
    name: 'connecting',
    script: { kind: 'respond', status: 200, body: 'ok' },
    connectDelayMs: CONNECT_DELAY_MS,
    reached: async (_upstream, _interceptor, connector) => {
      await sleep(30);
      assert.equal(connector.pending, 1, 'the connection is still being opened');
    },
    upstreamSees: 0,
    socketClosedByClient: false,
  },
  {
    name: 'awaiting headers',
    script: { kind: 'hang' },
    reached: (upstream) => upstream.waitForRequests(1, 1_000),
    upstreamSees: 1,
    socketClosedByClient: true,
  },
  {
    name: 'in backoff',
    script: { kind: 'respond', status: 503, body: 'busy' },
    reached: async (upstream) => {
      await upstream.waitForRequests(1, 1_000);
      await sleep(30);
    },
    upstreamSees: 1,
    socketClosedByClient: false,
  },
  {
    name: 'reading the body',
    script: { kind: 'trickle', intervalMs: 5 },
    reached: async (upstream) => {
      await upstream.waitForRequests(1, 1_000);
      await sleep(40);
    },
    upstreamSees: 1,
    socketClosedByClient: true,
  },
];

const cases: Array<{ mode: 'compose' | 'resilient'; client: Client }> = [
  { mode: 'compose', client: 'request' },
  { mode: 'resilient', client: 'request' },
  { mode: 'compose', client: 'fetch' },
  { mode: 'resilient', client: 'fetch' },
];

for (const { mode, client } of cases) {
  describe(`caller abort through standardPipeline (${mode}, ${client}())`, () => {
    let upstream: Upstream;
    before(async () => {
      upstream = await startUpstream();
    });
    after(() => upstream.close());

    for (const phase of PHASES) {
      test(`${phase.name}: settles within ${SETTLE_MS} ms, nothing further upstream, nothing left`, async () => {
        upstream.reset();
        upstream.setScript(phase.script);
        const guard = new ProcessGuard();
        const stalls = new StallRecorder();
        const interceptor = standardPipeline({
          totalTimeout: 10_000,
          attemptTimeout: 5_000,
          retry: { backoff: { initialDelay: 5_000, maxDelay: 5_000 } },
          bulkhead: { maxConcurrent: 1, maxQueue: 10 },
        });
        const { agent, connector } = trackedAgent(phase.connectDelayMs);
        const dispatcher = mode === 'compose' ? agent.compose(interceptor) : resilient(agent, interceptor);
        const run = (path: string, signal: AbortSignal): Promise<Outcome> =>
          client === 'request'
            ? exchange(upstream.url(path), { dispatcher, signal })
            : fetchExchange(upstream.url(path), dispatcher, signal);
        try {
          const blockerAbort = new AbortController();
          const blocker = phase.blocker ? run('/blocker', blockerAbort.signal) : undefined;
          if (blocker) await upstream.waitForRequests(1, 1_000);

          const ac = new AbortController();
          const pending = run('/target', ac.signal);
          await phase.reached(upstream, interceptor, connector);
          const started = performance.now();
          ac.abort();
          const outcome = await pending;
          const ms = performance.now() - started;
          const stalled = stalls.stalledDuring(started, started + ms);
          assert.ok(
            ms < SETTLE_MS + stalled,
            `settled ${ms.toFixed(1)} ms after the abort (the process stalled ${stalled.toFixed(0)} ms)`,
          );
          assert.ok(outcome.error !== undefined, 'the request failed');
          assert.equal(errorLabel(outcome.error), 'AbortError');

          blockerAbort.abort();
          await blocker;
          // Let the held-back connection open, a backoff that would have fired fire, and the
          // caller's stream close (undici drops its signal listener on the body's 'close').
          await sleep(phase.connectDelayMs === undefined ? 30 : phase.connectDelayMs);
          assert.equal(upstream.count({ path: '/target' }), phase.upstreamSees, 'no further attempt');
          assert.equal(listenerCount(ac.signal), 0, 'no listener left on the signal');
          if (phase.socketClosedByClient) await upstream.waitForClosedByClient(1, 1_000);
          await closeAndCheck(interceptor, dispatcher, upstream, connector);
          await guard.assertClean();
        } finally {
          stalls.dispose();
          guard.dispose();
          connector.dispose();
          await destroyQuietly(dispatcher);
        }
      });
    }
  });
}

describe('a long-lived signal shared by requests that are retried', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  for (const mode of ['compose', 'resilient'] as const) {
    test(`(${mode}) retries add no listener: none left, no MaxListenersExceededWarning`, async () => {
      // Each request id fails twice (a 503, then a reset) and then succeeds: three attempts each.
      const seen = new Map<string, number>();
      upstream.setScript((req) => {
        const id = String(req.headers['x-id']);
        const n = seen.get(id) ?? 0;
        seen.set(id, n + 1);
        if (n === 0) return { kind: 'respond', status: 503, body: 'busy' };
        if (n === 1) return { kind: 'reset' };
        return { kind: 'respond', status: 200, body: 'ok' };
      });
      const guard = new ProcessGuard();
      const interceptor = standardPipeline({
        totalTimeout: 5_000,
        attemptTimeout: 1_000,
        retry: { backoff: { initialDelay: 1, maxDelay: 5 }, budget: false },
        circuitBreaker: false,
      });
      const { agent, connector } = trackedAgent();
      const dispatcher = mode === 'compose' ? agent.compose(interceptor) : resilient(agent, interceptor);
      const ac = new AbortController();
      try {
        // undici's request() itself holds one listener per request until its body closes and
        // warns past 10: batches of 10 sit exactly at the limit, so one listener of ours per
        // attempt would trip the warning.
        for (let batch = 0; batch < 10; batch++) {
          const outcomes = await Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              exchange(upstream.url('/'), {
                dispatcher,
                signal: ac.signal,
                headers: { 'x-id': `${mode}-${batch}-${i}` },
              }),
            ),
          );
          for (const o of outcomes) assert.equal(o.status, 200, errorLabel(o.error));
          await sleep(1);
        }
        assert.equal(upstream.count(), 300);
        assert.equal(listenerCount(ac.signal), 0);
        await closeAndCheck(interceptor, dispatcher, upstream, connector);
        await guard.assertClean();
      } finally {
        guard.dispose();
        upstream.reset();
        await destroyQuietly(dispatcher);
      }
    });
  }
});

describe('caller abort with a reason of its own', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({ kind: 'hang' });
  });
  after(() => upstream.close());

  test('the caller gets its own reason back, and the attempt is not retried', async () => {
    const guard = new ProcessGuard();
    const interceptor = standardPipeline({ totalTimeout: 5_000, attemptTimeout: 2_000 });
    const { agent, connector } = trackedAgent();
    const dispatcher = agent.compose(interceptor);
    try {
      const ac = new AbortController();
      const pending = exchange(upstream.url('/'), { dispatcher, signal: ac.signal });
      await upstream.waitForRequests(1, 1_000);
      const reason = new Error('changed my mind');
      ac.abort(reason);
      const outcome = await pending;
      assert.equal(outcome.error, reason);
      await sleep(150);
      assert.equal(upstream.count(), 1);
      await closeAndCheck(interceptor, dispatcher, upstream, connector);
      await guard.assertClean();
    } finally {
      guard.dispose();
      await destroyQuietly(dispatcher);
    }
  });
});
