import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  Counter,
  Gauge,
  register as globalRegister,
  Histogram,
  type OpenMetricsContentType,
  Registry,
} from 'prom-client';
import type { KeySnapshot, StateSource } from '../../src/dispatch/observer.js';
import { InvalidOptionError } from '../../src/errors.js';
import { PrometheusMetrics, prometheusMetrics } from '../../src/metrics/prometheus.js';

const ORIGIN = 'http://127.0.0.1:1234';

/** The exposition of one metric, as Prometheus would read it. */
async function scrape(registry: Registry, name: string): Promise<string> {
  return registry.getSingleMetricAsString(name);
}

/** Sample lines of the whole exposition (no HELP/TYPE, no blank lines). */
async function samples(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

const source = (keys: () => KeySnapshot[]): StateSource => ({ snapshot: keys });

describe('prometheusMetrics: exposition', () => {
  test('every event lands in its metric with exactly its labels', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry, buckets: [0.1, 1] });
    const o = metrics.origin(ORIGIN);
    o.requestFinished('GET', 'success', '2xx', 0.05);
    o.requestFinished('get', 'success', '2xx', 0.5);
    o.requestFinished('POST', 'failure', '5xx', 3);
    o.requestFinished('PROPFIND', 'timeout', 'timeout', 2);
    o.attemptFinished('GET', '5xx', 0.02);
    o.attemptFinished('GET', '2xx', 0.03);
    o.attemptFinished('GET', '2xx', 0.2);
    o.retryScheduled('status');
    o.retryScheduled('status');
    o.retryScheduled('network');
    o.retryBudgetExhausted();
    o.queueWaited(0.01);
    o.bulkheadRejected();
    o.bulkheadRejected();
    o.timedOut('attempt');
    o.timedOut('total');
    o.circuitTransition('open');
    o.circuitTransition('half_open');
    o.circuitRejected();

    const l = `origin="${ORIGIN}"`;
    assert.equal(
      await scrape(registry, 'breakwater_requests_total'),
      [
        '# HELP breakwater_requests_total Logical requests finished, by outcome (success, failure, bulkhead_rejected, circuit_open, rate_limited, timeout, aborted).',
        '# TYPE breakwater_requests_total counter',
        `breakwater_requests_total{${l},method="GET",outcome="success"} 2`,
        `breakwater_requests_total{${l},method="POST",outcome="failure"} 1`,
        `breakwater_requests_total{${l},method="_OTHER",outcome="timeout"} 1`,
      ].join('\n'),
    );
    assert.equal(
      await scrape(registry, 'breakwater_request_duration_seconds'),
      [
        '# HELP breakwater_request_duration_seconds Duration of whole requests as the caller saw them, queueing and retries included.',
        '# TYPE breakwater_request_duration_seconds histogram',
        `breakwater_request_duration_seconds_bucket{le="0.1",${l},method="GET",status_class="2xx"} 1`,
        `breakwater_request_duration_seconds_bucket{le="1",${l},method="GET",status_class="2xx"} 2`,
        `breakwater_request_duration_seconds_bucket{le="+Inf",${l},method="GET",status_class="2xx"} 2`,
        `breakwater_request_duration_seconds_sum{${l},method="GET",status_class="2xx"} 0.55`,
        `breakwater_request_duration_seconds_count{${l},method="GET",status_class="2xx"} 2`,
        `breakwater_request_duration_seconds_bucket{le="0.1",${l},method="POST",status_class="5xx"} 0`,
        `breakwater_request_duration_seconds_bucket{le="1",${l},method="POST",status_class="5xx"} 0`,
        `breakwater_request_duration_seconds_bucket{le="+Inf",${l},method="POST",status_class="5xx"} 1`,
        `breakwater_request_duration_seconds_sum{${l},method="POST",status_class="5xx"} 3`,
        `breakwater_request_duration_seconds_count{${l},method="POST",status_class="5xx"} 1`,
        `breakwater_request_duration_seconds_bucket{le="0.1",${l},method="_OTHER",status_class="timeout"} 0`,
        `breakwater_request_duration_seconds_bucket{le="1",${l},method="_OTHER",status_class="timeout"} 0`,
        `breakwater_request_duration_seconds_bucket{le="+Inf",${l},method="_OTHER",status_class="timeout"} 1`,
        `breakwater_request_duration_seconds_sum{${l},method="_OTHER",status_class="timeout"} 2`,
        `breakwater_request_duration_seconds_count{${l},method="_OTHER",status_class="timeout"} 1`,
      ].join('\n'),
    );
    assert.equal(
      await scrape(registry, 'breakwater_attempts_total'),
      [
        '# HELP breakwater_attempts_total Attempts sent upstream, by status class or error kind.',
        '# TYPE breakwater_attempts_total counter',
        `breakwater_attempts_total{${l},method="GET",status_class="5xx"} 1`,
        `breakwater_attempts_total{${l},method="GET",status_class="2xx"} 2`,
      ].join('\n'),
    );
    assert.equal(
      await scrape(registry, 'breakwater_attempt_duration_seconds'),
      [
        '# HELP breakwater_attempt_duration_seconds Duration of one attempt, from dispatch to its response headers or its failure.',
        '# TYPE breakwater_attempt_duration_seconds histogram',
        `breakwater_attempt_duration_seconds_bucket{le="0.1",${l},method="GET",status_class="5xx"} 1`,
        `breakwater_attempt_duration_seconds_bucket{le="1",${l},method="GET",status_class="5xx"} 1`,
        `breakwater_attempt_duration_seconds_bucket{le="+Inf",${l},method="GET",status_class="5xx"} 1`,
        `breakwater_attempt_duration_seconds_sum{${l},method="GET",status_class="5xx"} 0.02`,
        `breakwater_attempt_duration_seconds_count{${l},method="GET",status_class="5xx"} 1`,
        `breakwater_attempt_duration_seconds_bucket{le="0.1",${l},method="GET",status_class="2xx"} 1`,
        `breakwater_attempt_duration_seconds_bucket{le="1",${l},method="GET",status_class="2xx"} 2`,
        `breakwater_attempt_duration_seconds_bucket{le="+Inf",${l},method="GET",status_class="2xx"} 2`,
        `breakwater_attempt_duration_seconds_sum{${l},method="GET",status_class="2xx"} 0.23`,
        `breakwater_attempt_duration_seconds_count{${l},method="GET",status_class="2xx"} 2`,
      ].join('\n'),
    );
    assert.equal(
      await scrape(registry, 'breakwater_queue_wait_seconds'),
      [
        '# HELP breakwater_queue_wait_seconds Time requests spent waiting for a bulkhead slot.',
        '# TYPE breakwater_queue_wait_seconds histogram',
        `breakwater_queue_wait_seconds_bucket{le="0.1",${l}} 1`,
        `breakwater_queue_wait_seconds_bucket{le="1",${l}} 1`,
        `breakwater_queue_wait_seconds_bucket{le="+Inf",${l}} 1`,
        `breakwater_queue_wait_seconds_sum{${l}} 0.01`,
        `breakwater_queue_wait_seconds_count{${l}} 1`,
      ].join('\n'),
    );
    const counters = (await samples(registry)).filter(
      (line) =>
        !line.startsWith('breakwater_requests_total') &&
        !line.startsWith('breakwater_attempts_total') &&
        !line.includes('_seconds'),
    );
    assert.deepEqual(counters, [
      `breakwater_retries_total{${l},reason="status"} 2`,
      `breakwater_retries_total{${l},reason="network"} 1`,
      `breakwater_retry_budget_exhausted_total{${l}} 1`,
      `breakwater_bulkhead_rejections_total{${l}} 2`,
      `breakwater_timeouts_total{${l},scope="attempt"} 1`,
      `breakwater_timeouts_total{${l},scope="total"} 1`,
      `breakwater_circuit_transitions_total{${l},to="open"} 1`,
      `breakwater_circuit_transitions_total{${l},to="half_open"} 1`,
      `breakwater_circuit_rejections_total{${l}} 1`,
    ]);
  });

  test('every metric of the specification is registered, with its type', async () => {
    const registry = new Registry();
    prometheusMetrics({ registry });
    const text = await registry.metrics();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)]
      .map(([, name, type]) => `${name} ${type}`)
      .sort();
    assert.deepEqual(types, [
      'breakwater_attempt_duration_seconds histogram',
      'breakwater_attempts_total counter',
      'breakwater_bulkhead_rejections_total counter',
      'breakwater_circuit_rejections_total counter',
      'breakwater_circuit_state gauge',
      'breakwater_circuit_transitions_total counter',
      'breakwater_concurrency_limit gauge',
      'breakwater_hedge_delay_seconds gauge',
      'breakwater_hedges_total counter',
      'breakwater_in_flight gauge',
      'breakwater_queue_depth gauge',
      'breakwater_queue_wait_seconds histogram',
      'breakwater_request_duration_seconds histogram',
      'breakwater_requests_total counter',
      'breakwater_retries_total counter',
      'breakwater_retry_budget_exhausted_total counter',
      'breakwater_store_errors_total counter',
      'breakwater_timeouts_total counter',
    ]);
    // Nothing happened yet: no series at all, only HELP and TYPE.
    assert.deepEqual(await samples(registry), []);
  });

  test('default buckets are OpenTelemetry HTTP client buckets, in seconds', async () => {
    const registry = new Registry();
    prometheusMetrics({ registry }).origin(ORIGIN).queueWaited(0.003);
    const les = [...(await scrape(registry, 'breakwater_queue_wait_seconds')).matchAll(/le="([^"]+)"/g)].map(
      (m) => m[1],
    );
    assert.deepEqual(les, [
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.075',
      '0.1',
      '0.25',
      '0.5',
      '0.75',
      '1',
      '2.5',
      '5',
      '7.5',
      '10',
      '+Inf',
    ]);
  });

  test('a custom prefix names every metric', async () => {
    const registry = new Registry();
    prometheusMetrics({ registry, prefix: 'myapp_http_' }).origin(ORIGIN).bulkheadRejected();
    assert.deepEqual(await samples(registry), [`myapp_http_bulkhead_rejections_total{origin="${ORIGIN}"} 1`]);
    assert.equal(registry.getSingleMetric('breakwater_requests_total'), undefined);
  });

  test('counts accumulate across scrapes and restart after registry.resetMetrics()', async () => {
    const registry = new Registry();
    const o = prometheusMetrics({ registry }).origin(ORIGIN);
    o.circuitRejected();
    assert.deepEqual(await samples(registry), [`breakwater_circuit_rejections_total{origin="${ORIGIN}"} 1`]);
    o.circuitRejected();
    o.circuitRejected();
    assert.deepEqual(await samples(registry), [`breakwater_circuit_rejections_total{origin="${ORIGIN}"} 3`]);
    assert.deepEqual(await samples(registry), [`breakwater_circuit_rejections_total{origin="${ORIGIN}"} 3`]);
    registry.resetMetrics();
    o.circuitRejected();
    assert.deepEqual(await samples(registry), [`breakwater_circuit_rejections_total{origin="${ORIGIN}"} 1`]);
  });

  test('getMetricsAsJSON sees the same numbers as the text exposition', async () => {
    const registry = new Registry();
    const o = prometheusMetrics({ registry, buckets: [1] }).origin(ORIGIN);
    o.requestFinished('GET', 'success', '2xx', 0.5);
    const json = await registry.getMetricsAsJSON();
    const requests = json.find((m) => m.name === 'breakwater_requests_total');
    assert.deepEqual(requests?.values, [
      { labels: { origin: ORIGIN, method: 'GET', outcome: 'success' }, value: 1 },
    ]);
    const duration = json.find((m) => m.name === 'breakwater_request_duration_seconds');
    const count = duration?.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count'));
    assert.equal(count?.value, 1);
  });

  test('ignores durations that are not finite non-negative numbers', async () => {
    const registry = new Registry();
    const o = prometheusMetrics({ registry, buckets: [1] }).origin(ORIGIN);
    o.queueWaited(Number.NaN);
    o.queueWaited(-1);
    o.queueWaited(Number.POSITIVE_INFINITY);
    o.queueWaited(2);
    assert.match(await scrape(registry, 'breakwater_queue_wait_seconds'), /_count\{origin="[^"]+"\} 1$/);
  });
});

describe('prometheusMetrics: gauges read at scrape time', () => {
  test('queue depth, in-flight and circuit state come from the attached sources', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    let keys: KeySnapshot[] = [
      { key: 'http://a.test:80', origin: 'http://a.test:80', queued: 3, inFlight: 8, circuit: 'closed' },
      { key: 'http://b.test:443', origin: 'http://b.test:443', queued: 0, inFlight: 1, circuit: 'open' },
    ];
    metrics.attach(source(() => keys));

    assert.deepEqual(await samples(registry), [
      'breakwater_queue_depth{origin="http://a.test:80"} 3',
      'breakwater_queue_depth{origin="http://b.test:443"} 0',
      'breakwater_in_flight{origin="http://a.test:80"} 8',
      'breakwater_in_flight{origin="http://b.test:443"} 1',
      'breakwater_circuit_state{origin="http://a.test:80",state="closed"} 1',
      'breakwater_circuit_state{origin="http://a.test:80",state="open"} 0',
      'breakwater_circuit_state{origin="http://a.test:80",state="half_open"} 0',
      'breakwater_circuit_state{origin="http://b.test:443",state="closed"} 0',
      'breakwater_circuit_state{origin="http://b.test:443",state="open"} 1',
      'breakwater_circuit_state{origin="http://b.test:443",state="half_open"} 0',
    ]);

    // Live: the next scrape reads the new state, and a key that left is gone.
    keys = [
      { key: 'http://a.test:80', origin: 'http://a.test:80', queued: 1, inFlight: 2, circuit: 'half_open' },
    ];
    assert.deepEqual(await samples(registry), [
      'breakwater_queue_depth{origin="http://a.test:80"} 1',
      'breakwater_in_flight{origin="http://a.test:80"} 2',
      'breakwater_circuit_state{origin="http://a.test:80",state="closed"} 0',
      'breakwater_circuit_state{origin="http://a.test:80",state="open"} 0',
      'breakwater_circuit_state{origin="http://a.test:80",state="half_open"} 1',
    ]);
  });

  test('several pipelines and keys on one origin: sums, and the worst circuit state', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const origin = 'https://api.test:443';
    metrics.attach(
      source(() => [
        { key: 'tenant-1', origin, queued: 2, inFlight: 4, circuit: 'closed' },
        { key: 'tenant-2', origin, queued: 1, inFlight: 1, circuit: 'half_open' },
      ]),
    );
    metrics.attach(source(() => [{ key: origin, origin, queued: 5, inFlight: 6, circuit: 'open' }]));
    // A pipeline without a breaker reports no circuit state.
    metrics.attach(source(() => [{ key: origin, origin, queued: 10, inFlight: 20 }]));

    assert.deepEqual(await samples(registry), [
      `breakwater_queue_depth{origin="${origin}"} 18`,
      `breakwater_in_flight{origin="${origin}"} 31`,
      `breakwater_circuit_state{origin="${origin}",state="closed"} 0`,
      `breakwater_circuit_state{origin="${origin}",state="open"} 1`,
      `breakwater_circuit_state{origin="${origin}",state="half_open"} 0`,
    ]);
  });

  test('half_open outranks closed', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const origin = 'http://x.test:80';
    metrics.attach(
      source(() => [
        { key: '1', origin, queued: 0, inFlight: 0, circuit: 'half_open' },
        { key: '2', origin, queued: 0, inFlight: 0, circuit: 'closed' },
      ]),
    );
    const text = await scrape(registry, 'breakwater_circuit_state');
    assert.match(text, /state="half_open"\} 1/);
    assert.match(text, /state="closed"\} 0/);
  });

  test('snapshot origins are bounded like request origins; "other" takes no slot', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry, maxOrigins: 1 });
    metrics.attach(
      source(() => [
        { key: 'custom-key', origin: 'other', queued: 1, inFlight: 0 },
        { key: 'a', origin: 'http://a.test:80', queued: 2, inFlight: 0 },
        { key: 'b', origin: 'http://b.test:80', queued: 4, inFlight: 0 },
      ]),
    );
    assert.equal(
      await scrape(registry, 'breakwater_queue_depth'),
      [
        '# HELP breakwater_queue_depth Requests waiting for a bulkhead slot.',
        '# TYPE breakwater_queue_depth gauge',
        'breakwater_queue_depth{origin="other"} 5',
        'breakwater_queue_depth{origin="http://a.test:80"} 2',
      ].join('\n'),
    );
  });

  test('attach() rejects what is not a state source', () => {
    const metrics = prometheusMetrics({ registry: new Registry() });
    assert.throws(() => metrics.attach({} as never), InvalidOptionError);
  });
});

describe('prometheusMetrics: bounded labels', () => {
  test('500 origins with maxOrigins 100 give 101 origin label values, "other" included', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry, maxOrigins: 100 });
    for (let i = 0; i < 500; i++) {
      const o = metrics.origin(`http://host-${i}.test:8080`);
      o.requestFinished('GET', 'success', '2xx', 0.01);
      o.attemptFinished('GET', '2xx', 0.01);
    }
    const text = await registry.metrics();
    const origins = new Set([...text.matchAll(/origin="([^"]*)"/g)].map((m) => m[1]));
    assert.equal(origins.size, 101);
    assert.ok(origins.has('other'));
    assert.ok(origins.has('http://host-0.test:8080'));
    assert.ok(origins.has('http://host-99.test:8080'));
    assert.ok(!origins.has('http://host-100.test:8080'));
    assert.match(text, /breakwater_requests_total\{origin="other",method="GET",outcome="success"\} 400/);
    assert.match(
      text,
      /breakwater_requests_total\{origin="http:\/\/host-7.test:8080",method="GET",outcome="success"\} 1/,
    );
  });

  test('origin() hands out one observer per label value, the "other" one beyond the bound', () => {
    const metrics = prometheusMetrics({ registry: new Registry(), maxOrigins: 2 });
    const a = metrics.origin('http://a.test:80');
    assert.equal(metrics.origin('http://a.test:80'), a);
    assert.equal(metrics.origin('http://a.test'), a, 'the same origin spelled differently');
    const b = metrics.origin('http://b.test:80');
    const c = metrics.origin('http://c.test:80');
    const d = metrics.origin('http://d.test:80');
    assert.notEqual(a, b);
    assert.equal(c, d);
    assert.equal(metrics.origin('other'), c);
    // Already known label values keep their own series once the bound is reached.
    assert.equal(metrics.origin('http://b.test:80'), b);
  });

  test('maxOrigins 0 puts everything under "other"', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry, maxOrigins: 0 });
    metrics.origin(ORIGIN).bulkheadRejected();
    assert.deepEqual(await samples(registry), ['breakwater_bulkhead_rejections_total{origin="other"} 1']);
  });

  test('credentials, paths and query strings never reach a label', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    metrics
      .origin('https://alice:s3cret@api.test/v1/users/42?token=abc#frag')
      .requestFinished('GET', 'success', '2xx', 0.1);
    metrics.origin('HTTP://Bob:pw@API.test:8080/x').retryScheduled('network');
    metrics.origin('garbage with spaces').timedOut('total');
    metrics.attach(
      source(() => [{ key: 'k', origin: 'https://carol:pw@api.test/secret?q=1', queued: 1, inFlight: 0 }]),
    );
    const text = await registry.metrics();
    for (const leak of [
      'alice',
      's3cret',
      'bob',
      'Bob',
      'carol',
      'pw@',
      '/v1',
      'token',
      'abc',
      '#frag',
      '/secret',
      'q=1',
      '/x',
    ]) {
      assert.ok(!text.includes(leak), `"${leak}" leaked into the exposition`);
    }
    const origins = new Set([...text.matchAll(/origin="([^"]*)"/g)].map((m) => m[1]));
    assert.deepEqual([...origins].sort(), ['http://api.test:8080', 'https://api.test:443', 'unknown']);
  });

  test('methods are upper-cased known methods or _OTHER', async () => {
    const registry = new Registry();
    const o = prometheusMetrics({ registry }).origin(ORIGIN);
    for (const method of ['GET', 'get', 'Patch', 'PROPFIND', 'x'.repeat(100), 'BREW'])
      o.attemptFinished(method, '2xx', 0.01);
    const methods = [
      ...(await scrape(registry, 'breakwater_attempts_total')).matchAll(/method="([^"]*)"/g),
    ].map((m) => m[1]);
    assert.deepEqual(methods, ['GET', 'PATCH', '_OTHER']);
  });
});

describe('prometheusMetrics: sharing a registry', () => {
  test('two metrics objects on one registry share the metrics', async () => {
    const registry = new Registry();
    const first = prometheusMetrics({ registry });
    const second = prometheusMetrics({ registry });
    assert.notEqual(first, second);
    first.origin(ORIGIN).requestFinished('GET', 'success', '2xx', 0.1);
    second.origin(ORIGIN).requestFinished('GET', 'success', '2xx', 0.2);
    first.attach(source(() => [{ key: ORIGIN, origin: ORIGIN, queued: 1, inFlight: 2, circuit: 'closed' }]));
    second.attach(source(() => [{ key: ORIGIN, origin: ORIGIN, queued: 10, inFlight: 20, circuit: 'open' }]));
    const lines = await samples(registry);
    assert.ok(
      lines.includes(`breakwater_requests_total{origin="${ORIGIN}",method="GET",outcome="success"} 2`),
    );
    assert.ok(
      lines.includes(
        `breakwater_request_duration_seconds_count{origin="${ORIGIN}",method="GET",status_class="2xx"} 2`,
      ),
    );
    assert.ok(lines.includes(`breakwater_queue_depth{origin="${ORIGIN}"} 11`));
    assert.ok(lines.includes(`breakwater_in_flight{origin="${ORIGIN}"} 22`));
    assert.ok(lines.includes(`breakwater_circuit_state{origin="${ORIGIN}",state="open"} 1`));
    assert.equal((await registry.metrics()).match(/# TYPE breakwater_requests_total /g)?.length, 1);
  });

  test('an OpenMetrics registry can be shared after it has been scraped', async () => {
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    prometheusMetrics({ registry }).origin(ORIGIN).bulkheadRejected();
    // prom-client renames counters in place while writing OpenMetrics.
    assert.match(await registry.metrics(), /breakwater_bulkhead_rejections_total\{origin="[^"]+"\} 1\n/);
    prometheusMetrics({ registry }).origin(ORIGIN).bulkheadRejected();
    const text = await registry.metrics();
    assert.match(text, /breakwater_bulkhead_rejections_total\{origin="[^"]+"\} 2\n/);
    assert.ok(text.endsWith('# EOF\n'));
  });

  test('different prefixes on one registry are independent', async () => {
    const registry = new Registry();
    prometheusMetrics({ registry, prefix: 'a_' }).origin(ORIGIN).bulkheadRejected();
    prometheusMetrics({ registry, prefix: 'b_' }).origin(ORIGIN).circuitRejected();
    assert.deepEqual(await samples(registry), [
      `a_bulkhead_rejections_total{origin="${ORIGIN}"} 1`,
      `b_circuit_rejections_total{origin="${ORIGIN}"} 1`,
    ]);
  });

  test('a compatible counter registered by someone else is used through cached children', async () => {
    const registry = new Registry();
    const counter = new Counter({
      name: 'breakwater_requests_total',
      help: 'mine',
      labelNames: ['outcome', 'origin', 'method'],
      registers: [registry],
    });
    const histogram = new Histogram({
      name: 'breakwater_request_duration_seconds',
      help: 'mine',
      labelNames: ['origin', 'method', 'status_class'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
      registers: [registry],
    });
    const counterLabels = spy(counter, 'labels');
    const histogramLabels = spy(histogram, 'labels');
    const o = prometheusMetrics({ registry }).origin(ORIGIN);
    for (let i = 0; i < 1000; i++) o.requestFinished('GET', 'success', '2xx', 0.01);
    assert.equal(counterLabels.calls, 1);
    assert.equal(histogramLabels.calls, 1);
    const text = await registry.metrics();
    assert.match(text, /breakwater_requests_total\{origin="[^"]+",method="GET",outcome="success"\} 1000/);
    assert.match(
      text,
      /breakwater_request_duration_seconds_count\{origin="[^"]+",method="GET",status_class="2xx"\} 1000/,
    );
  });
});

describe('prometheusMetrics: conflicts in the registry', () => {
  const cases: Array<[string, (registry: Registry) => void, RegExp]> = [
    [
      'a gauge where a counter belongs',
      (registry) =>
        new Gauge({
          name: 'breakwater_requests_total',
          help: 'x',
          labelNames: ['origin'],
          registers: [registry],
        }),
      /breakwater_requests_total.*counter with labels \(origin, method, outcome\).*got "a gauge with labels \(origin\)"/,
    ],
    [
      'a counter with other labels',
      (registry) =>
        new Counter({
          name: 'breakwater_retries_total',
          help: 'x',
          labelNames: ['origin', 'why'],
          registers: [registry],
        }),
      /breakwater_retries_total.*got "a counter with labels \(origin, why\)"/,
    ],
    [
      'a histogram with other buckets',
      (registry) =>
        new Histogram({
          name: 'breakwater_queue_wait_seconds',
          help: 'x',
          labelNames: ['origin'],
          buckets: [1, 2],
          registers: [registry],
        }),
      /breakwater_queue_wait_seconds.*got "a histogram with buckets \(1, 2\)/,
    ],
    [
      'a gauge of its own where breakwater computes one at scrape time',
      (registry) =>
        new Gauge({
          name: 'breakwater_queue_depth',
          help: 'x',
          labelNames: ['origin'],
          registers: [registry],
        }),
      /breakwater_queue_depth.*registered by something else/,
    ],
  ];
  for (const [name, preRegister, message] of cases) {
    test(name, () => {
      const registry = new Registry();
      preRegister(registry);
      assert.throws(
        () => prometheusMetrics({ registry }),
        (err: unknown) => {
          assert.ok(err instanceof InvalidOptionError);
          assert.equal(err.code, 'BREAKWATER_INVALID_OPTION');
          assert.equal(err.path, 'metrics.registry');
          assert.match(err.message, message);
          assert.match(err.message, /metrics\.prefix/);
          return true;
        },
      );
      // Found before anything was registered: only the pre-registered metric is there.
      assert.equal(registry.getMetricsAsArray().length, 1);
    });
  }

  test('another prefix avoids the conflict', () => {
    const registry = new Registry();
    new Gauge({ name: 'breakwater_requests_total', help: 'x', registers: [registry] });
    assert.ok(prometheusMetrics({ registry, prefix: 'bw_' }) instanceof PrometheusMetrics);
  });
});

describe('prometheusMetrics: options', () => {
  const registry = new Registry();
  const cases: Array<[string, unknown, string, RegExp?]> = [
    ['no options', undefined, 'metrics'],
    ['no registry', {}, 'metrics.registry', /expected metrics\.registry to be a prom-client Registry/],
    [
      'the global registry',
      { registry: globalRegister },
      'metrics.registry',
      /not prom-client's global register/,
    ],
    ['a registry-like string', { registry: 'default' }, 'metrics.registry'],
    [
      'prefix with a dash',
      { registry, prefix: 'my-app_' },
      'metrics.prefix',
      /expected metrics\.prefix to be a Prometheus metric name prefix.*got "my-app_"/,
    ],
    ['prefix starting with a digit', { registry, prefix: '1app_' }, 'metrics.prefix'],
    ['prefix with a colon', { registry, prefix: 'app:' }, 'metrics.prefix'],
    ['prefix not a string', { registry, prefix: 7 }, 'metrics.prefix'],
    ['buckets empty', { registry, buckets: [] }, 'metrics.buckets'],
    ['buckets not an array', { registry, buckets: 0.1 }, 'metrics.buckets'],
    ['buckets decreasing', { registry, buckets: [0.1, 1, 0.5] }, 'metrics.buckets[2]', /> 1, got 0\.5/],
    ['buckets zero', { registry, buckets: [0] }, 'metrics.buckets[0]'],
    ['buckets Infinity', { registry, buckets: [1, Number.POSITIVE_INFINITY] }, 'metrics.buckets[1]'],
    ['buckets string', { registry, buckets: ['1'] }, 'metrics.buckets[0]'],
    [
      'maxOrigins -1',
      { registry, maxOrigins: -1 },
      'metrics.maxOrigins',
      /expected metrics\.maxOrigins to be an integer >= 0, got -1/,
    ],
    ['maxOrigins 1.5', { registry, maxOrigins: 1.5 }, 'metrics.maxOrigins'],
    ['unknown option', { registry, maxOrigin: 5 }, 'metrics.maxOrigin'],
    ['dispatchers not an array', { registry, dispatchers: {} }, 'metrics.dispatchers'],
    [
      'dispatchers with a Pool-like stats',
      { registry, dispatchers: [{ stats: { connected: 1 } }] },
      'metrics.dispatchers[0]',
    ],
    ['dispatchers without stats', { registry, dispatchers: [{}] }, 'metrics.dispatchers[0]'],
  ];
  for (const [name, options, path, message] of cases) {
    test(name, () => {
      assert.throws(
        () => prometheusMetrics(options as never),
        (err: unknown) => {
          assert.ok(err instanceof InvalidOptionError, String(err));
          assert.equal(err.path, path);
          if (message) assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  test('a rejected call registers nothing', () => {
    const fresh = new Registry();
    assert.throws(() => prometheusMetrics({ registry: fresh, buckets: [] }));
    assert.deepEqual(fresh.getMetricsAsArray(), []);
  });

  test('nothing lands in the global registry', async () => {
    const before = await globalRegister.metrics();
    prometheusMetrics({ registry: new Registry() })
      .origin(ORIGIN)
      .requestFinished('GET', 'success', '2xx', 0.1);
    assert.equal(await globalRegister.metrics(), before);
    assert.equal(globalRegister.getSingleMetric('breakwater_requests_total'), undefined);
  });
});

describe('prometheusMetrics: hot path', () => {
  test('after warm-up, events neither build label objects nor call prom-client', async () => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const o = metrics.origin(ORIGIN);
    const drive = () => {
      o.requestFinished('GET', 'success', '2xx', 0.01);
      o.attemptFinished('GET', '2xx', 0.01);
      o.retryScheduled('status');
      o.queueWaited(0.001);
      o.timedOut('attempt');
      o.circuitTransition('open');
      o.bulkheadRejected();
    };
    drive(); // warm-up: every series is resolved once

    const counter = registry.getSingleMetric('breakwater_requests_total') as Counter;
    const histogram = registry.getSingleMetric('breakwater_request_duration_seconds') as Histogram;
    const spies = [
      spy(counter, 'labels'),
      spy(counter, 'inc'),
      spy(histogram, 'labels'),
      spy(histogram, 'observe'),
    ];
    for (let i = 0; i < 10_000; i++) {
      assert.equal(metrics.origin(ORIGIN), o);
      drive();
    }
    assert.deepEqual(
      spies.map((s) => s.calls),
      [0, 0, 0, 0],
    );
    // The scrape adds the pending increments in one call per series.
    const text = await registry.metrics();
    assert.equal(spies[1]?.calls, 1);
    assert.equal(spies[0]?.calls, 0);
    assert.match(text, /breakwater_requests_total\{[^}]+\} 10001\n/);
    assert.match(text, /breakwater_request_duration_seconds_count\{[^}]+\} 10001\n/);
  });
});

/** Counts calls to `object[method]` (our own metric objects; nothing of undici). */
function spy<T extends object>(object: T, method: keyof T & string): { calls: number } {
  const counter = { calls: 0 };
  const original = (object as Record<string, (...args: unknown[]) => unknown>)[method] as (
    ...args: unknown[]
  ) => unknown;
  (object as Record<string, unknown>)[method] = function (this: unknown, ...args: unknown[]) {
    counter.calls++;
    return original.apply(this, args);
  };
  return counter;
}
