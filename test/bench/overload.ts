// npm run bench:overload [-- --seconds 10 --workers 16 --load 3 --json]
//
// What a concurrency limit does for an overloaded upstream. The upstream (a process of its own)
// has a capacity knee: `workers` requests served at once, 10–20 ms each, its own FIFO queue of up
// to 500 behind them, and a 503 past that queue. Each client offers `load` × its capacity, open
// loop (a fixed number of new requests every 10 ms, whatever is still pending), for `seconds`:
//
//   none        no bulkhead
//   static 4×   bulkhead({ maxConcurrent: 4 × workers })
//   static ¼×   bulkhead({ maxConcurrent: workers / 4 })
//   adaptive    bulkhead({ maxConcurrent: 'adaptive' })
//   adaptive, capacity halves   the same, and the upstream drops to half its workers mid-run
//
// Every client has a 1 s total timeout in front (a caller does not wait forever) and a client-side
// queue of 256. The first second of each run is a warm-up, not counted. Reported per client:
// goodput (200s the callers got per second, within their 1 s deadline, as a share of the
// upstream's capacity as measured in the run: timers run late on a busy machine), the upstream's queue (length seen by arrivals, and how long admitted requests waited
// in it), p50 and p99 of attempt latency (dispatch to headers, from breakwater:attempt:end), and
// the adaptive limit over time. An unloaded run (0.3 × capacity, no limit) gives the reference
// attempt latency.
//
// Targets: adaptive goodput ≥ 90 % of capacity with the upstream's queue ≤ 1 × workers (p99 of
// what arrivals saw) and attempt p99 ≤ 2 × the unloaded p99; static 4× loses on latency, static
// ¼× on goodput; when the capacity halves, the limit follows within 5 s.

import { type ChildProcess, fork } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { fileURLToPath } from 'node:url';
import { Agent, type Dispatcher, request } from 'undici';
import {
  type AttemptEndMessage,
  bulkhead,
  pipeline,
  type ResilienceInterceptor,
  resilient,
  type Stage,
  timeout,
} from '../../src/index.js';
import { type KneeStats, startKneeUpstream } from '../helpers/knee-upstream.js';
import { fixed, intArg, nextMessage, parseArgs, quantile, table } from './common.js';

const SCRIPT = fileURLToPath(import.meta.url);
const args = parseArgs(process.argv.slice(2));
const SECONDS = intArg(args, 'seconds', 10);
const WORKERS = intArg(args, 'workers', 16);
const LOAD = Number(args.get('load') ?? 3);
const asJson = args.has('json');
/** Requests per second the upstream serves at its knee: workers over the mean service time. */
const CAPACITY = WORKERS / 0.015;
const WARM_UP_MS = 1_000;

type ToChild = { type: 'reset' } | { type: 'workers'; workers: number } | { type: 'stats' };
type FromChild = { type: 'ready'; origin: string } | { type: 'stats'; stats: KneeStats };

if (args.has('child')) {
  const upstream = await startKneeUpstream({ workers: WORKERS, maxQueue: 500, seed: 11 });
  process.on('message', (message: ToChild) => {
    if (message.type === 'reset') upstream.reset();
    else if (message.type === 'workers') upstream.setWorkers(message.workers);
    else process.send!({ type: 'stats', stats: upstream.stats } satisfies FromChild);
  });
  process.on('disconnect', () => void upstream.close().then(() => process.exit(0)));
  process.send!({ type: 'ready', origin: upstream.origin } satisfies FromChild);
} else {
  await main();
}

interface Result {
  client: string;
  /** 200s per second as a share of the upstream's measured capacity (of the load, below capacity). */
  goodput: number;
  okPerSecond: number;
  ok: number;
  rejected: number;
  upstreamQueueP50: number;
  upstreamQueueP99: number;
  upstreamWaitP99: number;
  attemptP50: number;
  attemptP99: number;
  limits: number[];
  followedInS?: number;
}

async function main(): Promise<void> {
  const child = fork(SCRIPT, ['--child', '--workers', String(WORKERS)], { stdio: 'inherit' });
  const { origin } = await nextMessage<Extract<FromChild, { type: 'ready' }>>(child, 'ready');
  const results: Result[] = [];
  try {
    const reference = await run(child, origin, 'unloaded (0.3 ×)', [], 0.3, Math.min(SECONDS, 4));
    results.push(reference);
    const clients: Array<[string, Stage[], boolean]> = [
      ['none', [], false],
      ['static 4×', [bulkhead({ maxConcurrent: 4 * WORKERS, maxQueue: 256 })], false],
      ['static ¼×', [bulkhead({ maxConcurrent: Math.max(1, WORKERS / 4), maxQueue: 256 })], false],
      ['adaptive', [bulkhead({ maxConcurrent: 'adaptive', maxQueue: 256 })], false],
      ['adaptive, capacity halves', [bulkhead({ maxConcurrent: 'adaptive', maxQueue: 256 })], true],
    ];
    for (const [name, stages, halve] of clients) {
      results.push(await run(child, origin, name, stages, LOAD, SECONDS, halve));
    }
  } finally {
    child.disconnect();
  }
  if (asJson) {
    console.log(
      JSON.stringify({ workers: WORKERS, capacity: CAPACITY, load: LOAD, seconds: SECONDS, results }),
    );
    return;
  }
  console.log(
    `upstream: ${WORKERS} workers × 10–20 ms (capacity ≈ ${CAPACITY.toFixed(0)}/s), queue 500; offered ${LOAD} × capacity for ${SECONDS} s per client\n`,
  );
  console.log(
    table(
      [
        'client',
        'goodput',
        '200s/s',
        'refused',
        'upstream queue p50/p99',
        'upstream wait p99',
        'attempt p50',
        'attempt p99',
      ],
      results.map((r) => [
        r.client,
        `${fixed(r.goodput * 100, 0)} %`,
        fixed(r.okPerSecond, 0),
        String(r.rejected),
        `${r.upstreamQueueP50} / ${r.upstreamQueueP99}`,
        `${fixed(r.upstreamWaitP99, 1)} ms`,
        `${fixed(r.attemptP50, 1)} ms`,
        `${fixed(r.attemptP99, 1)} ms`,
      ]),
    ),
  );
  for (const r of results.filter((r) => r.limits.length > 0)) {
    console.log(
      `\n${r.client}: limit every 250 ms (min ${Math.min(...r.limits)}, max ${Math.max(...r.limits)})`,
    );
    console.log(`  ${sparkline(r.limits)}`);
    if (r.followedInS !== undefined)
      console.log(`  followed the halved capacity in ${fixed(r.followedInS, 2)} s`);
  }
}

async function run(
  child: ChildProcess,
  origin: string,
  name: string,
  stages: Stage[],
  load: number,
  seconds: number,
  halve = false,
): Promise<Result> {
  const agent = new Agent({ connections: 2048, keepAliveTimeout: 30_000, pipelining: 1 });
  const interceptor: ResilienceInterceptor = pipeline([timeout(1_000), ...stages]);
  const dispatcher: Dispatcher = resilient(agent, interceptor);
  const latencies: number[] = [];
  const onAttemptEnd = (message: unknown): void => {
    const m = message as AttemptEndMessage;
    if (m.statusCode === 200) latencies.push(m.durationMs);
  };
  subscribe('breakwater:attempt:end', onAttemptEnd);
  child.send({ type: 'workers', workers: WORKERS } satisfies ToChild);
  const warmUpEnds = performance.now() + WARM_UP_MS;
  const end = warmUpEnds + seconds * 1_000;
  let ok = 0;
  let rejected = 0;
  const pending = new Set<Promise<void>>();
  const send = (): void => {
    const p = request(`${origin}/`, { dispatcher }).then(
      async (res) => {
        await res.body.dump();
        // Only what arrived during the run counts: the upstream's queue drains after it.
        if (performance.now() >= end) return;
        if (res.statusCode === 200) ok++;
        else rejected++;
      },
      () => {
        if (performance.now() < end) rejected++;
      },
    );
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const limits: number[] = [];
  const limitNow = () => Object.values(interceptor.health())[0]?.concurrencyLimit;
  const perTick = (CAPACITY * load) / 100;
  let owed = 0;
  let followedInS: number | undefined;
  let belowSince = Number.NaN;
  let limitBeforeHalving = Number.NaN;
  let started = Number.NaN;
  const halveAt = warmUpEnds + (seconds * 1_000) / 2;
  await new Promise<void>((resolve) => {
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      if (Number.isNaN(started) && now >= warmUpEnds) {
        started = now;
        ok = 0;
        rejected = 0;
        latencies.length = 0;
        limits.length = 0;
        child.send({ type: 'reset' } satisfies ToChild);
      }
      if (now >= end) {
        clearInterval(timer);
        resolve();
        return;
      }
      owed += perTick;
      for (; owed >= 1; owed--) send();
      if (++ticks % 25 === 0) {
        const limit = limitNow();
        if (limit !== undefined) limits.push(limit);
      }
      if (halve && Number.isNaN(limitBeforeHalving) && now >= halveAt) {
        // The settled limit: the median of the last two seconds' readings.
        limitBeforeHalving = quantile(limits.slice(-8), 0.5);
        child.send({ type: 'workers', workers: Math.max(1, WORKERS / 2) } satisfies ToChild);
      }
      const limit = limitNow();
      if (halve && followedInS === undefined && !Number.isNaN(limitBeforeHalving) && limit !== undefined) {
        // Followed: at or below 60 % of the settled limit, and still there a second later.
        if (limit > 0.6 * limitBeforeHalving) belowSince = Number.NaN;
        else if (Number.isNaN(belowSince)) belowSince = now;
        else if (now - belowSince >= 1_000) followedInS = (belowSince - halveAt) / 1_000;
      }
    }, 10);
  });
  const elapsedS = (performance.now() - started) / 1_000;
  child.send({ type: 'stats' } satisfies ToChild);
  const { stats } = await nextMessage<Extract<FromChild, { type: 'stats' }>>(child, 'stats');
  await Promise.all(pending);
  unsubscribe('breakwater:attempt:end', onAttemptEnd);
  interceptor.destroy();
  await agent.close();
  // The upstream's real capacity in this run: its workers on average, each serving one request per
  // mean service time as measured (timers run late on a busy machine).
  const capacityPerSecond = (stats.capacityMs / (elapsedS * 1_000)) * (stats.served / stats.busyMs) * 1_000;
  const okPerSecond = ok / elapsedS;
  return {
    client: name,
    goodput: okPerSecond / Math.min(capacityPerSecond, capacityPerSecond * load),
    okPerSecond,
    ok,
    rejected,
    upstreamQueueP50: quantile(stats.queueSeen, 0.5),
    upstreamQueueP99: quantile(stats.queueSeen, 0.99),
    upstreamWaitP99: quantile(stats.waits, 0.99),
    attemptP50: quantile(latencies, 0.5),
    attemptP99: quantile(latencies, 0.99),
    limits,
    ...(halve ? { followedInS } : {}),
  };
}

function sparkline(values: readonly number[]): string {
  const bars = '▁▂▃▄▅▆▇█';
  const max = Math.max(...values);
  return values.map((v) => bars[Math.min(7, Math.floor((v / max) * 7.999))]).join('');
}
