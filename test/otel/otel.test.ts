import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, afterEach, before, describe, test } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { Histogram } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import {
  bulkhead,
  circuitBreaker,
  InvalidOptionError,
  pipeline,
  prometheusMetrics,
  resilient,
  retry,
} from '../../src/index.js';
import { openTelemetryMetrics, openTelemetryTracing } from '../../src/otel/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { type OtelSdk, startSdk } from './helpers.js';

// breakwater/otel with the real OpenTelemetry SDK (in-memory exporters) against a real local
// server: metrics per logical request, a span per attempt.

const quick = retry({ maxAttempts: 3, backoff: { initialDelay: 5, maxDelay: 5 }, budget: false });

describe('breakwater/otel', () => {
  let upstream: Upstream;
  let sdk: OtelSdk;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(async () => {
    upstream.reset();
    await sdk?.shutdown();
  });

  test('a 503-then-200 GET: one http.client.request.duration point (200), two attempt spans under the caller, the second with resend_count 1', async (t) => {
    sdk = startSdk();
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const tracing = openTelemetryTracing({ tracerProvider: sdk.tracerProvider });
    t.after(() => tracing.disable());
    const retries: unknown[] = [];
    const onRetry = (m: unknown) => retries.push(m);
    subscribe('breakwater:retry', onRetry);
    t.after(() => unsubscribe('breakwater:retry', onRetry));
    const dispatcher = resilient(
      new Agent(),
      pipeline([quick], { metrics: openTelemetryMetrics({ meterProvider: sdk.meterProvider }) }),
    );
    t.after(() => dispatcher.destroy());

    const caller = await sdk.inCallerSpan(async (span) => {
      const res = await request(upstream.url('/private?token=secret'), { dispatcher });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'ok');
      return span.spanContext();
    });
    assert.equal(upstream.requests.length, 2, 'the server saw two attempts');
    assert.equal(retries.length, 1, 'a breakwater:retry subscriber saw the retry');
    const port = Number(new URL(upstream.origin).port);

    const durations = await sdk.points('http.client.request.duration');
    assert.equal(durations.length, 1);
    assert.deepEqual(durations[0]!.attributes, {
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': port,
      'http.response.status_code': 200,
    });
    const histogram = durations[0]!.value as Histogram;
    assert.equal(histogram.count, 1);
    assert.deepEqual(
      histogram.buckets.boundaries,
      [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
    );
    const attempts = await sdk.points('breakwater.client.attempts');
    assert.deepEqual(
      attempts
        .map((p) => [p.attributes['http.response.status_code'], p.attributes['error.type'], p.value])
        .sort(),
      [
        [200, undefined, 1],
        [503, '503', 1],
      ],
    );
    const retried = await sdk.points('breakwater.client.retries');
    assert.deepEqual(
      retried.map((p) => [p.attributes['breakwater.retry.reason'], p.value]),
      [['status', 1]],
    );

    const spans = sdk.spans.getFinishedSpans().filter((s) => s.name !== 'caller');
    assert.equal(spans.length, 2);
    for (const span of spans) {
      assert.equal(span.kind, SpanKind.CLIENT);
      assert.equal(span.name, 'GET');
      assert.equal(span.spanContext().traceId, caller.traceId);
      assert.equal(span.parentSpanContext?.spanId, caller.spanId, 'a child of the caller span');
      assert.equal(span.attributes['server.address'], '127.0.0.1');
      assert.equal(span.attributes['server.port'], port);
      assert.ok(!JSON.stringify(span.attributes).includes('secret'));
    }
    const [first, second] = spans.sort(
      (a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1],
    );
    assert.equal(first!.attributes['http.request.resend_count'], undefined);
    assert.equal(first!.attributes['http.response.status_code'], 503);
    assert.equal(first!.attributes['error.type'], '503');
    assert.equal(first!.status.code, SpanStatusCode.ERROR);
    assert.equal(second!.attributes['http.request.resend_count'], 1);
    assert.equal(second!.attributes['http.response.status_code'], 200);
    assert.equal(second!.attributes['error.type'], undefined);
    assert.notEqual(second!.status.code, SpanStatusCode.ERROR);
    // The backoff is an event on the attempt that followed it, not a span of its own.
    assert.deepEqual(
      second!.events.map((e) => e.name),
      ['breakwater.backoff'],
    );
    assert.equal(second!.events[0]!.attributes?.['breakwater.retry.reason'], 'status');
  });

  test('Prometheus and OpenTelemetry side by side both count the request', async (t) => {
    sdk = startSdk();
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    const registry = new Registry();
    const dispatcher = resilient(
      new Agent(),
      pipeline([quick], {
        metrics: [
          prometheusMetrics({ registry }),
          openTelemetryMetrics({ meterProvider: sdk.meterProvider }),
        ],
      }),
    );
    t.after(() => dispatcher.destroy());
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    const text = await registry.metrics();
    assert.match(text, /breakwater_requests_total\{[^}]*outcome="success"\} 1\n/);
    assert.match(text, /breakwater_request_duration_seconds_count\{[^}]*status_class="2xx"\} 1\n/);
    const durations = await sdk.points('http.client.request.duration');
    assert.equal(durations.length, 1);
    assert.equal((durations[0]!.value as Histogram).count, 1);
    const attempts = await sdk.points('breakwater.client.attempts');
    assert.equal(
      attempts.reduce((n, p) => n + (p.value as number), 0),
      2,
    );
  });

  test('a failed request records error.type and no status; queue, in-flight and circuit state are observed at collection', async (t) => {
    sdk = startSdk();
    const metrics = openTelemetryMetrics({ meterProvider: sdk.meterProvider });
    const dispatcher = resilient(
      new Agent(),
      pipeline([retry({ maxAttempts: 1 }), circuitBreaker(), bulkhead({ maxConcurrent: 2, maxQueue: 2 })], {
        metrics,
      }),
    );
    t.after(() => dispatcher.destroy());
    // A port nothing listens on: the connection is refused.
    const closed = await startUpstream();
    const url = closed.url('/');
    await closed.close();
    await assert.rejects(request(url, { dispatcher }));
    const durations = await sdk.points('http.client.request.duration');
    assert.equal(durations.length, 1);
    assert.equal(durations[0]!.attributes['error.type'], 'ECONNREFUSED');
    assert.equal(durations[0]!.attributes['http.response.status_code'], undefined);
    const port = Number(new URL(url).port);
    const circuit = await sdk.points('breakwater.client.circuit.state');
    assert.deepEqual(
      circuit
        .filter((p) => p.attributes['server.port'] === port)
        .map((p) => [p.attributes['breakwater.circuit.state'], p.value])
        .sort(),
      [
        ['closed', 1],
        ['half_open', 0],
        ['open', 0],
      ],
    );
    const queued = await sdk.points('breakwater.client.queued_requests');
    assert.deepEqual(
      queued.map((p) => [p.attributes['server.port'], p.value]),
      [[port, 0]],
    );
    const active = await sdk.points('breakwater.client.active_attempts');
    assert.deepEqual(
      active.map((p) => [p.attributes['server.port'], p.value]),
      [[port, 0]],
    );
  });

  test('a wait for a bulkhead slot is an event on the attempt that waited', async (t) => {
    sdk = startSdk();
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 50 });
    const tracing = openTelemetryTracing({ tracerProvider: sdk.tracerProvider });
    t.after(() => tracing.disable());
    const dispatcher = resilient(new Agent(), pipeline([quick, bulkhead({ maxConcurrent: 1, maxQueue: 1 })]));
    t.after(() => dispatcher.destroy());
    await sdk.inCallerSpan(() =>
      Promise.all([1, 2].map(async () => (await request(upstream.url('/'), { dispatcher })).body.text())),
    );
    const spans = sdk.spans.getFinishedSpans().filter((s) => s.name !== 'caller');
    assert.equal(spans.length, 2);
    const waited = spans.flatMap((s) => s.events).filter((e) => e.name === 'breakwater.queue.wait');
    assert.equal(waited.length, 1);
    assert.ok((waited[0]!.attributes?.['breakwater.queue.wait.duration'] as number) >= 0.03);
  });

  test('disable() stops the spans', async (t) => {
    sdk = startSdk();
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
    const tracing = openTelemetryTracing({ tracerProvider: sdk.tracerProvider });
    tracing.disable();
    const dispatcher = resilient(new Agent(), pipeline([quick]));
    t.after(() => dispatcher.destroy());
    await sdk.inCallerSpan(async () => (await request(upstream.url('/'), { dispatcher })).body.text());
    assert.deepEqual(
      sdk.spans.getFinishedSpans().map((s) => s.name),
      ['caller'],
    );
  });

  test('bad options name their path', () => {
    sdk = startSdk();
    const cases: Array<[() => unknown, string]> = [
      [() => openTelemetryMetrics({ meterProvider: {} as never }), 'openTelemetryMetrics.meterProvider'],
      [() => openTelemetryMetrics({ provider: 1 } as never), 'openTelemetryMetrics.provider'],
      [() => openTelemetryTracing({ tracerProvider: 7 as never }), 'openTelemetryTracing.tracerProvider'],
    ];
    for (const [make, path] of cases) {
      assert.throws(make, (err: unknown) => err instanceof InvalidOptionError && err.path === path, path);
    }
  });
});
