/**
 * `npm start`: the same fan-out job against an embedded, misbehaving upstream, once with a plain
 * undici Agent and a hand-written retry loop, once through Breakwater — then a side-by-side table.
 *
 *   npm start -- --profile outage --requests 1000
 *   npx tsx examples/demo.ts --json
 */
import { describeBreakwater, runBreakwater } from './demo/breakwater.js';
import { type DemoOptions, parseCli, UsageError, usage } from './demo/cli.js';
import { buildWorkload } from './demo/job.js';
import { describePlain, runPlain } from './demo/plain.js';
import { PROFILES } from './demo/profiles.js';
import { type DemoResult, formatBreakdown, formatTable, ms, summarize } from './demo/report.js';
import { Upstream } from './demo/upstream.js';

/** Requests the embedded upstream works on at once; Breakwater's bulkhead is sized to match. */
const UPSTREAM_WORKERS = 10;

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

  const out = options.json ? null : process.stdout;
  const say = (text = ''): void => {
    out?.write(`${text}\n`);
  };
  const profile = PROFILES[options.profile];
  const workload = buildWorkload(options.requests, options.seed);
  const posts = workload.filter((r) => r.method === 'POST').length;
  const started = performance.now();

  say(`Breakwater demo — profile '${profile.name}' (seed ${options.seed}): ${profile.description}`);
  say(
    `${options.requests} logical requests (${options.requests - posts} GET, ${posts} POST), ` +
      `${options.concurrency} at a time, against an embedded upstream with ${UPSTREAM_WORKERS} workers.`,
  );
  say();
  say(`  plain client  ${describePlain()}`);
  say(`  Breakwater    ${describeBreakwater()}`);
  say();

  // Each run meets a fresh upstream with the same seed: the same fault sequence.
  const upstreamOptions = {
    profile,
    seed: options.seed,
    expectedRequests: options.requests,
    workers: UPSTREAM_WORKERS,
  };

  const plainUpstream = await Upstream.start(upstreamOptions);
  let plain: DemoResult['plain'];
  try {
    const run = await runPlain(plainUpstream, workload, options.concurrency, out);
    plain = summarize(run, plainUpstream.stats(), options.requests);
  } finally {
    await plainUpstream.close();
  }

  const bwUpstream = await Upstream.start(upstreamOptions);
  let breakwater: DemoResult['breakwater'];
  let scraped: number;
  try {
    const run = await runBreakwater(
      bwUpstream,
      workload,
      options.concurrency,
      out,
      options.metricsPort,
      (url) => say(`  metrics: ${url} (Prometheus text, live during the Breakwater run)`),
    );
    breakwater = summarize(run, bwUpstream.stats(), options.requests);
    scraped = run.scrapedRequests;
  } finally {
    await bwUpstream.close();
  }

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
  say(formatBreakdown('plain     ', plain));
  say(formatBreakdown('Breakwater', breakwater));
  say(`  /metrics counted ${scraped} logical requests in breakwater_requests_total at the last scrape.`);
  say();
  say(
    '  The plain loop retries a POST whose response was lost, so the upstream runs it again; Breakwater retries a\n' +
      '  POST only when it provably never left, or when it carries an Idempotency-Key or opts in.',
  );
  say(`  Done in ${ms(performance.now() - started)}.`);
  return 0;
}

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
