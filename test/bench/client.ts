// One measured client, in a process of its own (started by overhead.ts, instructions.ts,
// warmup.ts or profile.ts): builds one variant, warms it up, says `ready`, then does what the
// parent asks over IPC:
//   { type: 'burst', n }  send n requests at the configured concurrency; answer `burst` with
//                         the CPU and wall time they took (overhead.ts interleaves short bursts
//                         of every variant, so all of them see the same machine)
//   { type: 'finish' }    answer `result` with the totals over all bursts, then exit
//   { type: 'go' }        one timed phase of --requests requests (or --duration ms), then
//                         `result` and exit (profile.ts)
//
//   --variant NAME --origin URL --concurrency C --warmup W [--requests N | --duration MS]
//   --sourcemaps FILE     write the source maps of src/ (as tsx made them) to FILE, for profile.ts
//   --heap-profile FILE   sample allocations (collected ones included) over the timed phase

import { readdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { findSourceMap } from 'node:module';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { intArg, parseArgs, ROOT } from './common.js';
import { type BenchClient, variantNamed } from './variants.js';

export interface BurstResult {
  type: 'burst';
  requests: number;
  /** Client CPU (user + system) over the burst, µs. */
  cpuUs: number;
  wallMs: number;
}

export interface ClientResult {
  type: 'result';
  variant: string;
  /** Timed requests, over all bursts. */
  requests: number;
  errors: number;
  firstError: string | null;
  wallMs: number;
  /** Client CPU (user + system) over the timed requests, µs. */
  cpuUs: number;
  p50Ms: number;
  p99Ms: number;
  /** Peak resident set size of this process, bytes. */
  maxRssBytes: number;
  gcCount: number;
  gcMs: number;
  /** The timed phase on the monotonic clock V8's profiler uses (µs), to cut a CPU profile to it. */
  phaseStartUs: number;
  phaseEndUs: number;
}

const args = parseArgs(process.argv.slice(2));
const variant = variantNamed(args.get('variant') ?? 'raw');
const origin = args.get('origin');
if (origin === undefined) throw new Error('--origin is required');
const requests = intArg(args, 'requests', 20_000);
const concurrency = intArg(args, 'concurrency', 32);
const warmup = intArg(args, 'warmup', 20_000, 0);
const durationMs = args.has('duration') ? intArg(args, 'duration', 5_000) : 0;

let errors = 0;
let firstError: string | null = null;
/** Latencies of timed requests (ms), appended burst after burst. */
let latencies = new Float64Array(1 << 16);
let latencyCount = 0;

function recordLatency(ms: number): void {
  if (latencyCount === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[latencyCount++] = ms;
}

/** Sends `n` requests (or, with `untilMs`, as many as fit) with `concurrency` in flight. */
async function drive(client: BenchClient, n: number, timed: boolean, untilMs = 0): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (untilMs > 0 ? performance.now() < untilMs : next < n) {
      next++;
      const start = performance.now();
      try {
        await client.send();
      } catch (err) {
        errors++;
        firstError ??= String((err as Error)?.stack ?? err);
      }
      if (timed) recordLatency(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return next;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * q + 0.5))]!;
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function send(msg: object): Promise<void> {
  return new Promise((resolve, reject) =>
    process.send!(msg, (err: Error | null) => (err ? reject(err) : resolve())),
  );
}

/**
 * tsx compiles src/ in memory; a CPU profile's line numbers are those of its output. Its inline
 * source maps are what maps them back to the .ts lines, so they are saved next to the profile.
 */
function writeSourceMaps(file: string): void {
  const maps: Record<string, unknown> = {};
  for (const dir of ['src', 'test/bench']) {
    for (const entry of readdirSync(`${ROOT}${dir}`, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const url = pathToFileURL(`${entry.parentPath ?? entry.path}/${entry.name}`).href;
      const map = findSourceMap(url);
      if (map !== undefined) maps[url] = map.payload;
    }
  }
  writeFileSync(file, JSON.stringify(maps));
}

/** What the whole timed phase cost; GC time is observed from `ready` on. */
class Totals {
  requests = 0;
  cpuUs = 0;
  wallMs = 0;
  gcCount = 0;
  gcMs = 0;
  phaseStartUs = 0;
  phaseEndUs = 0;
  readonly #gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      this.gcCount++;
      this.gcMs += entry.duration;
    }
  });

  constructor() {
    this.#gc.observe({ entryTypes: ['gc'] });
  }

  async result(): Promise<ClientResult> {
    // GC entries are delivered asynchronously; one turn of the loop lets the last ones in.
    await new Promise((resolve) => setImmediate(resolve));
    this.#gc.disconnect();
    const sorted = latencies.subarray(0, latencyCount).sort();
    return {
      type: 'result',
      variant: variant.name,
      requests: this.requests,
      errors,
      firstError,
      wallMs: this.wallMs,
      cpuUs: this.cpuUs,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      gcCount: this.gcCount,
      gcMs: this.gcMs,
      phaseStartUs: this.phaseStartUs,
      phaseEndUs: this.phaseEndUs,
    };
  }
}

/** A timed stretch of requests: CPU and wall time measured around it alone. */
async function timed(client: BenchClient, totals: Totals, n: number, untilMs = 0): Promise<BurstResult> {
  if (totals.phaseStartUs === 0) totals.phaseStartUs = monotonicUs();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const sent = await drive(client, n, true, untilMs > 0 ? t0 + untilMs : 0);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  totals.phaseEndUs = monotonicUs();
  const cpuUs = cpu.user + cpu.system;
  totals.requests += sent;
  totals.cpuUs += cpuUs;
  totals.wallMs += wallMs;
  return { type: 'burst', requests: sent, cpuUs, wallMs };
}

/** The single timed phase of profile.ts, optionally under the sampling heap profiler. */
async function once(client: BenchClient, totals: Totals): Promise<void> {
  const heapProfile = args.get('heap-profile');
  const session = heapProfile === undefined ? null : new Session();
  if (session !== null) {
    session.connect();
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  await timed(client, totals, requests, durationMs);
  if (session !== null) {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    writeFileSync(heapProfile!, JSON.stringify(profile));
    session.disconnect();
  }
  const sourceMaps = args.get('sourcemaps');
  if (sourceMaps !== undefined) writeSourceMaps(sourceMaps);
}

/**
 * A full collection before the measured requests, when the orchestrator exposes `gc` (only
 * instructions.ts does). A mark-compact comes about every 25,000 requests, for raw undici and
 * Breakwater alike (4 in 100,000 each on Node 20, `--trace-gc`), so one falls into 10,000 counted
 * requests or not, and moved a client's count by several percent. From a settled heap, the count
 * is each request's own work and the minor collections it causes. overhead.ts does not collect
 * before its bursts: tried, every client ran several times slower, raw undici included (128.6 µs
 * per request against 57.3 without), which measured the collections' aftermath, not the clients.
 */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error('client.ts runs under overhead.ts or profile.ts (IPC)');
  const client = variant.build(origin!);
  // In two halves, so that warm-up also goes idle and wakes again, as every burst does. Code that
  // runs only then (a pipeline's deadline queue taking its first deadline again) last ran before
  // V8 collected type feedback, so V8 deoptimizes whatever inlined it the first time it runs after
  // warm-up, and compiles it again: with one warm-up stretch, that landed in the first measured
  // requests (`--trace-deopt`; under callgrind, TurboFan's work came to about 11,000 instructions
  // per request over 10,000 counted ones).
  await drive(client, Math.ceil(warmup / 2), false);
  await drive(client, Math.floor(warmup / 2), false);
  if (errors > 0) throw new Error(`warm-up of ${variant.name} failed ${errors} times: ${firstError}`);
  collectGarbage();
  const totals = new Totals();

  // Requests run one at a time: the parent never sends the next one before the answer.
  let queue = Promise.resolve();
  await new Promise<void>((resolve, reject) => {
    process.on('message', (msg: { type: string; n?: number }) => {
      queue = queue
        .then(async () => {
          if (msg.type === 'burst') {
            await send(await timed(client, totals, msg.n!));
          } else if (msg.type === 'go') {
            await once(client, totals);
            await send(await totals.result());
            resolve();
          } else if (msg.type === 'finish') {
            await send(await totals.result());
            resolve();
          }
        })
        .catch(reject);
    });
    send({ type: 'ready' }).catch(reject);
  });
  await client.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
