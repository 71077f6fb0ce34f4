// npm run bench:here [-- --rounds 5 --requests 20000 --concurrency 32 --warmup 20000 --only a,b --json]
//
// What Breakwater costs per request, against raw undici and the peers, side by side in one run.
//
// One upstream server in its own process, pinned to core 1. Each round starts a fresh process for
// every client variant, pinned to core 0, and warms each one up. Then the timed requests (the same
// number and concurrency for all) are sent in short bursts, interleaved: a burst of A, of B, of
// C, …, then A again, until each variant has sent --requests. Each burst's client CPU
// (`process.cpuUsage()` around it), wall time, and the server's own CPU over it are recorded. The
// table shows medians over rounds; `x raw` is the median over rounds of (variant CPU/request ÷ raw
// CPU/request in that round).
//
// Why bursts: the machine may be shared (other builds and tests on the same two cores), and that
// load comes and goes over seconds. Short interleaved bursts make every variant see the same
// machine, and each burst records the CPU other processes used meanwhile (/proc/stat minus client
// and server) and the server's CPU per request (the same work every time, so a thermometer of
// the machine); a burst over --max-other-load, or whose server needed 1.4 × its best CPU per
// request, is thrown away and sent again (while the run is projected to stay within --budget).

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BurstResult, ClientResult } from './client.js';
import {
  buildLibrary,
  CLIENT_CORE,
  cpuPerRequest,
  describeEnvironment,
  environment,
  exited,
  fixed,
  intArg,
  LIBRARY_ENV,
  machineBusyUs,
  median,
  nextMessage,
  pairedRatios,
  parseArgs,
  pinSelf,
  spawnTs,
  startServer,
  table,
  type UpstreamServer,
} from './common.js';
import { onlyVariants, VARIANTS } from './variants.js';

const USAGE = `usage: npm run bench:here -- [options]   (npm run bench: both majors, see both-majors.sh)
  --rounds N           rounds, each with fresh client processes (5)
  --requests N         timed requests per variant and round (20000)
  --burst N            timed requests per burst; bursts of all variants alternate (2500)
  --concurrency N      requests in flight (32)
  --warmup N           untimed requests per process first (20000: Node 24 takes that long to
                       reach steady state; see docs/benchmarks.md)
  --only a,b           only these variants (raw always runs)
  --max-other-load P   % of all cores other processes may use during a burst (10)
  --retries N          times a burst is sent again when noisier than that (3)
  --budget S           retry only while the run is projected to end within S seconds (480)
  --tsx                measure src/ through tsx instead of the tsc build
  --json               JSON on stdout instead of the table (it is also saved to a temp file)`;

const args = parseArgs(process.argv.slice(2));
if (args.has('help')) {
  console.log(USAGE);
  console.log(`variants: ${VARIANTS.map((v) => v.name).join(', ')}`);
  process.exit(0);
}
const rounds = intArg(args, 'rounds', 5);
const requests = intArg(args, 'requests', 20_000);
const burst = Math.min(requests, intArg(args, 'burst', 2_500));
const concurrency = intArg(args, 'concurrency', 32);
// Long enough for V8 to finish tiering up: on Node 24 a client's CPU per request is still falling
// after 10,000 requests (it starts at several times its steady value), and whatever is compiled in
// the timed phase would be charged to the variant with the most code.
const warmup = intArg(args, 'warmup', 20_000);
const maxOtherLoad = intArg(args, 'max-other-load', 10) / 100;
const retries = args.has('retries') ? Number(args.get('retries')) : 3;
const budgetS = intArg(args, 'budget', 480);
const json = args.has('json');
/** Measure src/ through tsx instead of the tsc build (see buildLibrary for why the build is the default). */
const viaTsx = args.has('tsx');
let libraryEnv: Record<string, string> = {};

// The baseline always runs: every ratio is against raw undici in the same run.
const only = onlyVariants(
  args,
  VARIANTS.map((v) => v.name),
);
const variants = VARIANTS.filter((v) => v.name === 'raw' || only.includes(v.name));

const cores = cpus().length;
const started = Date.now();
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const pct = (share: number | null): string => (share === null ? '–' : `${fixed(share * 100, 0)} %`);

/** One burst as measured from outside: the client's own numbers plus the server's and the machine's. */
interface Burst extends BurstResult {
  serverCpuUs: number;
  serverRequests: number;
  /** CPU other processes used during the burst, as a share of all cores; null without /proc/stat. */
  otherLoad: number | null;
}

/** One variant in one round: its kept bursts and the process's totals. */
interface RoundResult {
  variant: string;
  round: number;
  bursts: Burst[];
  /** Bursts thrown away as too noisy (their requests were sent, not counted). */
  discarded: number;
  client: ClientResult;
}

/** Waits up to `maxMs` for a 200 ms window in which other processes use at most the allowed load. */
async function waitForQuiet(maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (Date.now() < deadline) {
    const before = machineBusyUs();
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = machineBusyUs();
    if (before === null || after === null) return;
    // Between bursts our server idles and this process sleeps: all of it is someone else's.
    if ((after - before) / ((performance.now() - t0) * 1000 * cores) <= maxOtherLoad) return;
  }
}

async function runBurst(server: UpstreamServer, child: ChildProcess, n: number): Promise<Burst> {
  const before = await server.cpu();
  const busyBefore = machineBusyUs();
  const reply = nextMessage<BurstResult>(child, 'burst');
  child.send({ type: 'burst', n });
  const b = await reply;
  const busyAfter = machineBusyUs();
  const after = await server.cpu();
  const serverCpuUs = after.user + after.system - (before.user + before.system);
  const otherLoad =
    busyBefore === null || busyAfter === null
      ? null
      : Math.max(0, busyAfter - busyBefore - b.cpuUs - serverCpuUs) / (b.wallMs * 1000 * cores);
  return { ...b, serverCpuUs, serverRequests: after.requests - before.requests, otherLoad };
}

let burstsDone = 0;
/** The least server CPU per request seen in a burst so far: the machine at its best. */
let bestServerUs = Number.POSITIVE_INFINITY;
/** A burst whose server CPU/request exceeds the best by this factor counts as noisy. */
const SLOW_MACHINE = 1.4;

/** A burst, sent again while other processes made it noisy and the run can afford it. */
async function measureBurst(
  server: UpstreamServer,
  child: ChildProcess,
  n: number,
  remaining: number,
  name: string,
): Promise<{ burst: Burst; discarded: number }> {
  for (let attempt = 0; ; attempt++) {
    const b = await runBurst(server, child, n);
    burstsDone++;
    // The server does the same work per request whoever the client is: when it needs much more
    // CPU per request than at its best, the whole machine is slow (a busy host) in a way
    // /proc/stat does not show, and the burst is as noisy as one under visible load.
    const serverUs = b.serverRequests > 0 ? b.serverCpuUs / b.serverRequests : Number.NaN;
    if (serverUs < bestServerUs) bestServerUs = serverUs;
    const slowMachine = serverUs > SLOW_MACHINE * bestServerUs;
    const noisy = (b.otherLoad ?? 0) > maxOtherLoad || slowMachine;
    const elapsedS = (Date.now() - started) / 1000;
    const projectedS = elapsedS + remaining * (elapsedS / burstsDone);
    if (!noisy || attempt >= retries || projectedS > budgetS) return { burst: b, discarded: attempt };
    log(
      slowMachine
        ? `  ${name}: the server needed ${fixed(serverUs, 1)} µs/request (best ${fixed(bestServerUs, 1)}): machine slow, sending that burst again`
        : `  ${name}: other processes used ${pct(b.otherLoad)} of the machine, sending that burst again`,
    );
    await waitForQuiet(2_000);
  }
}

async function runRound(
  server: UpstreamServer,
  round: number,
  remaining: () => number,
): Promise<RoundResult[]> {
  // Fresh processes for every variant, started and warmed up side by side (untimed).
  const children = variants.map((v) =>
    spawnTs(
      'client.ts',
      [
        '--variant',
        v.name,
        '--origin',
        server.origin,
        '--concurrency',
        String(concurrency),
        '--warmup',
        String(warmup),
      ],
      CLIENT_CORE,
      [],
      libraryEnv,
    ),
  );
  const exits = children.map(exited);
  await Promise.all(children.map((c) => nextMessage(c, 'ready')));
  const results: RoundResult[] = variants.map((v) => ({
    variant: v.name,
    round,
    bursts: [],
    discarded: 0,
    client: undefined as unknown as ClientResult,
  }));
  for (let sent = 0; sent < requests; sent += burst) {
    const n = Math.min(burst, requests - sent);
    for (let i = 0; i < variants.length; i++) {
      const { burst: b, discarded } = await measureBurst(
        server,
        children[i]!,
        n,
        remaining(),
        variants[i]!.name,
      );
      results[i]!.bursts.push(b);
      results[i]!.discarded += discarded;
    }
  }
  for (let i = 0; i < variants.length; i++) {
    const done = nextMessage<ClientResult>(children[i]!, 'result');
    children[i]!.send({ type: 'finish' });
    const client = await done;
    if ((await exits[i]) !== 0) throw new Error(`client ${variants[i]!.name} exited with an error`);
    if (client.errors > 0)
      throw new Error(`client ${variants[i]!.name}: ${client.errors} errors, first: ${client.firstError}`);
    results[i]!.client = client;
  }
  return results;
}

// --- summary ---------------------------------------------------------------------------------------

function totals(r: RoundResult): {
  requests: number;
  cpuUs: number;
  wallMs: number;
  serverCpuUs: number;
  serverRequests: number;
} {
  const t = { requests: 0, cpuUs: 0, wallMs: 0, serverCpuUs: 0, serverRequests: 0 };
  for (const b of r.bursts) {
    t.requests += b.requests;
    t.cpuUs += b.cpuUs;
    t.wallMs += b.wallMs;
    t.serverCpuUs += b.serverCpuUs;
    t.serverRequests += b.serverRequests;
  }
  return t;
}

interface Summary {
  variant: string;
  what: string;
  rounds: number;
  requestsPerSecond: number;
  cpuUsPerRequest: number;
  cpuUsMin: number;
  cpuUsMax: number;
  cpuVsRaw: number;
  /** Median over all bursts of the ratio to raw's burst of the same cycle. */
  cpuVsRawPaired: number;
  p50Ms: number;
  p99Ms: number;
  peakRssMb: number;
  serverCpuUsPerRequest: number;
  gcUsPerRequest: number;
  otherLoad: number | null;
  discarded: number;
}

function summarise(results: RoundResult[]): Summary[] {
  const rawRounds = new Map(results.filter((r) => r.variant === 'raw').map((r) => [r.round, r]));
  const raw = new Map([...rawRounds].map(([round, r]) => [round, cpuPerRequest(r.bursts)]));
  return variants.map((v) => {
    const mine = results.filter((r) => r.variant === v.name);
    const cpu = mine.map((r) => cpuPerRequest(r.bursts));
    const loads = mine.flatMap((r) => r.bursts.map((b) => b.otherLoad));
    return {
      variant: v.name,
      what: v.what,
      rounds: mine.length,
      requestsPerSecond: median(mine.map((r) => totals(r).requests / (totals(r).wallMs / 1000))),
      cpuUsPerRequest: median(cpu),
      cpuUsMin: Math.min(...cpu),
      cpuUsMax: Math.max(...cpu),
      cpuVsRaw: median(mine.map((r) => cpuPerRequest(r.bursts) / raw.get(r.round)!)),
      cpuVsRawPaired: median(mine.flatMap((r) => pairedRatios(r.bursts, rawRounds.get(r.round)!.bursts))),
      p50Ms: median(mine.map((r) => r.client.p50Ms)),
      p99Ms: median(mine.map((r) => r.client.p99Ms)),
      peakRssMb: median(mine.map((r) => r.client.maxRssBytes / 2 ** 20)),
      serverCpuUsPerRequest: median(mine.map((r) => totals(r).serverCpuUs / totals(r).serverRequests)),
      gcUsPerRequest: median(mine.map((r) => (r.client.gcMs * 1000) / r.client.requests)),
      otherLoad: loads.some((l) => l === null) ? null : median(loads as number[]),
      discarded: mine.reduce((n, r) => n + r.discarded, 0),
    };
  });
}

function render(summaries: Summary[]): string {
  const rows = summaries.map((s) => [
    s.variant,
    fixed(s.requestsPerSecond, 0),
    fixed(s.cpuUsPerRequest, 1),
    `${fixed(s.cpuVsRaw, 2)} x`,
    `${fixed(s.cpuVsRawPaired, 2)} x`,
    `${fixed(s.cpuUsMin, 1)}–${fixed(s.cpuUsMax, 1)}`,
    fixed(s.p50Ms, 2),
    fixed(s.p99Ms, 2),
    fixed(s.peakRssMb, 0),
    fixed(s.serverCpuUsPerRequest, 1),
    fixed(s.gcUsPerRequest, 2),
    pct(s.otherLoad),
    String(s.discarded),
  ]);
  return table(
    [
      'variant',
      'req/s',
      'CPU µs/req',
      'x raw',
      'paired',
      'CPU min–max',
      'p50 ms',
      'p99 ms',
      'RSS MB',
      'server µs/req',
      'GC µs/req',
      'other load',
      'redone',
    ],
    rows,
  );
}

async function main(): Promise<void> {
  pinSelf(CLIENT_CORE);
  const env = environment();
  log(describeEnvironment(env));
  const library = viaTsx
    ? 'src/ through tsx (esbuild, keepNames)'
    : 'src/ compiled by tsc (the shipped build)';
  if (!viaTsx) libraryEnv = { [LIBRARY_ENV]: buildLibrary(log) };
  log(`library: ${library}`);
  log(
    `${variants.length} variants × ${rounds} rounds, ${requests} timed requests each (bursts of ${burst}) at concurrency ${concurrency}, after ${warmup} warm-up requests`,
  );
  const server = await startServer();
  const results: RoundResult[] = [];
  const burstsPerRound = Math.ceil(requests / burst) * variants.length;
  try {
    for (let round = 1; round <= rounds; round++) {
      const before = burstsDone;
      const roundResults = await runRound(
        server,
        round,
        () => (rounds - round + 1) * burstsPerRound - (burstsDone - before),
      );
      results.push(...roundResults);
      for (const r of roundResults) {
        const t = totals(r);
        log(
          `round ${round}/${rounds} ${r.variant.padEnd(26)} ${fixed(t.cpuUs / t.requests, 1).padStart(6)} µs/req  ${fixed(t.requests / (t.wallMs / 1000), 0).padStart(6)} req/s  server ${fixed(t.serverCpuUs / t.serverRequests, 1)} µs/req  other load ${pct(median(r.bursts.map((b) => b.otherLoad ?? 0)))}${r.discarded > 0 ? `  (${r.discarded} bursts redone)` : ''}`,
        );
      }
    }
  } finally {
    await server.stop();
  }
  const summaries = summarise(results);
  const elapsedS = (Date.now() - started) / 1000;
  const settings = {
    rounds,
    requests,
    burst,
    concurrency,
    warmup,
    maxOtherLoad,
    retries,
    budgetS,
    library,
  };
  const report = JSON.stringify({ environment: env, settings, elapsedS, summaries, results }, null, 2);
  const saved = join(tmpdir(), `breakwater-bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(saved, report);
  log(`full results: ${saved}`);
  if (json) {
    console.log(report);
    return;
  }
  console.log(describeEnvironment(env));
  console.log(`library: ${library}`);
  console.log(
    `${rounds} rounds × ${requests} timed requests per variant (interleaved bursts of ${burst}) at concurrency ${concurrency}, after ${warmup} warm-up; medians over rounds; ran ${fixed(elapsedS, 0)} s`,
  );
  console.log('');
  console.log(render(summaries));
  console.log('');
  console.log(
    "CPU µs/req: client user+system CPU over its timed bursts ÷ requests; median over rounds, min–max beside it. x raw: median over rounds of the ratio to raw's in the same round. paired: median over every burst of the ratio to raw's burst in the same cycle (seconds apart, so the least disturbed by a shared machine's load).",
  );
  console.log(
    'server µs/req: the upstream’s own CPU over the same bursts; it has a core to itself, so it is not the bottleneck while server µs/req × req/s stays well under 1e6.',
  );
  console.log(
    `other load: CPU other processes used during a burst, share of all ${cores} cores (/proc/stat), median; redone: bursts sent again because that exceeded ${fixed(maxOtherLoad * 100, 0)} %.`,
  );
  const warning = slowdown(results);
  if (warning !== null) console.log(warning);
  console.log('');
  for (const s of summaries) console.log(`  ${s.variant.padEnd(26)} ${s.what}`);
}

/**
 * The server does the same work for every request, so its CPU per request is a thermometer of the
 * machine: when it varies a lot, the machine itself slowed down (a busy host, frequency changes)
 * in ways /proc/stat does not show, and absolute µs are inflated (ratios suffer less).
 */
function slowdown(results: RoundResult[]): string | null {
  const perBurst = results.flatMap((r) =>
    r.bursts.filter((b) => b.serverRequests > 0).map((b) => b.serverCpuUs / b.serverRequests),
  );
  const fastest = Math.min(...perBurst);
  const typical = median(perBurst);
  if (!(typical > 1.3 * fastest)) return null;
  return `warning: the machine was slower than its best during most bursts (server CPU/request: best ${fixed(fastest, 1)} µs, median ${fixed(typical, 1)} µs); absolute µs are inflated, compare ratios, and rerun on a quiet machine.`;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
