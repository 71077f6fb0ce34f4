// npm run bench:instructions [-- --only a,b --requests 10000 --warmup 20000 --json]
//
// Instructions per request under callgrind: the same clients as overhead.ts, counted instead of
// timed. CPU time on a shared or virtual machine moves by ±10 % from one burst to the next; the
// number of instructions a request executes moves by well under 1 % from run to run, so small
// changes to the hot path can be seen, and the ratio to raw undici can be checked without a quiet
// machine. It does not see what instructions cost (cache misses, a slow clock source, syscalls):
// overhead.ts remains the measurement of CPU time; this one is its noise-free companion.
//
// Each client runs in a fresh process under `valgrind --tool=callgrind` with instrumentation off
// through start-up and --warmup requests, so JIT compilation and module loading are not counted;
// then `callgrind_control -i on` counts exactly the --requests timed requests. The upstream
// server runs outside valgrind. Two clients run at a time (valgrind is single-threaded). Needs
// valgrind (`apt-get install valgrind`); each client takes about a minute.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClientResult } from './client.js';
import {
  BENCH_DIR,
  buildLibrary,
  describeEnvironment,
  environment,
  exited,
  fixed,
  intArg,
  LIBRARY_ENV,
  median,
  nextMessage,
  parseArgs,
  ROOT,
  startServer,
  TSX,
  table,
} from './common.js';
import { onlyVariants } from './variants.js';

const DEFAULT_VARIANTS = [
  'raw',
  'noop-compose',
  'noop-dispatcher',
  'bw-std-metrics-compose',
  'bw-std-metrics-resilient',
];

const USAGE = `usage: npm run bench:instructions -- [options]
  --only a,b       these variants (raw always runs); default: ${DEFAULT_VARIANTS.join(', ')}
  --requests N     counted requests per client (10000)
  --warmup N       uncounted requests first (20000)
  --concurrency N  requests in flight (32)
  --runs N         fresh clients per variant; the table shows the median (3)
  --simulate       also simulate the caches and branch predictor (valgrind's --cache-sim and
                   --branch-sim): L1 misses and mispredicted branches per request, which cost
                   cycles that instruction counts do not show; about twice as slow
  --json           JSON on stdout instead of the table`;

const args = parseArgs(process.argv.slice(2));
if (args.has('help')) {
  console.log(USAGE);
  process.exit(0);
}
const requests = intArg(args, 'requests', 10_000);
// As in overhead.ts: short of this, Node 24 is still compiling in the counted phase.
const warmup = intArg(args, 'warmup', 20_000);
const concurrency = intArg(args, 'concurrency', 32);
const runs = intArg(args, 'runs', 3);
const json = args.has('json');
const simulate = args.has('simulate');
const names = onlyVariants(args, DEFAULT_VARIANTS);
const variants = ['raw', ...names.filter((name) => name !== 'raw')];
const log = (line: string): void => void process.stderr.write(`${line}\n`);

function requireTool(tool: string): void {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
  } catch {
    console.error(`${tool} not found: install valgrind (apt-get install valgrind)`);
    process.exit(2);
  }
}

/** `callgrind_control -i on|off` for a process running under callgrind. */
function instrument(pid: number, on: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const ctl = spawn('callgrind_control', ['-i', on ? 'on' : 'off', String(pid)], { stdio: 'ignore' });
    ctl.on('error', reject);
    ctl.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`callgrind_control exited ${code}`)),
    );
  });
}

interface Count {
  variant: string;
  instructions: number;
  perRequest: number;
  errors: number;
  /** Per request, with --simulate: level-1 instruction and data cache misses, mispredicted branches. */
  simulated?: Simulated;
}

interface Simulated {
  i1Misses: number;
  d1Misses: number;
  mispredicts: number;
}

/** A total from callgrind's summary on stderr, such as `D1  misses:  32,183,980 (…)`. */
function summaryTotal(stderr: string, label: string): number {
  const match = new RegExp(`${label}:\\s+([\\d,]+)`).exec(stderr);
  if (match === null) throw new Error(`callgrind printed no "${label}" total:\n${stderr}`);
  return Number(match[1]!.replace(/,/g, ''));
}

async function count(variant: string, origin: string, libraryEnv: Record<string, string>): Promise<Count> {
  const child: ChildProcess = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      '--callgrind-out-file=/dev/null',
      ...(simulate ? ['--cache-sim=yes', '--branch-sim=yes'] : []),
      process.execPath,
      // As in callgrindCount: the same client's count then repeats from run to run.
      '--single-threaded',
      '--predictable',
      // The client collects fully before it reports ready (see collectGarbage in client.ts).
      '--expose-gc',
      '--import',
      TSX,
      `${BENCH_DIR}client.ts`,
      ...['--variant', variant, '--origin', origin, '--concurrency', String(concurrency)],
      ...['--warmup', String(warmup), '--requests', String(requests)],
    ],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'pipe', 'ipc'], env: { ...process.env, ...libraryEnv } },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let errors: number;
  try {
    await nextMessage(child, 'ready');
    await instrument(child.pid!, true);
    const result = nextMessage<ClientResult>(child, 'result');
    child.send({ type: 'go' });
    ({ errors } = await result);
    await instrument(child.pid!, false);
  } catch (err) {
    // A client left running under valgrind would hold its core (and the run) for minutes.
    child.kill('SIGKILL');
    throw err;
  }
  const code = await exited(child);
  const refs = /I\s+refs:\s+([\d,]+)/.exec(stderr);
  if (code !== 0 || refs === null) throw new Error(`${variant} under callgrind exited ${code}:\n${stderr}`);
  const instructions = Number(refs[1]!.replace(/,/g, ''));
  const simulated = simulate
    ? {
        i1Misses: summaryTotal(stderr, 'I1\\s+misses') / requests,
        d1Misses: summaryTotal(stderr, 'D1\\s+misses') / requests,
        mispredicts: summaryTotal(stderr, 'Mispredicts') / requests,
      }
    : undefined;
  return { variant, instructions, perRequest: instructions / requests, errors, simulated };
}

async function main(): Promise<void> {
  requireTool('valgrind');
  const started = Date.now();
  const entry = buildLibrary(log);
  const libraryEnv = { [LIBRARY_ENV]: entry };
  const server = await startServer();
  const env = environment();
  const counts: Count[] = [];
  try {
    // Two at a time, run after run of every variant, so a slow stretch of the machine cannot
    // matter (instructions do not depend on it) and a client that landed in an unusual state shows
    // as an outlier among its runs.
    const pending = Array.from({ length: runs }, () => variants).flat();
    const worker = async (): Promise<void> => {
      for (let v = pending.shift(); v !== undefined; v = pending.shift()) {
        log(`counting ${v}…`);
        counts.push(await count(v, server.origin, libraryEnv));
      }
    };
    await Promise.all([worker(), worker()]);
  } finally {
    await server.stop();
  }
  const summaries = variants.map((variant) => {
    const mine = counts.filter((c) => c.variant === variant);
    const perRequest = mine.map((c) => c.perRequest);
    const simulatedMedian = (pick: (s: Simulated) => number): number =>
      median(mine.map((c) => (c.simulated === undefined ? Number.NaN : pick(c.simulated))));
    return {
      variant,
      median: median(perRequest),
      i1Misses: simulatedMedian((s) => s.i1Misses),
      d1Misses: simulatedMedian((s) => s.d1Misses),
      mispredicts: simulatedMedian((s) => s.mispredicts),
      min: Math.min(...perRequest),
      max: Math.max(...perRequest),
      errors: counts.filter((c) => c.variant === variant).reduce((sum, c) => sum + c.errors, 0),
    };
  });
  const raw = summaries[0]!.median;
  const elapsedS = (Date.now() - started) / 1000;
  const report = JSON.stringify(
    { environment: env, settings: { requests, warmup, concurrency, runs }, elapsedS, summaries, counts },
    null,
    2,
  );
  const file = join(
    tmpdir(),
    `breakwater-instructions-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
  );
  writeFileSync(file, report);
  if (json) {
    console.log(report);
    return;
  }
  console.log(describeEnvironment(env));
  console.log(
    `${runs} clients per variant, each ${requests} counted requests after ${warmup} uncounted, concurrency ${concurrency}; medians; ran ${fixed(elapsedS, 0)} s; full results: ${file}\n`,
  );
  console.log(
    table(
      ['variant', 'instructions/req', 'x raw', 'min–max', 'errors'],
      summaries.map((c) => [
        c.variant,
        fixed(c.median, 0),
        `${fixed(c.median / raw, 3)} x`,
        `${fixed(c.min, 0)}–${fixed(c.max, 0)}`,
        String(c.errors),
      ]),
    ),
  );
  if (!simulate) return;
  const base = summaries[0]!;
  const cell = (value: number, rawValue: number): string =>
    `${fixed(value, 0)} (${fixed(value / rawValue, 3)} x)`;
  console.log('\nsimulated per request (medians; x raw):\n');
  console.log(
    table(
      ['variant', 'L1 instruction misses', 'L1 data misses', 'mispredicted branches'],
      summaries.map((c) => [
        c.variant,
        cell(c.i1Misses, base.i1Misses),
        cell(c.d1Misses, base.d1Misses),
        cell(c.mispredicts, base.mispredicts),
      ]),
    ),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
