// npm run bench:observer-cost [-- --json]
//
// What a metrics observer costs per request on its own, in instructions under callgrind: the two
// events a request and its one attempt report (`attemptFinished`, `requestFinished`), called in
// a loop on one origin handle, without the pipeline around them (whose count moves by thousands
// of instructions from run to run, bench:isolated). Each observer runs in a fresh `node` under
// `valgrind --tool=callgrind` twice, with a short and a long loop; the difference over the extra
// iterations cancels start-up, registration and the one scrape at the end, and the empty loop is
// subtracted. Needs valgrind; about two minutes.
//
// - prometheus: prometheusMetrics() as it registers its metrics (counter cells, histogram cells
//   folded into prom-client at scrape time, src/metrics/histogram-cells.ts).
// - prometheus-public: the same metrics pre-registered in the registry, so prometheusMetrics()
//   updates them only through prom-client's public API (children from labels(), cached).
// - prometheus-public-histograms: only the histograms pre-registered: counters as cells, the
//   histograms through cached public children (what the library would do without
//   histogram-cells.ts).
// - otel: openTelemetryMetrics() with the OpenTelemetry SDK's MeterProvider and a reader.

import { buildLibrary, callgrindCount, parseArgs } from './common.js';

const OBSERVERS = {
  none: 'const o = { requestFinished() {}, attemptFinished() {} };',
  prometheus: `
    const { Registry } = await import('prom-client');
    const registry = new Registry();
    const o = lib.prometheusMetrics({ registry }).origin('http://127.0.0.1:3000');
    const scrape = () => registry.metrics();`,
  'prometheus-public': `
    const { Counter, Histogram, Registry } = await import('prom-client');
    const registry = new Registry();
    const buckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
    const labelNames = ['origin', 'method', 'status_class'];
    new Counter({ name: 'breakwater_requests_total', help: 'x', labelNames: ['origin', 'method', 'outcome'], registers: [registry] });
    new Counter({ name: 'breakwater_attempts_total', help: 'x', labelNames, registers: [registry] });
    new Histogram({ name: 'breakwater_request_duration_seconds', help: 'x', labelNames, buckets, registers: [registry] });
    new Histogram({ name: 'breakwater_attempt_duration_seconds', help: 'x', labelNames, buckets, registers: [registry] });
    const o = lib.prometheusMetrics({ registry }).origin('http://127.0.0.1:3000');
    const scrape = () => registry.metrics();`,
  'prometheus-public-histograms': `
    const { Histogram, Registry } = await import('prom-client');
    const registry = new Registry();
    const buckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
    const labelNames = ['origin', 'method', 'status_class'];
    new Histogram({ name: 'breakwater_request_duration_seconds', help: 'x', labelNames, buckets, registers: [registry] });
    new Histogram({ name: 'breakwater_attempt_duration_seconds', help: 'x', labelNames, buckets, registers: [registry] });
    const o = lib.prometheusMetrics({ registry }).origin('http://127.0.0.1:3000');
    const scrape = () => registry.metrics();`,
  otel: `
    const otel = await import(new URL('otel/index.js', process.env.BREAKWATER_BENCH_ENTRY));
    const sdk = await import('@opentelemetry/sdk-metrics');
    const exporter = new sdk.InMemoryMetricExporter(sdk.AggregationTemporality.CUMULATIVE);
    const reader = new sdk.PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new sdk.MeterProvider({ readers: [reader] });
    const o = otel.openTelemetryMetrics({ meterProvider }).origin('http://127.0.0.1:3000');
    const scrape = async () => { await reader.forceFlush(); await meterProvider.shutdown(); };`,
} as const;

const SHORT = 20_000;
const LONG = 120_000;

function program(setup: string, n: number): string {
  return `
    const lib = await import(process.env.BREAKWATER_BENCH_ENTRY);
    ${setup}
    for (let i = 0; i < ${n}; i++) {
      o.attemptFinished('GET', '2xx', 0.011, 200, null);
      o.requestFinished('GET', 'success', '2xx', 0.012, 200, null);
    }
    if (typeof scrape === 'function') await scrape();`;
}

const args = parseArgs(process.argv.slice(2));
const entry = buildLibrary((line) => console.error(line));
const env = { BREAKWATER_BENCH_ENTRY: entry };
const perRequest: Record<string, number> = {};
for (const [name, setup] of Object.entries(OBSERVERS)) {
  const count = (n: number) => callgrindCount(['--input-type=module', '-e', program(setup, n)], env);
  perRequest[name] = ((await count(LONG)) - (await count(SHORT))) / (LONG - SHORT);
}
const rows = Object.entries(perRequest)
  .filter(([name]) => name !== 'none')
  .map(([name, n]) => ({ observer: name, perRequest: Math.round(n - perRequest.none!) }));
if (args.has('json')) {
  console.log(JSON.stringify({ node: process.version, rows }, null, 2));
} else {
  console.log(`${process.version}; instructions per request (one attempt), the empty loop subtracted\n`);
  for (const r of rows) console.log(`${r.observer.padEnd(30)} ${String(r.perRequest).padStart(8)}`);
}
