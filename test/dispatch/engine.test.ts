import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, Dispatcher, errors, request } from 'undici';
import { speaksLegacy } from '../../src/dispatch/core-link.js';
import {
  BulkheadRejectedError,
  bulkhead,
  CircuitOpenError,
  circuitBreaker,
  type Gate,
  gate,
  pipeline,
  resilient,
  retry,
  TimeoutError,
  timeout,
} from '../../src/index.js';
import type { Stage } from '../../src/pipeline.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Every pipeline runs on the one engine (src/dispatch/exchange.ts, attempt.ts, passage.ts): the
// stages before the retry stage are gates each request passes once, those after it gates each
// attempt passes. The scenarios below run on several orders and subsets of the preset's stages,
// which none of them can tell apart (no attempt waits in the queue while the breaker changes
// state).

/** A gate that admits everything: it puts the generic path (and RequestGates) under every scenario. */
const passThrough: Gate = {
  enter: (ticket) => ticket.admit(),
  exit() {},
};

type Build = (o: {
  total?: number;
  attempts?: number;
  breaker?: Parameters<typeof circuitBreaker>[0];
  slots?: { maxConcurrent: number; maxQueue: number };
  attempt?: number;
}) => Stage[];

const builds: Record<string, Build> = {
  'the preset order': (o) => [
    timeout(o.total ?? 5_000),
    retry({ maxAttempts: o.attempts ?? 3, backoff: { initialDelay: 5, maxDelay: 5 }, budget: false }),
    circuitBreaker(o.breaker ?? {}),
    bulkhead(o.slots ?? { maxConcurrent: 16, maxQueue: 16 }),
    timeout(o.attempt ?? 2_000, { until: 'headers' }),
  ],
  'with gates of our own around the preset': (o) => [
    gate(passThrough),
    timeout(o.total ?? 5_000),
    retry({ maxAttempts: o.attempts ?? 3, backoff: { initialDelay: 5, maxDelay: 5 }, budget: false }),
    gate(passThrough),
    circuitBreaker(o.breaker ?? {}),
    gate(passThrough),
    bulkhead(o.slots ?? { maxConcurrent: 16, maxQueue: 16 }),
    timeout(o.attempt ?? 2_000, { until: 'headers' }),
    gate(passThrough),
  ],
  'bulkhead before breaker': (o) => [
    timeout(o.total ?? 5_000),
    retry({ maxAttempts: o.attempts ?? 3, backoff: { initialDelay: 5, maxDelay: 5 }, budget: false }),
    bulkhead(o.slots ?? { maxConcurrent: 16, maxQueue: 16 }),
    circuitBreaker(o.breaker ?? {}),
    timeout(o.attempt ?? 2_000, { until: 'headers' }),
  ],
};

for (const [name, build] of Object.entries(builds)) {
  describe(`standard order, ${name}`, () => {
    let upstream: Upstream;
    const dispatchers: Dispatcher[] = [];
    const make = (o: Parameters<Build>[0] = {}): Dispatcher => {
      const stages = build(o);
      const dispatcher = resilient(new Agent(), pipeline(stages));
      dispatchers.push(dispatcher);
      return dispatcher;
    };
    before(async () => {
      upstream = await startUpstream();
    });
    afterEach(async () => {
      await Promise.all(dispatchers.splice(0).map((d) => d.destroy()));
      upstream.reset();
    });
    after(() => upstream.close());

    test('503, 503, 200: three attempts, the caller gets the 200 and its body', async () => {
      upstream.setScript([
        { kind: 'respond', status: 503, body: 'busy' },
        { kind: 'respond', status: 503, body: 'busy' },
        { kind: 'respond', status: 200, body: 'done' },
      ]);
      const res = await request(upstream.url('/'), { dispatcher: make() });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'done');
      assert.equal(upstream.count(), 3);
      assert.equal(upstream.connections, 1, 'the discarded bodies were drained, the socket reused');
    });

    test('a POST answered 503 is not repeated: the caller gets the 503 as it was', async () => {
      upstream.setScript({ kind: 'respond', status: 503, body: 'busy', headers: { 'x-from': 'upstream' } });
      const res = await request(upstream.url('/'), { dispatcher: make(), method: 'POST', body: 'once' });
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers['x-from'], 'upstream');
      assert.equal(await res.body.text(), 'busy');
      assert.equal(upstream.count({ method: 'POST' }), 1);
    });

    test('an attempt that hangs is cut by the attempt timeout and retried', async () => {
      upstream.setScript([{ kind: 'hang' }, { kind: 'respond', status: 200, body: 'second' }]);
      const res = await request(upstream.url('/'), { dispatcher: make({ attempt: 100 }) });
      assert.equal(await res.body.text(), 'second');
      assert.equal(upstream.count(), 2);
      await upstream.waitForClosedByClient(1);
    });

    test('the total timeout bounds the attempts and the backoff between them', async () => {
      upstream.setScript({ kind: 'hang' });
      const started = performance.now();
      const error = await request(upstream.url('/'), {
        dispatcher: make({ total: 250, attempt: 100 }),
      }).catch((e: unknown) => e);
      const ms = performance.now() - started;
      assert.ok(error instanceof TimeoutError, String(error));
      assert.equal(error.scope, 'total');
      assert.equal(error.ms, 250);
      assert.ok(ms >= 240 && ms < 450, `settled after ${ms} ms`);
      assert.ok(upstream.count() >= 2 && upstream.count() <= 3, `${upstream.count()} attempts`);
    });

    test('attempts used up on timeouts: the caller gets the attempt timeout, with the attempts made', async () => {
      upstream.setScript({ kind: 'hang' });
      const error = await request(upstream.url('/'), {
        dispatcher: make({ attempts: 2, attempt: 50 }),
      }).catch((e: unknown) => e);
      assert.ok(error instanceof TimeoutError, String(error));
      assert.equal(error.scope, 'attempt');
      assert.equal((error as Error & { attempts?: number }).attempts, 2);
      assert.equal(upstream.count(), 2);
    });

    test('a full bulkhead refuses at once; the slots admit the rest one at a time', async () => {
      upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 50 });
      const dispatcher = make({ slots: { maxConcurrent: 1, maxQueue: 1 } });
      const results = await Promise.all(
        [1, 2, 3].map((i) =>
          request(upstream.url(`/${i}`), { dispatcher }).then(
            (res) => res.body.text(),
            (e: unknown) => e,
          ),
        ),
      );
      assert.deepEqual(results.slice(0, 2), ['ok', 'ok']);
      assert.ok(results[2] instanceof BulkheadRejectedError, String(results[2]));
      assert.equal(upstream.maxConcurrent, 1);
      assert.equal(upstream.count(), 2);
    });

    test('the breaker opens on failures and then refuses without touching the network', async () => {
      upstream.setScript({ kind: 'respond', status: 503, body: 'down' });
      const dispatcher = make({
        attempts: 1,
        breaker: { consecutiveFailures: 2, failureRatio: false, halfOpenAfter: 60_000 },
      });
      for (let i = 0; i < 2; i++) {
        const res = await request(upstream.url('/'), { dispatcher });
        assert.equal(res.statusCode, 503);
        await res.body.dump();
      }
      const error = await request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
      assert.ok(error instanceof CircuitOpenError, String(error));
      assert.equal(upstream.count(), 2);
    });

    test("the caller's abort ends the attempt in flight and closes its socket", async () => {
      upstream.setScript({ kind: 'hang' });
      const ac = new AbortController();
      const pending = request(upstream.url('/'), { dispatcher: make(), signal: ac.signal }).catch(
        (e: unknown) => e,
      );
      await upstream.waitForRequests(1);
      const started = performance.now();
      ac.abort();
      const error = await pending;
      assert.ok(performance.now() - started < 50);
      assert.equal((error as Error).name, 'AbortError');
      await upstream.waitForClosedByClient(1);
      assert.equal(upstream.count(), 1);
    });

    test('a large body read slowly arrives whole (pause and resume reach the socket)', async () => {
      const body = Buffer.alloc(4 * 1024 * 1024, 'b');
      upstream.setScript({ kind: 'respond', status: 200, body });
      const res = await request(upstream.url('/'), { dispatcher: make() });
      let received = 0;
      for await (const chunk of res.body) {
        received += (chunk as Buffer).length;
        if (received < 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
      }
      assert.equal(received, body.length);
    });

    test('a bad per-request override: the caller hears onRequestStart, then the error, and nothing is sent', async () => {
      const heard: string[] = [];
      const error = await new Promise<Error>((resolve) => {
        make().dispatch(
          {
            origin: upstream.origin,
            path: '/',
            method: 'GET',
            ...({ breakwater: { maxAttempts: 0 } } as object),
          },
          {
            onRequestStart: () => void heard.push('start'),
            onResponseStart: () => void heard.push('headers'),
            onResponseError: (_c, e) => {
              heard.push('error');
              resolve(e);
            },
          },
        );
      });
      assert.deepEqual(heard, ['start', 'error']);
      assert.match(error.message, /breakwater\.maxAttempts/);
      assert.equal(upstream.count(), 0);
    });

    test('a reset in the middle of the body fails the request; nothing is sent again', async () => {
      upstream.setScript({ kind: 'reset-mid-body', body: 'partial', contentLength: 100 });
      const res = await request(upstream.url('/'), { dispatcher: make() });
      const error = await res.body.text().catch((e: unknown) => e);
      assert.ok(error instanceof Error);
      assert.equal(upstream.count(), 1);
    });
  });
}

/**
 * A dispatcher that takes only the current handler API, as undici 8's do: a handler without
 * `onRequestStart` is refused before any of its methods runs. It hands everything else to a real
 * Agent. This is what a process gets when it resolved undici 7 but is handed an undici 8 dispatcher.
 */
class CurrentApiOnly extends Dispatcher {
  readonly agent = new Agent();
  refused = 0;

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (typeof handler.onRequestStart !== 'function') {
      this.refused++;
      throw new errors.InvalidArgumentError('invalid onRequestStart method');
    }
    return this.agent.dispatch(opts, handler);
  }

  override close(): Promise<void> {
    return this.agent.close();
  }

  override destroy(): Promise<void> {
    return this.agent.destroy();
  }
}

describe('a dispatcher that refuses legacy handlers', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  for (const [name, build] of Object.entries(builds)) {
    test(`${name}: the first attempt is sent again in the current API, and so are all later ones`, async (t) => {
      upstream.setScript([
        { kind: 'respond', status: 503, body: 'busy' },
        { kind: 'respond', status: 200, body: 'first' },
        { kind: 'respond', status: 200, body: 'second' },
      ]);
      const inner = new CurrentApiOnly();
      const dispatcher = resilient(inner, pipeline(build({})));
      t.after(() => dispatcher.destroy());
      const first = await request(upstream.url('/'), { dispatcher });
      assert.equal(await first.body.text(), 'first');
      const second = await request(upstream.url('/'), { dispatcher });
      assert.equal(await second.body.text(), 'second');
      assert.equal(upstream.count(), 3, 'one 503 retried, then one request');
      // With undici 7 the pipeline speaks legacy first and is refused once; with undici 8 never.
      assert.equal(inner.refused, speaksLegacy() ? 1 : 0);
    });
  }
});
