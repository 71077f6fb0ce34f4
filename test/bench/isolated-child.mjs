// The client of isolated.ts, in plain JavaScript so that valgrind need not run a TypeScript loader:
// node isolated-child.mjs VARIANT WARMUP REQUESTS, with BREAKWATER_BENCH_ENTRY naming the build.

import { subscribe } from 'node:diagnostics_channel';
import { Registry } from 'prom-client';
import { Dispatcher } from 'undici';

const { bulkhead, circuitBreaker, pipeline, prometheusMetrics, resilient, retry, standardPipeline, timeout } =
  await import(process.env.BREAKWATER_BENCH_ENTRY);

const RAW_HEADERS = [Buffer.from('content-length'), Buffer.from('2')];
const BODY = Buffer.from('ok');
const noop = () => {};
const controller = { aborted: false, paused: false, reason: null, abort: noop, pause: noop, resume: noop };

/** Answers every request on the next tick, in the handler API the handler speaks. */
class InstantDispatcher extends Dispatcher {
  dispatch(_opts, handler) {
    process.nextTick(answer, handler);
    return true;
  }
}

function answer(handler) {
  if (typeof handler.onRequestStart === 'function') {
    handler.onRequestStart(controller, {});
    handler.onResponseStart(controller, 200, { 'content-length': '2' }, 'OK');
    handler.onResponseData(controller, BODY);
    handler.onResponseEnd(controller, {});
  } else {
    handler.onConnect(noop, {});
    handler.onHeaders(200, RAW_HEADERS, noop, 'OK');
    handler.onData(BODY);
    handler.onComplete([]);
  }
}

/** A no-op Dispatcher subclass: what any wrapper costs before it does anything. */
class ForwardingDispatcher extends Dispatcher {
  #inner;
  constructor(inner) {
    super();
    this.#inner = inner;
  }
  dispatch(opts, handler) {
    return this.#inner.dispatch(opts, handler);
  }
}

/** The caller: a legacy handler, one per request, as undici 7's request() makes. */
class Sink {
  constructor(done) {
    this.done = done;
  }
  onConnect() {}
  onHeaders(status) {
    if (status !== 200) throw new Error(`status ${status}`);
    return true;
  }
  onData() {
    return true;
  }
  onComplete() {
    this.done();
  }
  onError(error) {
    throw error;
  }
}

export const VARIANTS = {
  direct: (inner) => inner,
  'noop-dispatcher': (inner) => new ForwardingDispatcher(inner),
  retry: (inner) => resilient(inner, pipeline([retry()])),
  std: (inner) => resilient(inner, standardPipeline()),
  'std-stage-by-stage': (inner) =>
    resilient(
      inner,
      pipeline([
        timeout(30_000),
        retry(),
        bulkhead({ maxConcurrent: 64, maxQueue: 1024 }),
        circuitBreaker({ halfOpenAfter: { initial: 5_000, max: 60_000 } }),
        timeout(10_000, { until: 'headers' }),
      ]),
    ),
  'std-metrics': (inner) =>
    resilient(inner, standardPipeline({ metrics: prometheusMetrics({ registry: new Registry() }) })),
  'std-subscribed': (inner) => {
    // Every Breakwater diagnostics channel has a subscriber that does nothing.
    for (const name of [
      'request:start',
      'request:end',
      'attempt:start',
      'attempt:end',
      'retry',
      'hedge',
      'circuit:state',
      'rejected',
      'queue:wait',
    ]) {
      subscribe(`breakwater:${name}`, () => {});
    }
    return resilient(inner, standardPipeline());
  },
  'std-otel': (inner) =>
    resilient(
      inner,
      standardPipeline({ metrics: otel.openTelemetryMetrics({ meterProvider: otelMeterProvider() }) }),
    ),
  'std-prometheus-otel': (inner) =>
    resilient(
      inner,
      standardPipeline({
        metrics: [
          prometheusMetrics({ registry: new Registry() }),
          otel.openTelemetryMetrics({ meterProvider: otelMeterProvider() }),
        ],
      }),
    ),
  'std-no-retry': (inner) => resilient(inner, standardPipeline({ retry: false })),
  timeout: (inner) => resilient(inner, pipeline([timeout(30_000)])),
  breaker: (inner) => resilient(inner, pipeline([circuitBreaker()])),
  bulkhead: (inner) => resilient(inner, pipeline([bulkhead({ maxConcurrent: 64, maxQueue: 1024 })])),
  'bulkhead-adaptive': (inner) =>
    resilient(inner, pipeline([bulkhead({ maxConcurrent: 'adaptive', maxQueue: 1024 })])),
};

const [name, warmup, requests] = process.argv.slice(2);
// breakwater/otel and the OpenTelemetry SDK are loaded only by the variants that use them.
const otel = name.includes('otel')
  ? await import(new URL('otel/index.js', process.env.BREAKWATER_BENCH_ENTRY))
  : null;
const sdk = name.includes('otel') ? await import('@opentelemetry/sdk-metrics') : null;

/** A real SDK meter provider with a reader that never exports during the run. */
function otelMeterProvider() {
  const exporter = new sdk.InMemoryMetricExporter(sdk.AggregationTemporality.CUMULATIVE);
  const reader = new sdk.PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  return new sdk.MeterProvider({ readers: [reader] });
}
const dispatcher = VARIANTS[name](new InstantDispatcher());
const base = { headers: null, body: null, throwOnError: false };

function run(count) {
  if (count === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let sent = 0;
    let done = 0;
    const finished = () => {
      done++;
      if (sent < count) send();
      else if (done === count) resolve();
    };
    const send = () => {
      sent++;
      // Built by a spread, as request() builds them: on Node 20 each gets a hidden class of its own.
      const opts = { ...base, origin: 'http://127.0.0.1:3000', path: '/', method: 'GET' };
      dispatcher.dispatch(opts, new Sink(finished));
    };
    for (let i = 0; i < Math.min(32, count); i++) send();
  });
}

// Warm-up in two halves, so that it also goes idle and wakes again before the counted requests
// (see client.ts: otherwise V8 recompiles part of the pipeline during the counted requests).
await run(Math.ceil(Number(warmup) / 2));
await run(Math.floor(Number(warmup) / 2));
await run(Number(requests));
