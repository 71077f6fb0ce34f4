/**
 * `npm start`: the same fan-out job against an embedded, misbehaving upstream, once with a plain
 * undici Agent and a hand-written retry loop, once through Breakwater — then a side-by-side table.
 *
 *   npm start -- --profile outage --requests 1000
 *   npx tsx examples/demo.ts --json
 */
import { describeBreakwater, type MetricsEndpoint, runBreakwater, startMetrics } from './demo/breakwater.js';
import { type DemoOptions, parseCli, UsageError, usage } from './demo/cli.js';
import { buildWorkload, type ClientRun, type LogicalRequest } from './demo/job.js';
import { describePlain, runPlain } from './demo/plain.js';
import { PROFILES } from './demo/profiles.js';
import {
  type DemoResult,
  failedPosts,
  formatBreakdown,
  formatTable,
  ms,
  type RunSummary,
  summarize,
  wrap,
} from './demo/report.js';
import { UPSTREAM_WORKERS, Upstream, type UpstreamOptions } from './demo/upstream.js';

async function main(argv: readonly string[]): Promise<number> {
  let options: DemoOptions;
  try {
    options = parseCli(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`demo: ${err.message} (see --help)\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(usage());
    return 0;
  }

  let endpoint: MetricsEndpoint;
  try {
    endpoint = await startMetrics(options.metricsPort);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES') throw err;
    process.stderr.write(`demo: --metrics-port ${options.metricsPort}: cannot listen (${code})\n`);
    return 2;
  }
  try {
    return await demo(options, endpoint);
  } finally {
    await endpoint.close();
  }
}

async function demo(options: DemoOptions, endpoint: MetricsEndpoint): Promise<number> {
  const out = options.json ? null : process.stdout;
  const say = (text = ''): void => {
    out?.write(`${text}\n`);
  };
  const profile = PROFILES[options.profile];
  const workload = buildWorkload(options.requests, options.seed);
  const posts = workload.filter((r) => r.method === 'POST').length;
  const started = performance.now();

  say(`Breakwater demo — profile '${profile.name}' (seed ${options.seed}): ${profile.description}.`);
  say(
    `${options.requests} logical requests (${options.requests - posts} GET, ${posts} POST), ` +
      `${options.concurrency} at a time, against an embedded upstream with ${UPSTREAM_WORKERS} workers.`,
  );
  say();
  const indent = (lines: string[]): string => lines.join(`\n${' '.repeat(16)}`);
  say(`  plain client  ${indent(describePlain())}`);
  say(`  Breakwater    ${indent(describeBreakwater())}`);
  say(`  metrics       ${endpoint.url} (Breakwater's Prometheus metrics, until the demo ends)`);
  say();

  // Each run meets a fresh upstream with the same seed: the same fault sequence.
  const upstreamOptions: UpstreamOptions = {
    profile,
    seed: options.seed,
    expectedRequests: options.requests,
    workers: UPSTREAM_WORKERS,
  };
  const plain = await withUpstream(upstreamOptions, workload, (upstream) =>
    runPlain(upstream, workload, options.concurrency, out),
  );
  let scraped = 0;
  const breakwater = await withUpstream(upstreamOptions, workload, async (upstream) => {
    const run = await runBreakwater(upstream, workload, options.concurrency, out, endpoint);
    scraped = run.scrapedRequests;
    return run;
  });

  const result: DemoResult = {
    profile: profile.name,
    seed: options.seed,
    requests: options.requests,
    concurrency: options.concurrency,
    plain,
    breakwater,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  }
  say();
  say(formatTable(result));
  say();
  say(formatBreakdown('plain', plain));
  say(formatBreakdown('Breakwater', breakwater));
  say();
  const postFailures = failedPosts(breakwater);
  const note =
    'The plain loop runs a POST again when its response was lost (the connection reset after the work was ' +
    'done). Breakwater retries a POST only when it provably never left, or when it carries an ' +
    'Idempotency-Key or opts in with { breakwater: { idempotent: true } }' +
    (postFailures === 0
      ? '.'
      : `: ${postFailures} of its ${breakwater.failed} failures are POSTs it would not risk running twice.`);
  say(wrap('  ', note.split(' '), 110, '  '));
  say(
    `  breakwater_requests_total on /metrics at the end: ${scraped}. Done in ${ms(performance.now() - started)}.`,
  );
  return 0;
}

/** Runs one client against a fresh upstream and closes the upstream, whatever happens. */
async function withUpstream(
  options: UpstreamOptions,
  workload: readonly LogicalRequest[],
  run: (upstream: Upstream) => Promise<ClientRun>,
): Promise<RunSummary> {
  const upstream = await Upstream.start(options);
  try {
    const result = await run(upstream);
    return summarize(result, upstream.stats(), workload.length);
  } finally {
    await upstream.close();
  }
}

// `npm start | head`: a reader that went away is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(
      `demo: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
