import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { bulkhead, circuitBreaker, pipeline, resilient, retry } from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Breakwater's diagnostics channels, heard the way an APM agent hears them: by name, through
// node:diagnostics_channel, with nothing passed to the pipeline.

const NAMES = [
  'breakwater:request:start',
  'breakwater:request:end',
  'breakwater:attempt:start',
  'breakwater:attempt:end',
  'breakwater:retry',
  'breakwater:hedge',
  'breakwater:circuit:state',
  'breakwater:rejected',
  'breakwater:queue:wait',
] as const;

type Heard = Array<[string, Record<string, unknown>]>;

function listen(): { heard: Heard; stop(): void } {
  const heard: Heard = [];
  const handlers = NAMES.map((name) => {
    const handler = (message: unknown) =>
      heard.push([name.slice('breakwater:'.length), message as Record<string, unknown>]);
    subscribe(name, handler);
    return [name, handler] as const;
  });
  return {
    heard,
    stop: () => {
      for (const [name, handler] of handlers) unsubscribe(name, handler);
    },
  };
}

const quick = retry({ maxAttempts: 3, backoff: { initialDelay: 5, maxDelay: 5 }, budget: false });

describe('diagnostics channels', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test("a 503-then-200 GET: a subscriber to breakwater:retry sees the retry, and the request's whole course", async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const dispatcher = resilient(new Agent(), pipeline([quick]));
    t.after(() => dispatcher.destroy());
    const { heard, stop } = listen();
    t.after(stop);
    const res = await request(upstream.url('/'), { dispatcher });
    await res.body.text();
    const key = upstream.origin;
    assert.deepEqual(
      heard.map(([name]) => name),
      [
        'request:start',
        'attempt:start',
        'attempt:end',
        'retry',
        'attempt:start',
        'attempt:end',
        'request:end',
      ],
    );
    const byName = (name: string) => heard.filter(([n]) => n === name).map(([, m]) => m);
    const retries = byName('retry');
    assert.equal(retries.length, 1);
    const { delayMs, requestId, ...retryRest } = retries[0]!;
    assert.deepEqual(retryRest, { key, attempt: 1, reason: 'status' });
    // One id ties every message of the request together; the start names its origin.
    assert.ok(typeof requestId === 'number' && requestId > 0);
    assert.deepEqual(
      heard.map(([, m]) => m.requestId),
      heard.map(() => requestId),
    );
    assert.deepEqual(byName('request:start'), [{ requestId, key, origin: upstream.origin, method: 'GET' }]);
    assert.ok(typeof delayMs === 'number' && delayMs >= 0 && delayMs <= 5, `delay ${delayMs}`);
    assert.deepEqual(
      byName('attempt:end').map(({ attempt, statusCode, hedge }) => ({ attempt, statusCode, hedge })),
      [
        { attempt: 1, statusCode: 503, hedge: false },
        { attempt: 2, statusCode: 200, hedge: false },
      ],
    );
    const end = byName('request:end')[0]!;
    assert.equal(end.outcome, 'success');
    assert.equal(end.statusCode, 200);
    assert.equal(end.attempts, 2);
    assert.ok(typeof end.durationMs === 'number' && end.durationMs >= 0);
  });

  test('no path, query, credentials or header value in any message', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const dispatcher = resilient(new Agent(), pipeline([quick]));
    t.after(() => dispatcher.destroy());
    const { heard, stop } = listen();
    t.after(stop);
    const res = await request(upstream.url('/private/path?token=query-secret'), {
      dispatcher,
      headers: { authorization: 'Bearer header-secret', 'x-tenant': 'tenant-secret' },
    });
    await res.body.text();
    const text = JSON.stringify(heard);
    for (const secret of ['private', 'query-secret', 'header-secret', 'tenant-secret']) {
      assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    }
    assert.ok(heard.length >= 7);
  });

  test("circuit state changes and the library's own rejections", async (t) => {
    upstream.setScript({ kind: 'respond', status: 503, body: 'down' });
    const breaker = circuitBreaker({ consecutiveFailures: 1 });
    const dispatcher = resilient(
      new Agent(),
      pipeline([retry({ maxAttempts: 1 }), breaker, bulkhead({ maxConcurrent: 1, maxQueue: 0 })]),
    );
    t.after(() => dispatcher.destroy());
    const { heard, stop } = listen();
    t.after(stop);
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    await request(upstream.url('/'), { dispatcher }).catch(() => {});
    const key = upstream.origin;
    assert.deepEqual(
      heard.filter(([n]) => n === 'circuit:state').map(([, m]) => m),
      [{ key, from: 'closed', to: 'open' }],
    );
    assert.deepEqual(
      heard.filter(([n]) => n === 'rejected').map(([, m]) => m),
      [{ key, reason: 'circuit' }],
    );
    const ends = heard.filter(([n]) => n === 'request:end').map(([, m]) => m.outcome);
    assert.deepEqual(ends, ['failure', 'circuit_open']);
  });

  test('a hedge is published with its attempt number and delay', async (t) => {
    upstream.setScript([{ kind: 'hang' }, { kind: 'respond', status: 200, body: 'ok' }]);
    const dispatcher = resilient(new Agent(), pipeline([retry({ hedge: { delay: 20 } })]));
    t.after(() => dispatcher.destroy());
    const { heard, stop } = listen();
    t.after(stop);
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    const hedges = heard.filter(([n]) => n === 'hedge').map(([, m]) => m);
    assert.equal(hedges.length, 1);
    assert.equal(hedges[0]!.attempt, 2);
    assert.ok((hedges[0]!.delayMs as number) >= 15);
    const starts = heard.filter(([n]) => n === 'attempt:start').map(([, m]) => m.hedge);
    assert.deepEqual(starts, [false, true]);
  });

  test('a request that waited for a bulkhead slot is published with its wait', async (t) => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 60 });
    const dispatcher = resilient(
      new Agent(),
      pipeline([retry({ maxAttempts: 1 }), bulkhead({ maxConcurrent: 1, maxQueue: 1 })]),
    );
    t.after(() => dispatcher.destroy());
    const { heard, stop } = listen();
    t.after(stop);
    await Promise.all([1, 2].map(async () => (await request(upstream.url('/'), { dispatcher })).body.text()));
    const waits = heard.filter(([n]) => n === 'queue:wait').map(([, m]) => m);
    assert.equal(waits.length, 1);
    const second = heard.filter(([n]) => n === 'request:start')[1]![1];
    assert.equal(waits[0]!.requestId, second.requestId);
    assert.equal(waits[0]!.attempt, 1);
    assert.equal(waits[0]!.key, upstream.origin);
    assert.ok((waits[0]!.waitedMs as number) >= 40, `waited ${waits[0]!.waitedMs} ms`);
  });
});
