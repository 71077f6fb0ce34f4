import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, type Dispatcher, interceptors, request } from 'undici';
import { pipeline, prometheusMetrics, type RetryEvent, retry } from '../../src/index.js';
import { type Behaviour, startUpstream, type Upstream } from '../helpers/upstream.js';

// Where undici's own interceptors go around a Breakwater pipeline (docs/composition.md). Each case
// builds both orders on real Agents against a real local server and shows what the server
// received and what Breakwater counted: `cache`, `responseError`, `redirect` and `deduplicate`
// belong outside the pipeline, `dns` inside it. undici runs the interceptor composed last first,
// so `agent.compose(bw).compose(x)` puts `x` outside Breakwater and `agent.compose(x).compose(bw)`
// puts it inside.

type Interceptor = Dispatcher.DispatcherComposeInterceptor;

interface Rig {
  dispatcher: Dispatcher;
  registry: Registry;
  retries: RetryEvent[];
  agent: Agent;
}

/** A metrics-reporting pipeline (retry, 1 ms backoff, no budget) with `other` inside or outside it. */
function rig(where: 'inside' | 'outside', other: Interceptor, maxAttempts = 3): Rig {
  const registry = new Registry();
  const stage = retry({ maxAttempts, backoff: { initialDelay: 1, maxDelay: 1 }, budget: false });
  const retries: RetryEvent[] = [];
  stage.onRetry((event) => retries.push(event));
  const breakwater = pipeline([stage], { metrics: prometheusMetrics({ registry }) });
  const agent = new Agent();
  const dispatcher =
    where === 'outside' ? agent.compose(breakwater).compose(other) : agent.compose(other).compose(breakwater);
  return { dispatcher, registry, retries, agent };
}

/** The sum of a counter's samples whose labels include `labels`. */
async function counted(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value))
    .reduce((sum, v) => sum + v.value, 0);
}

/** The distinct values of `label` among a metric's samples. */
async function labelValues(registry: Registry, name: string, label: string): Promise<string[]> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return [];
  const { values } = await metric.get();
  return [...new Set(values.map((v) => String(v.labels[label])))].sort();
}

async function getText(dispatcher: Dispatcher, url: string): Promise<{ status: number; body: string }> {
  const res = await request(url, { dispatcher });
  return { status: res.statusCode, body: await res.body.text() };
}

describe('undici interceptors around a pipeline', () => {
  let upstream: Upstream;
  let other: Upstream;
  before(async () => {
    upstream = await startUpstream((req): Behaviour => {
      switch (req.path) {
        case '/cacheable':
          return { kind: 'respond', status: 200, headers: { 'cache-control': 'max-age=60' }, body: 'fresh' };
        case '/down':
          return { kind: 'respond', status: 503, headers: { 'retry-after': '1' }, body: 'down' };
        case '/moved':
          return { kind: 'respond', status: 302, headers: { location: other.url('/there') } };
        case '/slow':
          return { kind: 'respond', status: 200, body: 'slow', delayMs: 200 };
        default:
          return { kind: 'respond', status: 200, body: 'ok' };
      }
    });
    // The redirect's target: always 503.
    other = await startUpstream({ kind: 'respond', status: 503, body: 'down' });
  });
  after(async () => {
    await upstream.close();
    await other.close();
  });

  describe('cache', () => {
    test('outside: a cached answer never reaches Breakwater, so it is not counted as an attempt', async () => {
      upstream.reset();
      const { dispatcher, registry, agent } = rig('outside', interceptors.cache());
      try {
        for (let i = 0; i < 2; i++)
          assert.deepEqual(await getText(dispatcher, upstream.url('/cacheable')), {
            status: 200,
            body: 'fresh',
          });
        assert.equal(upstream.count({ path: '/cacheable' }), 1, 'the second GET came from the cache');
        assert.equal(await counted(registry, 'breakwater_attempts_total'), 1);
        assert.equal(await counted(registry, 'breakwater_requests_total'), 1);
      } finally {
        await agent.close();
      }
    });

    test('inside: a cache hit counts as an upstream attempt (and a breaker success) though the upstream saw nothing', async () => {
      upstream.reset();
      const { dispatcher, registry, agent } = rig('inside', interceptors.cache());
      try {
        for (let i = 0; i < 2; i++)
          assert.deepEqual(await getText(dispatcher, upstream.url('/cacheable')), {
            status: 200,
            body: 'fresh',
          });
        assert.equal(upstream.count({ path: '/cacheable' }), 1, 'the second GET came from the cache');
        assert.equal(await counted(registry, 'breakwater_attempts_total', { status_class: '2xx' }), 2);
        assert.equal(await counted(registry, 'breakwater_requests_total', { outcome: 'success' }), 2);
      } finally {
        await agent.close();
      }
    });
  });

  describe('responseError', () => {
    // Two attempts, so each order makes one retry decision after the first 503 (Retry-After: 1).
    test('outside: Breakwater sees the 503 itself: the retry waits for its Retry-After, the metrics say 5xx', async () => {
      upstream.reset();
      const { dispatcher, registry, retries, agent } = rig('outside', interceptors.responseError(), 2);
      try {
        await assert.rejects(request(upstream.url('/down'), { dispatcher }), {
          code: 'UND_ERR_RESPONSE',
          statusCode: 503,
        });
        assert.equal(upstream.count({ path: '/down' }), 2);
        assert.equal(retries.length, 1);
        assert.ok(retries[0]!.delay >= 1_000, `waited ${retries[0]!.delay} ms, as Retry-After asked`);
        assert.equal(await counted(registry, 'breakwater_attempts_total', { status_class: '5xx' }), 2);
      } finally {
        await agent.close();
      }
    });

    test('inside: the 503 reaches Breakwater as an error: retried, but its Retry-After is lost and the status hidden from the metrics', async () => {
      upstream.reset();
      const { dispatcher, registry, retries, agent } = rig('inside', interceptors.responseError(), 2);
      try {
        await assert.rejects(request(upstream.url('/down'), { dispatcher }), {
          code: 'UND_ERR_RESPONSE',
          statusCode: 503,
        });
        assert.equal(upstream.count({ path: '/down' }), 2);
        assert.equal(retries.length, 1);
        assert.ok(retries[0]!.delay < 1_000, `retried after ${retries[0]!.delay} ms, Retry-After unseen`);
        assert.equal(await counted(registry, 'breakwater_attempts_total', { status_class: '5xx' }), 0);
        assert.equal(await counted(registry, 'breakwater_attempts_total', { status_class: 'error' }), 2);
      } finally {
        await agent.close();
      }
    });
  });

  describe('redirect', () => {
    test('outside: each hop is a request of its own, keyed and counted by the origin that answered', async () => {
      upstream.reset();
      other.reset();
      const { dispatcher, registry, agent } = rig('outside', interceptors.redirect({ maxRedirections: 1 }));
      try {
        assert.equal((await getText(dispatcher, upstream.url('/moved'))).status, 503);
        assert.equal(upstream.count({ path: '/moved' }), 1, 'the redirect itself is not repeated');
        assert.equal(other.count({ path: '/there' }), 3, 'the failing target is retried');
        assert.deepEqual(
          await labelValues(registry, 'breakwater_attempts_total', 'origin'),
          [upstream.origin, other.origin].sort(), // labelValues sorts; the ports decide the order
        );
        assert.equal(
          await counted(registry, 'breakwater_attempts_total', { origin: other.origin, status_class: '5xx' }),
          3,
        );
      } finally {
        await agent.close();
      }
    });

    test("inside: the target's failures are counted against the first origin, and every retry repeats the redirect", async () => {
      upstream.reset();
      other.reset();
      const { dispatcher, registry, agent } = rig('inside', interceptors.redirect({ maxRedirections: 1 }));
      try {
        assert.equal((await getText(dispatcher, upstream.url('/moved'))).status, 503);
        assert.equal(upstream.count({ path: '/moved' }), 3);
        assert.equal(other.count({ path: '/there' }), 3);
        assert.deepEqual(await labelValues(registry, 'breakwater_attempts_total', 'origin'), [
          upstream.origin,
        ]);
        assert.equal(
          await counted(registry, 'breakwater_attempts_total', {
            origin: upstream.origin,
            status_class: '5xx',
          }),
          3,
        );
      } finally {
        await agent.close();
      }
    });
  });

  // Added to undici late in its 7.x line; the lockfile's 7.30 and undici 8 have it.
  const deduplicate = interceptors.deduplicate as (() => Interceptor) | undefined;
  describe('deduplicate', {
    skip: deduplicate === undefined && 'this undici has no deduplicate interceptor',
  }, () => {
    const sendThree = (dispatcher: Dispatcher) =>
      Promise.all([0, 1, 2].map(() => getText(dispatcher, upstream.url('/slow'))));

    test('outside: three identical GETs in flight together are one request to Breakwater and to the upstream', async () => {
      upstream.reset();
      const { dispatcher, registry, agent } = rig('outside', deduplicate!());
      try {
        assert.deepEqual(
          (await sendThree(dispatcher)).map((r) => r.body),
          ['slow', 'slow', 'slow'],
        );
        assert.equal(upstream.count({ path: '/slow' }), 1);
        assert.equal(await counted(registry, 'breakwater_requests_total'), 1);
        assert.equal(await counted(registry, 'breakwater_attempts_total'), 1);
      } finally {
        await agent.close();
      }
    });

    test('inside: Breakwater counts three attempts (and holds three slots) for one upstream request', async () => {
      upstream.reset();
      const { dispatcher, registry, agent } = rig('inside', deduplicate!());
      try {
        assert.deepEqual(
          (await sendThree(dispatcher)).map((r) => r.body),
          ['slow', 'slow', 'slow'],
        );
        assert.equal(upstream.count({ path: '/slow' }), 1);
        assert.equal(await counted(registry, 'breakwater_attempts_total'), 3);
      } finally {
        await agent.close();
      }
    });
  });

  describe('dns', () => {
    // A lookup of our own answers 127.0.0.1 for any name, so the test does not depend on how this
    // machine resolves localhost (::1 first on some).
    const dns = () =>
      interceptors.dns({
        dualStack: false,
        affinity: 4,
        lookup: (_origin, _options, callback) =>
          callback(null, [{ address: '127.0.0.1', family: 4, ttl: 60_000 }]),
      });

    test('inside: keys and labels keep the host name the caller used', async () => {
      upstream.reset();
      const { dispatcher, registry, agent } = rig('inside', dns());
      try {
        assert.equal((await getText(dispatcher, `http://localhost:${upstream.port}/`)).body, 'ok');
        assert.equal(upstream.requests[0]?.headers.host, `localhost:${upstream.port}`);
        assert.deepEqual(await labelValues(registry, 'breakwater_attempts_total', 'origin'), [
          `http://localhost:${upstream.port}`,
        ]);
      } finally {
        await agent.close();
      }
    });

    test('outside: Breakwater sees the address the name resolved to, one key per IP', async () => {
      upstream.reset();
      const { dispatcher, registry, agent } = rig('outside', dns());
      try {
        assert.equal((await getText(dispatcher, `http://localhost:${upstream.port}/`)).body, 'ok');
        assert.deepEqual(await labelValues(registry, 'breakwater_attempts_total', 'origin'), [
          `http://127.0.0.1:${upstream.port}`,
        ]);
      } finally {
        await agent.close();
      }
    });
  });
});
