import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, buildConnector, request } from 'undici';
import { prometheusMetrics, standardPipeline } from '../../src/index.js';
import { mulberry32 } from '../helpers/prng.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { parseSamples, type Sample, select, seriesId } from './fixtures/exposition.js';

// Label bounds, through a real pipeline against a real upstream: paths and query strings never
// become series, and past `maxOrigins` distinct origins everything lands under origin="other".

let upstream: Upstream;
before(async () => {
  upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok' });
});
after(async () => {
  await upstream.close();
});

async function scrape(registry: Registry): Promise<Sample[]> {
  return parseSamples(await registry.metrics());
}

/** Runs `send(i)` for i in [0, n), `concurrency` at a time. */
async function runAll(n: number, concurrency: number, send: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: concurrency }, async () => {
    while (next < n) await send(next++);
  });
  await Promise.all(lanes);
}

describe('label bounds through a real pipeline', { timeout: 120_000 }, () => {
  test('10,000 requests to random paths on one origin add no series after the first', {
    timeout: 60_000,
  }, async () => {
    const registry = new Registry();
    const interceptor = standardPipeline({ metrics: prometheusMetrics({ registry }) });
    const agent = new Agent();
    const dispatcher = agent.compose(interceptor);
    const random = mulberry32(5);
    const randomPath = (): string => {
      const segment = () => Math.floor(random() * 2 ** 32).toString(36);
      return `/${segment()}/${segment()}?q=${segment()}&user=${segment()}#${segment()}`;
    };
    const send = async (): Promise<void> => {
      const res = await request(upstream.origin + randomPath(), { dispatcher });
      assert.equal(res.statusCode, 200);
      await res.body.text();
    };
    try {
      upstream.reset();
      await send();
      const first = await scrape(registry);
      const firstIds = first.map(seriesId).sort();
      assert.ok(firstIds.length > 0);

      await runAll(9_999, 32, send);
      const last = await scrape(registry);

      assert.equal(upstream.requests.length, 10_000, 'the upstream received every request');
      assert.equal(new Set(upstream.requests.map((r) => r.path)).size, 10_000, 'on 10,000 distinct paths');
      assert.deepEqual(last.map(seriesId).sort(), firstIds, 'the same series, no more, no fewer');
      assert.deepEqual(
        select(last, 'breakwater_requests_total').map((s) => [s.labels, s.value]),
        [[{ origin: upstream.origin, method: 'GET', outcome: 'success' }, 10_000]],
      );
      const values = new Set(last.flatMap((s) => Object.values(s.labels)));
      assert.deepEqual(
        [...values].filter((v) => /[/?#]/.test(v.replace(/^https?:\/\//, ''))),
        [],
        'no path, query or fragment in any label value',
      );
    } finally {
      await agent.close();
      await interceptor.close();
    }
  });

  /*
   * 500 origins: the origin label comes from the request's own origin (a `key` function changes
   * the isolation key, not the label), so 500 label values need 500 real origins. Instead of 500
   * servers, one undici Agent gets a connector that sends every origin's connection to the one
   * local upstream: each request still goes through the whole pipeline and over a real socket
   * with its own origin (its own Pool, Host header, breaker, bulkhead and label); only the DNS step
   * is skipped. The upstream checks that 500 distinct Host headers arrived.
   */
  test('500 origins with maxOrigins 100 give 101 origin values: the first 100 and "other"', {
    timeout: 30_000,
  }, async () => {
    const registry = new Registry();
    const interceptor = standardPipeline({ metrics: prometheusMetrics({ registry, maxOrigins: 100 }) });
    const connect = buildConnector({});
    const agent = new Agent({
      connect: (opts, callback) =>
        connect({ ...opts, hostname: '127.0.0.1', port: String(upstream.port) }, callback),
    });
    const dispatcher = agent.compose(interceptor);
    const origins = Array.from({ length: 500 }, (_, i) => `http://svc-${i}.example:8080`);
    try {
      upstream.reset();
      await runAll(origins.length, 16, async (i) => {
        // `reset: true` closes each connection after its response: 500 origins, few open sockets.
        const res = await request(`${origins[i]}/items/${i}`, { dispatcher, reset: true });
        assert.equal(res.statusCode, 200);
        await res.body.text();
      });
      assert.equal(
        new Set(upstream.requests.map((r) => r.headers.host)).size,
        500,
        '500 distinct origins reached the upstream',
      );

      const samples = await scrape(registry);
      const requestOrigins = new Set(
        select(samples, 'breakwater_requests_total').map((s) => s.labels.origin),
      );
      assert.equal(requestOrigins.size, 101);
      assert.ok(requestOrigins.has('other'));
      // Which origins get a label of their own depends on arrival order; 16 run at a time, so the
      // first 100 labels are among the first 116 origins sent.
      for (const origin of requestOrigins) {
        if (origin === 'other') continue;
        const i = origins.indexOf(origin!);
        assert.ok(i >= 0 && i < 116, `${origin} is one of the first origins`);
      }
      const perOrigin = (origin: string) =>
        select(samples, 'breakwater_requests_total', { origin, outcome: 'success' })[0]?.value;
      assert.equal(perOrigin('other'), 400, 'the 400 requests beyond the bound are counted under other');
      for (const origin of requestOrigins) if (origin !== 'other') assert.equal(perOrigin(origin!), 1);

      // Every metric with an origin label is bounded the same way, scrape-time gauges included.
      const everyOrigin = new Set(samples.map((s) => s.labels.origin).filter((o) => o !== undefined));
      assert.deepEqual([...everyOrigin].sort(), [...requestOrigins].sort());
      for (const name of ['breakwater_queue_depth', 'breakwater_in_flight', 'breakwater_attempts_total']) {
        assert.equal(new Set(select(samples, name).map((s) => s.labels.origin)).size, 101, name);
      }
      const circuits = new Set(select(samples, 'breakwater_circuit_state').map((s) => s.labels.origin));
      assert.equal(circuits.size, 101, 'breakwater_circuit_state');
    } finally {
      await agent.close();
      await interceptor.close();
    }
  });
});
