// npm run bench:isolated [-- --only a,b --json]
//
// Breakwater's own cost per request, with no network and no undici core under it: each client
// dispatches to a stand-in dispatcher that answers every request on the next tick (headers, a
// two-byte body, the end), through the same handler API undici's core speaks. Counted in
// instructions under callgrind (see callgrindCount), what a pipeline adds moves by about ±1,000
// instructions per request from run to run, where CPU time on a shared machine moves by ±10 %
// from one burst to the next: so this is the benchmark that shows a change of a few thousand
// instructions to the hot path. It does not replace overhead.ts: it leaves out what our code
// costs undici and V8 around it (cache misses, garbage collection of a real request's objects).
//
// How: each variant runs in a fresh `node --single-threaded --predictable` under
// `valgrind --tool=callgrind`, twice, with the same warm-up and a short and a long counted phase;
// the difference over the extra requests cancels start-up and warm-up.
// The caller is a legacy handler, as undici 7's `request()` hands to a dispatcher, and options are
// built by a spread, as `request()` builds them. Needs valgrind; about 4 minutes.

import { BENCH_DIR, buildLibrary, callgrindCount, intArg, LIBRARY_ENV, parseArgs, table } from './common.js';

/** What each client of isolated-child.mjs is. */
const VARIANTS: Record<string, string> = {
  direct: 'the stand-in dispatcher itself (the baseline)',
  'noop-dispatcher': 'a no-op Dispatcher subclass',
  retry: 'resilient(d, pipeline([retry()]))',
  std: 'resilient(d, standardPipeline())',
  'std-stage-by-stage': "the preset's stages with bulkhead and breaker swapped (an order of the user's)",
  'std-metrics': 'resilient(d, standardPipeline({ metrics }))',
  'std-otel':
    "resilient(d, standardPipeline({ metrics: openTelemetryMetrics(…) })) with the SDK's MeterProvider",
  'std-prometheus-otel':
    'resilient(d, standardPipeline({ metrics: [prometheusMetrics(…), openTelemetryMetrics(…)] }))',
  'std-subscribed': 'resilient(d, standardPipeline()) with a no-op subscriber on every diagnostics channel',
  'std-no-retry': 'resilient(d, standardPipeline({ retry: false })): every stage once per request',
  timeout: 'resilient(d, pipeline([timeout(30_000)]))',
  breaker: 'resilient(d, pipeline([circuitBreaker()]))',
  bulkhead: 'resilient(d, pipeline([bulkhead(…)]))',
  'bulkhead-adaptive': "resilient(d, pipeline([bulkhead({ maxConcurrent: 'adaptive', … })]))",
};

/** Instructions callgrind counted over a whole client process. */
function collected(entry: string, name: string, warmup: number, n: number): Promise<number> {
  const child = [`${BENCH_DIR}isolated-child.mjs`, name, String(warmup), String(n)];
  return callgrindCount(child, { [LIBRARY_ENV]: entry });
}

const args = parseArgs(process.argv.slice(2));
const warmup = intArg(args, 'warmup', 60_000, 0);
const counted = intArg(args, 'requests', 50_000, 1);
const only = args.get('only')?.split(',');
const unknown = only?.filter((v) => !(v in VARIANTS)) ?? [];
if (unknown.length > 0) {
  console.error(`unknown variant ${unknown.join(', ')}; known: ${Object.keys(VARIANTS).join(', ')}`);
  process.exit(2);
}
const names = Object.keys(VARIANTS).filter((v) => v === 'direct' || only === undefined || only.includes(v));
const entry = buildLibrary((line) => console.error(line));
const perRequest: Record<string, number> = {};
// Two valgrind processes at a time: it runs each on one core.
for (let i = 0; i < names.length; i += 2) {
  await Promise.all(
    names.slice(i, i + 2).map(async (name) => {
      const short = await collected(entry, name, warmup, 1);
      const long = await collected(entry, name, warmup, 1 + counted);
      perRequest[name] = (long - short) / counted;
    }),
  );
}
const base = perRequest.direct!;
const rows = names.map((name) => ({
  variant: name,
  instructions: Math.round(perRequest[name]!),
  added: Math.round(perRequest[name]! - base),
  what: VARIANTS[name]!,
}));
if (args.has('json')) {
  console.log(JSON.stringify({ node: process.version, warmup, counted, rows }, null, 2));
} else {
  console.log(`${process.version}; ${counted} counted requests after ${warmup}, 32 at a time, no network\n`);
  console.log(
    table(
      ['variant', 'instructions/req', 'added to direct', 'what'],
      rows.map((r) => [r.variant, String(r.instructions), String(r.added), r.what]),
    ),
  );
}
