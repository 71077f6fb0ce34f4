import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { isTimeoutError, pipeline, resilient, retry, TimeoutError, timeout } from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

describe('timeout', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({ kind: 'hang' });
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test('a server that never answers → TimeoutError within ms + 50, and the socket is closed', async (t) => {
    upstream.setScript({ kind: 'hang' });
    const dispatcher = resilient(new Agent(), pipeline([timeout(150)]));
    t.after(() => dispatcher.close());
    const started = performance.now();
    const error = await request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    assert.ok(error instanceof TimeoutError, String(error));
    assert.equal(error.scope, 'total');
    assert.equal(error.ms, 150);
    assert.ok(elapsed >= 145 && elapsed < 200, `settled after ${elapsed} ms`);
    await upstream.waitForSocketsClosed(1_000);
    assert.equal(upstream.closedByClient, 1);
  });

  test("until 'end' cuts off a trickling body", async (t) => {
    upstream.setScript({ kind: 'trickle', intervalMs: 20 });
    const dispatcher = resilient(new Agent(), pipeline([timeout(200, { until: 'end' })]));
    t.after(() => dispatcher.close());
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 200);
    const error = await res.body.text().catch((e: unknown) => e);
    assert.ok(isTimeoutError(error), String(error));
    await upstream.waitForSocketsClosed(1_000);
  });

  test("until 'headers' lets a slow body finish", async (t) => {
    upstream.setScript({ kind: 'trickle', intervalMs: 20, count: 15, chunk: 'a' });
    const dispatcher = resilient(new Agent(), pipeline([timeout(100, { until: 'headers' })]));
    t.after(() => dispatcher.close());
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(await res.body.text(), 'a'.repeat(15));
  });

  test("inside a retry stage it is an 'attempt' timeout, and each attempt gets its own", async (t) => {
    upstream.setScript({ kind: 'hang' });
    const dispatcher = resilient(
      new Agent(),
      pipeline([retry({ maxAttempts: 2, backoff: { initialDelay: 1, maxDelay: 1 } }), timeout(80)]),
    );
    t.after(() => dispatcher.close());
    const error = await request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e);
    assert.ok(error instanceof TimeoutError);
    assert.equal(error.scope, 'attempt');
    assert.equal((error as TimeoutError & { attempts?: number }).attempts, 2);
    assert.equal(upstream.count(), 2);
  });

  test('a per-request override replaces the total timeout', async (t) => {
    upstream.setScript({ kind: 'hang' });
    const dispatcher = resilient(new Agent(), pipeline([timeout(10_000)]));
    t.after(() => dispatcher.close());
    const error = await request(upstream.url('/'), {
      dispatcher,
      breakwater: { totalTimeout: 50 },
    } as never).catch((e: unknown) => e);
    assert.ok(error instanceof TimeoutError);
    assert.equal(error.ms, 50);
  });
});
