// The soak: a million requests (by default) through standardPipeline with metrics, against the
// fault-injecting test upstream running in a process of its own. The upstream draws each answer
// from a seeded mix: mostly 200s, then 503 and 429 (Retry-After: 0), resets before headers, slow
// answers, hangs (seededScript), plus resets mid-body, keep-alive sockets closed right after the
// response, and trickled bodies. It reports the heap before and after (collected), requests per
// second, and every invariant; it exits non-zero when one fails. Endless bodies and refused
// connections are left to the test suite: they would only measure the timeouts over and over.
//
//   npm run soak                               # 1,000,000 requests
//   npm run soak -- --requests 100000 --concurrency 128 --seed 7 --dispatcher resilient
//
// Invariants: every request settled, none after its total timeout + a margin, each with an
// expected outcome; no POST without an Idempotency-Key executed twice upstream (and every answered
// one executed exactly once); no process warning; no unhandled rejection; after close() nothing in
// flight or queued and no socket open on either side; heap growth < 5 MB over the run.

import { type ChildProcess, fork } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { type Dispatcher, request } from 'undici';
import {
  type AttemptEndMessage,
  CircuitBreakerStage,
  prometheusMetrics,
  resilient,
  standardPipeline,
} from '../../src/index.js';
import { mulberry32 } from '../helpers/prng.js';
import { type Behaviour, seededScript, startUpstream } from '../helpers/upstream.js';
import { EXPECTED_ERRORS, errorLabel, ProcessGuard, TrackingConnector } from '../reliability/harness.js';
import { type LoopDelayEntry, LoopDelayLog } from './loop-delay-log.js';

const SCRIPT = fileURLToPath(import.meta.url);
const HEAP_LIMIT = 5 * 1024 * 1024;
const TOTAL_TIMEOUT = 2_000;
const ATTEMPT_TIMEOUT = 250;
const MAX_ATTEMPTS = 3;
/** The share of requests the upstream must have received rather than the library failing them fast. */
const MIN_SENT_SHARE = 0.95;
/** How late after its total timeout a request may settle on a busy 2-core machine. */
const SETTLE_MARGIN = 250;

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000000' },
    concurrency: { type: 'string', default: '100' },
    seed: { type: 'string', default: '20250101' },
    dispatcher: { type: 'string', default: 'compose' },
    child: { type: 'boolean', default: false },
  },
  allowPositionals: false,
});

const REQUESTS = Number(args.requests.replaceAll('_', ''));
const CONCURRENCY = Number(args.concurrency);
const SEED = Number(args.seed);

// --- the upstream, in a child process ------------------------------------------------------------

type FromChild =
  | { type: 'ready'; port: number }
  | {
      type: 'stats';
      received: number;
      openSockets: number;
      connections: number;
      behaviours: Record<string, number>;
      /** Executions per request id (saturating at 255), base64. */
      executions: string;
      loopDelays: LoopDelayEntry[];
    };

/**
 * Serves the seeded mix and counts executions per request id in a byte array (a million ids are
 * a megabyte, and the upstream's own request log is cleared every second so it cannot grow).
 */
async function runChild(): Promise<void> {
  const executions = new Uint8Array(REQUESTS);
  const behaviours: Record<string, number> = {};
  const seeded = seededScript(
    SEED,
    { ok: 90, status503: 3, status429: 1, reset: 1.5, slow: 2, hang: 0.05 },
    { retryAfter: '0', slowMs: 30 },
  );
  // Faults seededScript does not draw, on a stream of their own.
  const extra = mulberry32(SEED ^ 0x5eed);
  let received = 0;
  const upstream = await startUpstream((req) => {
    received++;
    const id = Number(req.headers['x-soak-id']);
    if (Number.isInteger(id) && id >= 0 && id < REQUESTS && executions[id]! < 255) executions[id]!++;
    const roll = extra();
    let b: Behaviour;
    if (roll < 0.005) b = { kind: 'reset-mid-body', body: 'partial', resetAfterMs: 1 };
    else if (roll < 0.015) b = { kind: 'close-after-response', status: 200, body: 'bye' };
    else if (roll < 0.017) b = { kind: 'trickle', intervalMs: 5, count: 4 };
    else b = seeded(req);
    const name = b.kind === 'respond' ? `respond ${b.status}${b.delayMs ? ' slow' : ''}` : b.kind;
    behaviours[name] = (behaviours[name] ?? 0) + 1;
    return b;
  });
  const cleaner = setInterval(() => upstream.reset(), 1_000);
  const loopDelays = new LoopDelayLog();
  const send = (m: FromChild): void => void process.send?.(m);
  process.on('message', async (m: { type: string }) => {
    if (m.type === 'stats') {
      // Sockets the client closed are seen closed here a moment later.
      await upstream.waitForSocketsClosed(2_000).catch(() => undefined);
      send({
        type: 'stats',
        received,
        openSockets: upstream.openSockets(),
        connections: upstream.connections,
        behaviours,
        executions: Buffer.from(executions.buffer).toString('base64'),
        loopDelays: loopDelays.entries,
      });
    } else if (m.type === 'exit') {
      clearInterval(cleaner);
      loopDelays.stop();
      await upstream.close();
      process.disconnect?.();
    }
  });
  send({ type: 'ready', port: upstream.port });
}

function nextMessage<T extends FromChild['type']>(
  child: ChildProcess,
  type: T,
): Promise<Extract<FromChild, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromChild): void => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m as Extract<FromChild, { type: T }>);
    };
    const onExit = (code: number | null): void => reject(new Error(`upstream exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

// --- the client -----------------------------------------------------------------------------------

const MB = 1024 * 1024;
const mb = (bytes: number): string => `${(bytes / MB).toFixed(2)} MB`;

function collect(): number {
  const gc = (globalThis as { gc?: () => void }).gc!;
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Request `i`'s method: 60 % GET, 20 % POST, 10 % POST with Idempotency-Key, 10 % PUT. */
function callOf(i: number): { method: 'GET' | 'POST' | 'PUT'; keyed: boolean } {
  const slot = i % 10;
  if (slot < 6) return { method: 'GET', keyed: false };
  if (slot < 8) return { method: 'POST', keyed: false };
  if (slot === 8) return { method: 'POST', keyed: true };
  return { method: 'PUT', keyed: false };
}

async function runParent(): Promise<number> {
  const child = fork(SCRIPT, ['--child', '--requests', String(REQUESTS), '--seed', String(SEED)], {
    execArgv: process.execArgv.filter((a) => a !== '--expose-gc'),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port } = await nextMessage(child, 'ready');
  const url = `http://127.0.0.1:${port}/soak`;

  const guard = new ProcessGuard();
  const registry = new Registry();
  const interceptor = standardPipeline({
    totalTimeout: TOTAL_TIMEOUT,
    attemptTimeout: ATTEMPT_TIMEOUT,
    retry: { maxAttempts: MAX_ATTEMPTS, backoff: { initialDelay: 5, maxDelay: 50 } },
    metrics: prometheusMetrics({ registry }),
  });
  // Breaker transitions and the slowest requests, to explain a failed invariant.
  const t0 = performance.now();
  const at = (): string => `${((performance.now() - t0) / 1000).toFixed(2)} s`;
  const transitions: string[] = [];
  let transitionCount = 0;
  const breakerStage = interceptor.stages.find(
    (s): s is CircuitBreakerStage => s instanceof CircuitBreakerStage,
  );
  // The attempts that ended last, so an opening breaker can say what it counted.
  const recentAttempts: string[] = [];
  const onAttemptEnd = (message: unknown): void => {
    const m = message as AttemptEndMessage;
    recentAttempts.push(
      `${m.attempt}${m.hedge ? 'h' : ''}:${m.statusCode ?? errorLabel(m.error)}@${m.durationMs.toFixed(0)}ms`,
    );
    if (recentAttempts.length > 24) recentAttempts.shift();
  };
  subscribe('breakwater:attempt:end', onAttemptEnd);
  const clientLoopDelays = new LoopDelayLog();
  const openedAt: number[] = [];
  breakerStage?.onStateChange((e) => {
    if (e.to === 'open') openedAt.push(performance.timeOrigin + performance.now());
    if (e.to === 'open' && transitions.length < 12)
      transitions.push(`last attempts: ${recentAttempts.join(' ')}`);
    transitionCount++;
    if (transitions.length < 12) transitions.push(`${at()} ${e.from}→${e.to}`);
  });
  const lateOnes: string[] = [];
  const connector = new TrackingConnector();
  const { Agent } = await import('undici');
  const agent = new Agent({ connect: connector.connect });
  const dispatcher: Dispatcher =
    args.dispatcher === 'resilient' ? resilient(agent, interceptor) : agent.compose(interceptor);

  // 0 = never settled, 1 = answered (headers reached the caller), 2 = failed before headers.
  const results = new Uint8Array(REQUESTS);
  const outcomes = new Map<string, number>();
  const unexpected: string[] = [];
  let settled = 0;
  let lateSettles = 0;
  let maxLatency = 0;
  let next = 0;

  const count = (label: string): void => {
    outcomes.set(label, (outcomes.get(label) ?? 0) + 1);
  };

  const one = async (i: number): Promise<string> => {
    const { method, keyed } = callOf(i);
    const headers: Record<string, string> = { 'x-soak-id': String(i) };
    if (keyed) headers['idempotency-key'] = `soak-${i}`;
    const started = performance.now();
    let label: string;
    try {
      const res = await request(url, {
        dispatcher,
        method,
        headers,
        body: method === 'GET' ? undefined : '{"soak":true}',
      });
      results[i] = 1;
      try {
        await res.body.text();
        label = String(res.statusCode);
      } catch (error) {
        label = `${res.statusCode}+${errorLabel(error)}`;
        if (!EXPECTED_ERRORS.has(errorLabel(error))) unexpected.push(`${i}: ${String(error)}`);
      }
    } catch (error) {
      results[i] = 2;
      label = errorLabel(error);
      if (!EXPECTED_ERRORS.has(label)) unexpected.push(`${i}: ${String((error as Error)?.stack ?? error)}`);
    }
    const latency = performance.now() - started;
    if (latency > maxLatency) maxLatency = latency;
    if (latency > TOTAL_TIMEOUT + SETTLE_MARGIN) {
      lateSettles++;
      if (lateOnes.length < 8)
        lateOnes.push(
          `#${i} ${method}${keyed ? '+key' : ''} → ${label} after ${latency.toFixed(0)} ms (settled at ${at()})`,
        );
    }
    count(label);
    settled++;
    return label;
  };

  // A refusal of the library (circuit open, bulkhead full) reaches the caller in a microtask,
  // without any I/O. A loop that sends the next request straight away would then run on
  // microtasks alone and starve the event loop: no timer, no socket, no half-open probe would
  // progress until the loop ended. A real client is driven by I/O events; this one yields a turn
  // after such a refusal, as one would.
  const worker = async (limit: number): Promise<void> => {
    while (next < limit) {
      const label = await one(next++);
      if (label === 'BREAKWATER_CIRCUIT_OPEN' || label === 'BREAKWATER_BULKHEAD_REJECTED') {
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  };
  const runUpTo = (limit: number): Promise<unknown> =>
    Promise.all(Array.from({ length: CONCURRENCY }, () => worker(limit)));

  const heapStart = collect();
  // Warm-up: lazily built state (metric children, breaker and bulkhead per key, JIT code) first.
  const warmUp = Math.min(REQUESTS, Math.max(CONCURRENCY * 10, Math.floor(REQUESTS / 50)));
  await runUpTo(warmUp);
  await sleep(50);
  const heapBefore = collect();

  const started = performance.now();
  let lastReport = started;
  let lastSettled = settled;
  const progress = setInterval(() => {
    const now = performance.now();
    const rate = ((settled - lastSettled) / (now - lastReport)) * 1000;
    lastReport = now;
    lastSettled = settled;
    const heap = process.memoryUsage().heapUsed;
    console.log(
      `  ${settled.toLocaleString('en')} / ${REQUESTS.toLocaleString('en')} settled, ${rate.toFixed(0)} req/s, heap ${mb(heap)}`,
    );
  }, 10_000);
  progress.unref();
  await runUpTo(REQUESTS);
  const seconds = (performance.now() - started) / 1000;
  clearInterval(progress);
  await sleep(50);
  const heapAfter = collect();

  const health = interceptor.health();
  await interceptor.close();
  await dispatcher.close();
  await sleep(20);
  const clientSockets = connector.open();
  const statsReply = nextMessage(child, 'stats');
  child.send({ type: 'stats' });
  const stats = await statsReply;
  child.send({ type: 'exit' });
  await new Promise((resolve) => child.once('exit', resolve));
  const afterClose = interceptor.health();

  // Executions per id, as the upstream counted them.
  const executions = new Uint8Array(Buffer.from(stats.executions, 'base64'));
  let duplicatePosts = 0;
  let answeredNotExecuted = 0;
  let overRetried = 0;
  let executedTotal = 0;
  let reachedUpstream = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const n = executions[i]!;
    executedTotal += n;
    if (n > 0) reachedUpstream++;
    const { method, keyed } = callOf(i);
    if (method === 'POST' && !keyed) {
      if (n > 1) duplicatePosts++;
      if (results[i] === 1 && n !== 1) answeredNotExecuted++;
    } else if (n > MAX_ATTEMPTS) overRetried++;
  }

  const metricsText = await registry.metrics();
  let counted = 0;
  for (const m of metricsText.matchAll(/^breakwater_requests_total\{[^}]*\} (\d+)$/gm))
    counted += Number(m[1]);

  await guard.assertClean().catch(() => undefined);
  const warnings = guard.warnings.length;
  const rejections = guard.rejections.length;
  guard.dispose();

  const growth = heapAfter - heapBefore;
  const inFlightLeft = Object.values(afterClose).reduce((n, h) => n + h.inFlight + h.queued, 0);

  console.log('');
  console.log(
    `soak: ${REQUESTS.toLocaleString('en')} requests, concurrency ${CONCURRENCY}, seed ${SEED}, ${args.dispatcher}`,
  );
  console.log(
    `  duration          ${seconds.toFixed(1)} s after a ${warmUp.toLocaleString('en')}-request warm-up`,
  );
  console.log(`  throughput        ${((REQUESTS - warmUp) / seconds).toFixed(0)} req/s`);
  console.log(`  heap at start     ${mb(heapStart)}`);
  console.log(`  heap before       ${mb(heapBefore)} (after warm-up, collected)`);
  console.log(`  heap after        ${mb(heapAfter)} (collected)`);
  console.log(`  heap growth       ${mb(growth)} (limit ${mb(HEAP_LIMIT)})`);
  console.log(`  rss               ${mb(process.memoryUsage().rss)}`);
  console.log(`  max latency       ${maxLatency.toFixed(0)} ms (total timeout ${TOTAL_TIMEOUT} ms)`);
  console.log(
    `  upstream          ${stats.received.toLocaleString('en')} requests received (${(stats.received / REQUESTS).toFixed(3)} per logical request), ${stats.connections} connections since its last reset`,
  );
  console.log(`  behaviours        ${JSON.stringify(stats.behaviours)}`);
  console.log(
    `  outcomes          ${JSON.stringify(Object.fromEntries([...outcomes].sort((a, b) => b[1] - a[1])))}`,
  );
  console.log(`  health at the end ${JSON.stringify(health)}`);
  console.log(
    `  breaker           ${transitionCount} transitions${transitions.length ? `: ${transitions.join(', ')}` : ''}`,
  );
  if (lateOnes.length > 0) console.log(`  late              ${lateOnes.join('\n                    ')}`);
  // Which process stalled before each opening: the client (its own timers and reads late) or the
  // upstream (not answering while the client waited).
  for (const t of openedAt) {
    const client = clientLoopDelays.maxBetween(t - 1_000, t);
    const upstreamMax = Math.max(
      0,
      ...stats.loopDelays.filter((e) => e.at >= t - 1_000 && e.at <= t + 100).map((e) => e.maxMs),
    );
    console.log(
      `  before opening    largest event-loop delay in the last second: client ${client.toFixed(0)} ms, upstream ${upstreamMax.toFixed(0)} ms`,
    );
  }
  clientLoopDelays.stop();

  const checks: Array<[string, boolean, string]> = [
    ['every request settled', settled === REQUESTS && results.every((r) => r !== 0), `${settled}`],
    [
      `none settled later than total timeout + ${SETTLE_MARGIN} ms`,
      lateSettles === 0,
      `${lateSettles} late, max ${maxLatency.toFixed(0)} ms`,
    ],
    [
      'only expected outcomes',
      unexpected.length === 0,
      `${unexpected.length} unexpected ${unexpected.slice(0, 3).join(' | ')}`,
    ],
    ['no POST without Idempotency-Key executed twice', duplicatePosts === 0, `${duplicatePosts}`],
    ['every answered POST executed exactly once', answeredNotExecuted === 0, `${answeredNotExecuted}`],
    [`no request executed more than ${MAX_ATTEMPTS} times`, overRetried === 0, `${overRetried}`],
    [
      'upstream executions = sum over ids',
      executedTotal === stats.received,
      `${executedTotal} vs ${stats.received}`,
    ],
    ['requests_total counts every request', counted === REQUESTS, `${counted}`],
    [
      // A soak that passes on fast failures proves nothing: an open breaker, a full bulkhead or a
      // queue timeout answers without the network, so most requests must have reached the
      // upstream, as it counted them.
      `at least ${MIN_SENT_SHARE * 100} % of requests reached the upstream`,
      reachedUpstream >= REQUESTS * MIN_SENT_SHARE,
      `${reachedUpstream} of ${REQUESTS}`,
    ],
    ['no process warning', warnings === 0, `${warnings}`],
    ['no unhandled rejection', rejections === 0, `${rejections}`],
    ['nothing in flight or queued after close()', inFlightLeft === 0, JSON.stringify(afterClose)],
    ['no client socket open after close()', clientSockets === 0, `${clientSockets}`],
    ['no upstream socket open after close()', stats.openSockets === 0, `${stats.openSockets}`],
    [`heap growth < ${mb(HEAP_LIMIT)}`, growth < HEAP_LIMIT, mb(growth)],
  ];
  console.log('');
  let failed = 0;
  for (const [name, ok, detail] of checks) {
    if (!ok) failed++;
    console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${name} (${detail})`);
  }
  console.log(failed === 0 ? '\nsoak passed' : `\nsoak FAILED: ${failed} invariant(s)`);
  return failed === 0 ? 0 : 1;
}

// --- entry ----------------------------------------------------------------------------------------

if (args.child) {
  await runChild();
} else if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
  // Heap figures mean something only after a full collection: re-run with --expose-gc.
  const rerun = fork(SCRIPT, process.argv.slice(2), {
    execArgv: [...process.execArgv, '--expose-gc'],
    stdio: 'inherit',
  });
  rerun.on('exit', (code, signal) => {
    process.exitCode = code ?? (signal ? 1 : 0);
  });
} else {
  process.exitCode = await runParent();
}
