import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { bulkhead, pipeline, resilient, retry, timeout } from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// A caller's abort must settle at once wherever the request is, take nothing further upstream,
// and leave no listener on the caller's (possibly long-lived) signal.

const settleTime = async (
  promise: Promise<unknown>,
  abort: () => void,
): Promise<{ ms: number; error: unknown }> => {
  const started = performance.now();
  abort();
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { ms: performance.now() - started, error };
};

for (const path of ['compose', 'resilient'] as const) {
  describe(`caller abort (${path})`, () => {
    let upstream: Upstream;
    before(async () => {
      upstream = await startUpstream({ kind: 'hang' });
    });
    after(() => upstream.close());
    afterEach(() => upstream.reset());

    const make = (maxConcurrent = 1) => {
      const interceptor = pipeline([
        timeout(10_000),
        retry({ maxAttempts: 3, backoff: { initialDelay: 5_000, maxDelay: 5_000 } }),
        bulkhead({ maxConcurrent, maxQueue: 100 }),
      ]);
      const dispatcher =
        path === 'compose' ? new Agent().compose(interceptor) : resilient(new Agent(), interceptor);
      return { interceptor, dispatcher };
    };

    test('while queued: leaves the queue at once and never reaches the server', async (t) => {
      upstream.setScript({ kind: 'hang' });
      const { interceptor, dispatcher } = make();
      t.after(() => dispatcher.destroy());
      const blocker = request(upstream.url('/blocker'), { dispatcher }).catch(() => undefined);
      await upstream.waitForRequests(1, 1_000);
      const ac = new AbortController();
      const queued = request(upstream.url('/queued'), { dispatcher, signal: ac.signal });
      await new Promise((r) => setImmediate(r));
      assert.equal(interceptor.health()[upstream.origin]?.queued, 1);
      const { ms, error } = await settleTime(queued, () => ac.abort());
      assert.ok(ms < 50, `settled after ${ms} ms`);
      assert.equal((error as Error).name, 'AbortError');
      assert.equal(interceptor.health()[upstream.origin]?.queued, 0);
      assert.equal(upstream.count({ path: '/queued' }), 0);
      void blocker;
    });

    test('while in flight: settles at once and the server sees the socket close', async (t) => {
      upstream.setScript({ kind: 'hang' });
      const { interceptor, dispatcher } = make();
      t.after(() => dispatcher.close());
      const ac = new AbortController();
      const pending = request(upstream.url('/'), { dispatcher, signal: ac.signal });
      await upstream.waitForRequests(1, 1_000);
      const { ms } = await settleTime(pending, () => ac.abort());
      assert.ok(ms < 50, `settled after ${ms} ms`);
      await upstream.waitForSocketsClosed(1_000);
      assert.equal(upstream.count(), 1, 'no further attempt');
      assert.equal(interceptor.health()[upstream.origin]?.inFlight, 0);
    });

    test('during a 5 s backoff: settles at once, no further attempt', async (t) => {
      upstream.setScript({ kind: 'respond', status: 503, body: 'busy' });
      const { dispatcher } = make();
      t.after(() => dispatcher.close());
      const ac = new AbortController();
      const pending = request(upstream.url('/'), { dispatcher, signal: ac.signal });
      await upstream.waitForRequests(1, 1_000);
      await new Promise((r) => setTimeout(r, 30));
      const { ms } = await settleTime(pending, () => ac.abort());
      assert.ok(ms < 50, `settled after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(upstream.count(), 1);
    });

    test('while reading the body: the body errors at once', async (t) => {
      upstream.setScript({ kind: 'trickle', intervalMs: 10 });
      const { interceptor, dispatcher } = make();
      t.after(() => dispatcher.close());
      const ac = new AbortController();
      const res = await request(upstream.url('/'), { dispatcher, signal: ac.signal });
      const reading = res.body.text();
      await new Promise((r) => setTimeout(r, 30));
      const { ms, error } = await settleTime(reading, () => ac.abort());
      assert.ok(error instanceof Error);
      assert.ok(ms < 50, `settled after ${ms} ms`);
      assert.equal(interceptor.health()[upstream.origin]?.inFlight, 0);
      await upstream.waitForSocketsClosed(1_000);
    });

    test('1,000 requests sharing one AbortSignal leave no listener and no warning', async (t) => {
      upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
      const { dispatcher } = make(20);
      t.after(() => dispatcher.close());
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      t.after(() => process.off('warning', onWarning));
      const ac = new AbortController();
      const before = getEventListeners(ac.signal, 'abort').length;
      // undici's request() itself holds one listener per request in flight and warns past 10, so
      // batches of 10 sit exactly at the limit: a single listener of ours would trip the warning.
      for (let batch = 0; batch < 100; batch++) {
        await Promise.all(
          Array.from({ length: 10 }, async () => {
            const res = await request(upstream.url('/'), { dispatcher, signal: ac.signal });
            await res.body.text();
            // undici drops its listener when the body stream closes, a tick after the text is read.
            if (!res.body.closed) await once(res.body, 'close');
          }),
        );
      }
      await new Promise((r) => setImmediate(r));
      assert.equal(getEventListeners(ac.signal, 'abort').length, before);
      assert.deepEqual(
        warnings.map((w) => w.name),
        [],
      );
      assert.equal(upstream.count(), 1_000);
    });
  });
}
