import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { fanOut } from '../../src/dispatch/fan-out.js';
import {
  InvalidOptionError,
  type OriginObserver,
  type PipelineObserver,
  pipeline,
  prometheusMetrics,
  resilient,
  retry,
  standardPipeline,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// `metrics` takes several observers side by side; each hears every event once.

const quick = retry({ maxAttempts: 3, backoff: { initialDelay: 5, maxDelay: 5 }, budget: false });

/** Records every call an origin observer gets, with its arguments. */
function recorder(): PipelineObserver & { calls: unknown[][]; attached: number } {
  const calls: unknown[][] = [];
  const handle = new Proxy({} as OriginObserver, {
    get:
      (_t, name) =>
      (...args: unknown[]) =>
        calls.push([name, ...args]),
  });
  const r = {
    calls,
    attached: 0,
    origin: () => handle,
    attach: () => {
      r.attached++;
    },
  };
  return r;
}

async function sample(registry: Registry, line: RegExp): Promise<number | undefined> {
  const m = new RegExp(`^${line.source} (\\S+)$`, 'm').exec(await registry.metrics());
  return m === null ? undefined : Number(m[1]);
}

describe('several observers', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(() => upstream.reset());

  test('two Prometheus registries side by side both count a 503-then-200 GET', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const a = new Registry();
    const b = new Registry();
    const dispatcher = resilient(
      new Agent(),
      pipeline([quick], {
        metrics: [prometheusMetrics({ registry: a }), prometheusMetrics({ registry: b })],
      }),
    );
    t.after(() => dispatcher.destroy());
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok');
    assert.equal(upstream.requests.length, 2);
    for (const registry of [a, b]) {
      assert.equal(await sample(registry, /breakwater_requests_total\{[^}]*outcome="success"\}/), 1);
      assert.equal(await sample(registry, /breakwater_attempts_total\{[^}]*status_class="5xx"\}/), 1);
      assert.equal(await sample(registry, /breakwater_attempts_total\{[^}]*status_class="2xx"\}/), 1);
      assert.equal(await sample(registry, /breakwater_retries_total\{[^}]*reason="status"\}/), 1);
    }
  });

  test('each observer hears the exact status and error, and is attached once', async (t) => {
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const first = recorder();
    const second = recorder();
    const interceptor = standardPipeline({
      metrics: [first, second],
      retry: { backoff: { initialDelay: 5, maxDelay: 5 } },
    });
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.destroy());
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    for (const r of [first, second]) {
      assert.equal(r.attached, 1);
      const names = r.calls.map((c) => c[0]);
      assert.deepEqual(names.filter((n) => n === 'attemptFinished').length, 2);
      const request = r.calls.find((c) => c[0] === 'requestFinished')!;
      assert.deepEqual(
        [request[1], request[2], request[3], request[5], request[6]],
        ['GET', 'success', '2xx', 200, null],
      );
      const attempts = r.calls.filter((c) => c[0] === 'attemptFinished');
      assert.deepEqual(
        attempts.map((c) => [c[2], c[4], c[5]]),
        [
          ['5xx', 503, null],
          ['2xx', 200, null],
        ],
      );
      assert.equal(r.calls.filter((c) => c[0] === 'retryScheduled').length, 1);
    }
    assert.deepEqual(first.calls, second.calls.slice(0, first.calls.length));
  });

  test('a request that fails hands its error to the observer, status 0', async (t) => {
    const r = recorder();
    const dispatcher = resilient(new Agent(), pipeline([retry({ maxAttempts: 1 })], { metrics: [r] }));
    t.after(() => dispatcher.destroy());
    // A port nothing listens on: the connection is refused.
    const closed = await startUpstream();
    const url = closed.url('/');
    await closed.close();
    await assert.rejects(request(url, { dispatcher }));
    const finished = r.calls.find((c) => c[0] === 'requestFinished')!;
    assert.equal(finished[5], 0);
    assert.ok(finished[6] instanceof Error);
    assert.equal((finished[6] as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  });

  test('one observer is used as it is, and none is no observer', () => {
    const r = recorder();
    assert.equal(fanOut([r]), r);
    assert.equal(fanOut([]), undefined);
    assert.notEqual(fanOut([r, recorder()]), undefined);
  });

  test('the same observer listed twice counts once', async (t) => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
    const r = recorder();
    const dispatcher = resilient(new Agent(), pipeline([quick], { metrics: [r, r] }));
    t.after(() => dispatcher.destroy());
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    assert.equal(r.attached, 1);
    assert.equal(r.calls.filter((c) => c[0] === 'requestFinished').length, 1);
  });

  test('a bad entry is named by its index', () => {
    assert.throws(
      () => pipeline([quick], { metrics: [recorder(), {} as PipelineObserver] }),
      (err: unknown) => err instanceof InvalidOptionError && err.path === 'pipeline.metrics[1]',
    );
    assert.throws(
      () => pipeline([quick], { metrics: {} as PipelineObserver }),
      (err: unknown) => err instanceof InvalidOptionError && err.path === 'pipeline.metrics',
    );
  });
});
