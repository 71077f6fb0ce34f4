import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, type Dispatcher, request } from 'undici';
import {
  BulkheadRejectedError,
  bulkhead,
  isBulkheadRejectedError,
  pipeline,
  resilient,
  type Stage,
  timeout,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

describe('bulkhead', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok', delayMs: 300 });
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test('maxConcurrent 2, maxQueue 3: 10 at once → server sees ≤ 2 at a time, 3 wait, 5 rejected at once', async (t) => {
    const interceptor = pipeline([bulkhead({ maxConcurrent: 2, maxQueue: 3 })]);
    const dispatcher = new Agent().compose(interceptor);
    t.after(() => dispatcher.close());
    const started = performance.now();
    const settledAt: number[] = [];
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, async () => {
        try {
          const res = await request(upstream.url('/'), { dispatcher });
          return await res.body.text();
        } finally {
          settledAt.push(performance.now() - started);
        }
      }),
    );
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.equal(rejected.length, 5);
    for (const r of rejected) assert.ok((r as PromiseRejectedResult).reason instanceof BulkheadRejectedError);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
    assert.equal(upstream.count(), 5);
    assert.equal(upstream.maxConcurrent, 2);
    // The five rejections came back at once, long before the first 300 ms response.
    const sorted = [...settledAt].sort((a, b) => a - b);
    assert.ok(sorted[4]! < 100, `rejections settled after ${sorted[4]} ms`);
    assert.deepEqual(interceptor.health()[upstream.origin], { inFlight: 0, queued: 0 });
  });

  test('the error carries a stable code and the key, and is seen through fetch', async (t) => {
    const dispatcher = new Agent().compose(pipeline([bulkhead({ maxConcurrent: 1, maxQueue: 0 })]));
    t.after(() => dispatcher.close());
    const first = request(upstream.url('/'), { dispatcher }).then((r) => r.body.text());
    const second = await request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    assert.ok(second instanceof BulkheadRejectedError);
    assert.equal(second.code, 'BREAKWATER_BULKHEAD_REJECTED');
    assert.equal(second.key, upstream.origin);
    const { fetch } = await import('undici');
    const viaFetch = await fetch(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    assert.ok(viaFetch instanceof TypeError, 'fetch wraps the error');
    assert.ok(isBulkheadRejectedError(viaFetch));
    await first;
  });

  test('two origins do not share a bulkhead', async (t) => {
    const other = await startUpstream({ kind: 'respond', status: 200, body: 'b' });
    t.after(() => other.close());
    const dispatcher = new Agent().compose(pipeline([bulkhead({ maxConcurrent: 1, maxQueue: 0 })]));
    t.after(() => dispatcher.close());
    const slow = request(upstream.url('/'), { dispatcher }).then((r) => r.body.text());
    const res = await request(other.url('/'), { dispatcher });
    assert.equal(await res.body.text(), 'b');
    assert.equal(await slow, 'ok');
  });
});

describe('bulkhead slot lifetime', () => {
  let upstream: Upstream;
  let interceptor: ReturnType<typeof pipeline>;
  let dispatcher: Dispatcher;
  before(async () => {
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'x'.repeat(1024) });
  });
  after(() => upstream.close());
  afterEach(async () => {
    await dispatcher.close();
    upstream.reset();
  });

  const setup = (stages: Stage[] = [bulkhead({ maxConcurrent: 1, maxQueue: 5 })]) => {
    interceptor = pipeline(stages);
    dispatcher = resilient(new Agent(), interceptor);
  };
  const slot = () => interceptor.health()[upstream.origin];

  test('is held until the body has been read, not just the headers', async () => {
    setup();
    // Large enough that undici must wait for the caller to read before the response can end.
    upstream.setScript({ kind: 'respond', status: 200, body: Buffer.alloc(8 * 1024 * 1024) });
    const first = await request(upstream.url('/1'), { dispatcher });
    assert.equal(first.statusCode, 200);
    const second = request(upstream.url('/2'), { dispatcher });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(slot(), { inFlight: 1, queued: 1 });
    assert.equal(upstream.count(), 1, 'the second request waits while the first body is unread');
    assert.equal((await first.body.arrayBuffer()).byteLength, 8 * 1024 * 1024);
    const res = await second;
    await res.body.text();
    assert.equal(upstream.count(), 2);
    assert.deepEqual(slot(), { inFlight: 0, queued: 0 });
  });

  test('is released when the attempt errors (reset before headers)', async () => {
    setup();
    upstream.setScript({ kind: 'reset' });
    await assert.rejects(request(upstream.url('/'), { dispatcher }));
    assert.deepEqual(slot(), { inFlight: 0, queued: 0 });
  });

  test('is released when the caller aborts mid-body', async () => {
    setup();
    upstream.setScript({ kind: 'trickle', intervalMs: 20 });
    const ac = new AbortController();
    const res = await request(upstream.url('/'), { dispatcher, signal: ac.signal });
    const reading = res.body.text();
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(slot(), { inFlight: 1, queued: 0 });
    ac.abort();
    await assert.rejects(reading);
    assert.deepEqual(slot(), { inFlight: 0, queued: 0 });
    await upstream.waitForSocketsClosed(1_000);
  });

  test('is released when a timeout inside it fires', async () => {
    setup([bulkhead({ maxConcurrent: 1, maxQueue: 5 }), timeout(100)]);
    upstream.setScript({ kind: 'hang' });
    await assert.rejects(request(upstream.url('/'), { dispatcher }), { code: 'BREAKWATER_TIMEOUT' });
    assert.deepEqual(slot(), { inFlight: 0, queued: 0 });
  });
});
