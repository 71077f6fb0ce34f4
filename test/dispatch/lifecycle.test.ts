import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { bulkhead, pipeline, resilient, retry, timeout } from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

/** Timers alive in this process, as Node counts them (ours would show up here). */
const activeTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('lifecycle', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'done', delayMs: 100 });
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  const make = () => {
    const interceptor = pipeline([
      timeout(30_000),
      retry({ backoff: { initialDelay: 10_000, maxDelay: 10_000 } }),
      bulkhead({ maxConcurrent: 1, maxQueue: 10 }),
      timeout(20_000, { until: 'headers' }),
    ]);
    return { interceptor, dispatcher: resilient(new Agent(), interceptor) };
  };

  test('close() lets the request in flight and the queued ones finish, then refuses new ones', async () => {
    const timersBefore = activeTimers();
    const { interceptor, dispatcher } = make();
    const pending = Array.from({ length: 3 }, (_, i) =>
      request(upstream.url(`/${i}`), { dispatcher }).then((r) => r.body.text()),
    );
    await upstream.waitForRequests(1, 1_000);
    assert.equal(interceptor.health()[upstream.origin]?.queued, 2);
    const closed = dispatcher.close();
    await assert.rejects(request(upstream.url('/late'), { dispatcher }), { code: 'UND_ERR_CLOSED' });
    assert.deepEqual(await Promise.all(pending), ['done', 'done', 'done']);
    await closed;
    assert.equal(upstream.count(), 3);
    assert.equal(activeTimers(), timersBefore, 'no timer of the pipeline is left');
  });

  test('destroy() rejects queued requests and aborts the one in flight, with a clear error', async () => {
    const timersBefore = activeTimers();
    const { interceptor, dispatcher } = make();
    const pending = Array.from({ length: 3 }, (_, i) =>
      request(upstream.url(`/${i}`), { dispatcher }).catch((e: unknown) => e),
    );
    await upstream.waitForRequests(1, 1_000);
    await dispatcher.destroy();
    const errors = (await Promise.all(pending)) as Array<Error & { code?: string }>;
    assert.deepEqual(
      errors.map((e) => e.code),
      ['UND_ERR_DESTROYED', 'UND_ERR_DESTROYED', 'UND_ERR_DESTROYED'],
    );
    assert.equal(upstream.count(), 1, 'the queued ones never left');
    const health = interceptor.health()[upstream.origin];
    assert.equal(health?.inFlight, 0);
    assert.equal(health?.queued, 0);
    assert.equal(activeTimers(), timersBefore);
  });

  test('destroy() ends a request sleeping in a 10 s backoff at once', async () => {
    upstream.setScript({ kind: 'respond', status: 503 });
    const { dispatcher } = make();
    const pending = request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    await upstream.waitForRequests(1, 1_000);
    await new Promise((r) => setTimeout(r, 20));
    const started = performance.now();
    await dispatcher.destroy();
    const error = (await pending) as Error & { code?: string };
    assert.equal(error.code, 'UND_ERR_DESTROYED');
    assert.ok(performance.now() - started < 50);
    assert.equal(upstream.count(), 1);
  });

  test("the interceptor's own close() and destroy() serve the compose path", async () => {
    const { interceptor } = make();
    const agent = new Agent();
    const dispatcher = agent.compose(interceptor);
    const pending = Array.from({ length: 2 }, () =>
      request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e),
    );
    await upstream.waitForRequests(1, 1_000);
    interceptor.destroy();
    const errors = (await Promise.all(pending)) as Array<{ code?: string }>;
    assert.deepEqual(
      errors.map((e) => e.code),
      ['UND_ERR_DESTROYED', 'UND_ERR_DESTROYED'],
    );
    await assert.rejects(request(upstream.url('/'), { dispatcher }), { code: 'UND_ERR_DESTROYED' });
    await agent.close();
  });
});
