// npm run bench:faults [-- --rate 400 --seconds 5 --only fail-20,outage-503 --json]
//
// What a resilience layer buys when the upstream misbehaves: Breakwater's standardPipeline against
// undici's retry interceptor and a naive cockatiel wrap, each in front of the same faulty upstream
// (a server process of its own, pinned to core 1). Requests arrive open-loop at a fixed rate for a
// fixed time, so every client gets the same number of logical requests whatever it does with
// them. Upstream requests are counted below the resilience layer (a counting Dispatcher under
// it) and cross-checked against what the server received.

import { type AddressInfo, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  ExponentialBackoff,
  handleAll,
  isBrokenCircuitError,
  TimeoutStrategy,
  wrap,
} from 'cockatiel';
import { Agent, Dispatcher, interceptors, request } from 'undici';
import { isCircuitOpenError, resilient, standardPipeline } from '../../src/index.js';
import {
  CLIENT_CORE,
  describeEnvironment,
  environment,
  fixed,
  intArg,
  parseArgs,
  pinSelf,
  quantile,
  type ServerMode,
  startServer,
  table,
  type UpstreamServer,
} from './common.js';

/** Counts every dispatch that reaches it: each one is a request sent upstream (or a connect tried). */
class CountingDispatcher extends Dispatcher {
  count = 0;
  readonly #inner: Dispatcher;

  constructor(inner: Dispatcher) {
    super();
    this.#inner = inner;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.count++;
    return this.#inner.dispatch(opts, handler);
  }

  override close(): Promise<void> {
    return this.#inner.close();
  }

  override destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}

interface Outcome {
  ok: boolean;
  /** `200`, `503`, or the error's name/code. */
  kind: string;
  /** The library's own open-circuit refusal (CircuitOpenError, cockatiel's BrokenCircuitError). */
  circuitOpen: boolean;
}

interface FaultClient {
  send(): Promise<Outcome>;
  readonly upstream: CountingDispatcher;
  close(): Promise<void>;
}

interface Scenario {
  name: string;
  what: string;
  /** Server behaviour, or `refused` for a port nobody listens on. */
  mode: ServerMode | 'refused';
  /** Per-attempt time limit every client gets (ms). */
  attemptTimeoutMs: number;
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'fail-20',
    what: '20 % of responses are 503 (independent, seeded)',
    mode: { failRatio: 0.2, seed: 20 },
    attemptTimeoutMs: 10_000,
  },
  {
    name: 'outage-503',
    what: 'every response is 503',
    mode: { failRatio: 1, seed: 1 },
    attemptTimeoutMs: 10_000,
  },
  {
    name: 'outage-refused',
    what: 'nothing listens: every connect is refused',
    mode: 'refused',
    attemptTimeoutMs: 10_000,
  },
  {
    name: 'slow-10',
    what: '10 % of responses wait 2 s before headers; every client bounds an attempt at 500 ms',
    mode: { slowRatio: 0.1, slowMs: 2_000, seed: 10 },
    attemptTimeoutMs: 500,
  },
  {
    name: '429-retry-after',
    what: '20 % of responses are 429 with Retry-After: 1',
    mode: { failRatio: 0.2, failStatus: 429, retryAfter: '1', seed: 429 },
    attemptTimeoutMs: 10_000,
  },
];

function errorKind(err: unknown): string {
  const e = err as { code?: string; name?: string; cause?: { code?: string } } | null;
  return e?.code ?? e?.cause?.code ?? e?.name ?? String(err);
}

class StatusError extends Error {
  readonly statusCode: number;

  constructor(statusCode: number) {
    super(`status ${statusCode}`);
    this.statusCode = statusCode;
  }
}

/** A request through `dispatcher`, body read; a non-200 status is a failed outcome, not a throw. */
async function plainSend(url: string, dispatcher: Dispatcher): Promise<Outcome> {
  try {
    const res = await request(url, { dispatcher });
    await res.body.text();
    return { ok: res.statusCode === 200, kind: String(res.statusCode), circuitOpen: false };
  } catch (err) {
    return { ok: false, kind: errorKind(err), circuitOpen: isCircuitOpenError(err) };
  }
}

const CLIENTS: readonly { name: string; what: string; build(origin: string, s: Scenario): FaultClient }[] = [
  {
    name: 'breakwater',
    what: 'resilient(agent, standardPipeline()) — attemptTimeout set to the scenario’s limit',
    build(origin, s) {
      const upstream = new CountingDispatcher(new Agent());
      const dispatcher = resilient(upstream, standardPipeline({ attemptTimeout: s.attemptTimeoutMs }));
      const url = `${origin}/`;
      return { upstream, send: () => plainSend(url, dispatcher), close: () => dispatcher.close() };
    },
  },
  {
    name: 'undici-retry',
    what: 'agent.compose(interceptors.retry({ maxRetries: 2 })), headersTimeout = the limit',
    build(origin, s) {
      const upstream = new CountingDispatcher(new Agent({ headersTimeout: s.attemptTimeoutMs }));
      // Three attempts in all, like the preset; everything else is undici's default.
      const dispatcher = upstream.compose(interceptors.retry({ maxRetries: 2 }));
      const url = `${origin}/`;
      return { upstream, send: () => plainSend(url, dispatcher), close: () => upstream.close() };
    },
  },
  {
    name: 'cockatiel',
    what: 'naive wrap(retry(handleAll, 2 retries), breaker(10 consecutive), timeout(limit)); 5xx/429 thrown',
    build(origin, s) {
      const upstream = new CountingDispatcher(new Agent());
      const url = `${origin}/`;
      const policy = wrap(
        cockatielRetry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
        cockatielBreaker(handleAll, { halfOpenAfter: 5_000, breaker: new ConsecutiveBreaker(10) }),
        cockatielTimeout(s.attemptTimeoutMs, TimeoutStrategy.Cooperative),
      );
      return {
        upstream,
        async send() {
          try {
            await policy.execute(async ({ signal }) => {
              const res = await request(url, { dispatcher: upstream, signal });
              await res.body.text();
              if (res.statusCode >= 500 || res.statusCode === 429) throw new StatusError(res.statusCode);
            });
            return { ok: true, kind: '200', circuitOpen: false };
          } catch (err) {
            const kind = err instanceof StatusError ? String(err.statusCode) : errorKind(err);
            return { ok: false, kind, circuitOpen: isBrokenCircuitError(err) };
          }
        },
        close: () => upstream.close(),
      };
    },
  },
];

interface Row {
  scenario: string;
  client: string;
  logical: number;
  successRate: number;
  attemptsPerRequest: number;
  /** Requests the server received per logical request (null when nothing listens). */
  serverPerRequest: number | null;
  okP50Ms: number;
  allP99Ms: number;
  failP50Ms: number;
  /** Failures of requests that started after the first second (breakers had time to open). */
  lateFailP50Ms: number;
  /** Failures that were the library's open-circuit refusal. */
  circuitOpenFailures: number;
  circuitOpenP50Ms: number;
  kinds: Record<string, number>;
  wallS: number;
}

const args = parseArgs(process.argv.slice(2));
const rate = intArg(args, 'rate', 400);
const seconds = intArg(args, 'seconds', 5);
const json = args.has('json');
const only = args
  .get('only')
  ?.split(',')
  .map((s) => s.trim());
const scenarios = SCENARIOS.filter((s) => only === undefined || only.includes(s.name));
const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function runOne(
  server: UpstreamServer,
  scenario: Scenario,
  clientDef: (typeof CLIENTS)[number],
): Promise<Row> {
  const origin = scenario.mode === 'refused' ? `http://127.0.0.1:${await closedPort()}` : server.origin;
  if (scenario.mode !== 'refused') await server.configure(scenario.mode);
  const client = clientDef.build(origin, scenario);
  const total = rate * seconds;
  const starts = new Float64Array(total);
  const ends = new Float64Array(total);
  const outcomes: Outcome[] = new Array(total);
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  const launch = (i: number): void => {
    starts[i] = performance.now() - t0;
    pending.push(
      client.send().then((o) => {
        ends[i] = performance.now() - t0;
        outcomes[i] = o;
      }),
    );
  };
  // Open loop: launch whatever the clock says is due, every 2 ms, whatever came back.
  await new Promise<void>((resolve) => {
    let launched = 0;
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
      while (launched < due) launch(launched++);
      if (launched >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 2);
    tick();
  });
  await Promise.all(pending);
  const wallS = (performance.now() - t0) / 1000;
  const seen = scenario.mode === 'refused' ? null : (await server.cpu()).requests;
  await client.close();

  const latency = (i: number): number => ends[i]! - starts[i]!;
  const idx = [...outcomes.keys()];
  const ok = idx.filter((i) => outcomes[i]!.ok);
  const failed = idx.filter((i) => !outcomes[i]!.ok);
  const open = failed.filter((i) => outcomes[i]!.circuitOpen);
  const kinds: Record<string, number> = {};
  for (const o of outcomes) kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
  return {
    scenario: scenario.name,
    client: clientDef.name,
    logical: total,
    successRate: ok.length / total,
    attemptsPerRequest: client.upstream.count / total,
    serverPerRequest: seen === null ? null : seen / total,
    okP50Ms: quantile(ok.map(latency), 0.5),
    allP99Ms: quantile(idx.map(latency), 0.99),
    failP50Ms: quantile(failed.map(latency), 0.5),
    lateFailP50Ms: quantile(failed.filter((i) => starts[i]! >= 1_000).map(latency), 0.5),
    circuitOpenFailures: open.length,
    circuitOpenP50Ms: quantile(open.map(latency), 0.5),
    kinds,
    wallS,
  };
}

/**
 * Runs each client against a healthy upstream first, on throwaway instances, so the first
 * scenario does not pay for compiling and optimising the code the later ones get for free.
 */
async function warmUp(server: UpstreamServer): Promise<void> {
  await server.configure({});
  const healthy: Scenario = { name: 'warm-up', what: '', mode: {}, attemptTimeoutMs: 10_000 };
  for (const c of CLIENTS) {
    const client = c.build(server.origin, healthy);
    for (let batch = 0; batch < 50; batch++)
      await Promise.all(Array.from({ length: 16 }, () => client.send()));
    await client.close();
  }
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return '–';
  return value < 10 ? value.toFixed(3) : value.toFixed(0);
}

function render(rows: Row[]): string {
  return table(
    [
      'scenario',
      'client',
      'requests',
      'success',
      'attempts/req',
      'server/req',
      'ok p50 ms',
      'all p99 ms',
      'fail p50 ms',
      'late fail p50',
      'open-circuit fails (p50 ms)',
      'outcomes',
    ],
    rows.map((r) => [
      r.scenario,
      r.client,
      String(r.logical),
      `${fixed(r.successRate * 100, 2)} %`,
      fixed(r.attemptsPerRequest, 3),
      r.serverPerRequest === null ? '–' : fixed(r.serverPerRequest, 3),
      ms(r.okP50Ms),
      ms(r.allP99Ms),
      ms(r.failP50Ms),
      ms(r.lateFailP50Ms),
      r.circuitOpenFailures === 0 ? '0' : `${r.circuitOpenFailures} (${ms(r.circuitOpenP50Ms)})`,
      Object.entries(r.kinds)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([k, n]) => `${k}:${n}`)
        .join(' '),
    ]),
  );
}

/** The SPEC's fault targets, checked against Breakwater's rows. */
function targets(rows: Row[]): string[] {
  const bw = (scenario: string): Row | undefined =>
    rows.find((r) => r.scenario === scenario && r.client === 'breakwater');
  const lines: string[] = [];
  const check = (ok: boolean, text: string): void => void lines.push(`${ok ? 'PASS' : 'FAIL'}  ${text}`);
  const f20 = bw('fail-20');
  if (f20) {
    check(f20.successRate >= 0.995, `fail-20: success ${fixed(f20.successRate * 100, 2)} % >= 99.5 %`);
    check(
      f20.attemptsPerRequest <= 1.3,
      `fail-20: ${fixed(f20.attemptsPerRequest, 3)} attempts/request <= 1.3`,
    );
  }
  for (const name of ['outage-503', 'outage-refused']) {
    const o = bw(name);
    if (!o) continue;
    check(o.attemptsPerRequest <= 1.2, `${name}: ${fixed(o.attemptsPerRequest, 3)} attempts/request <= 1.2`);
    check(o.circuitOpenP50Ms < 1, `${name}: open-circuit failures p50 ${ms(o.circuitOpenP50Ms)} ms < 1 ms`);
  }
  return lines;
}

async function main(): Promise<void> {
  pinSelf(CLIENT_CORE);
  const env = environment();
  log(describeEnvironment(env));
  log(`${scenarios.length} scenarios × ${CLIENTS.length} clients, ${rate} requests/s for ${seconds} s each`);
  const server = await startServer();
  const rows: Row[] = [];
  try {
    await warmUp(server);
    for (const scenario of scenarios) {
      for (const c of CLIENTS) {
        const row = await runOne(server, scenario, c);
        rows.push(row);
        log(
          `${scenario.name.padEnd(16)} ${c.name.padEnd(13)} success ${fixed(row.successRate * 100, 2).padStart(6)} %  attempts/req ${fixed(row.attemptsPerRequest, 3)}  (${fixed(row.wallS, 1)} s)`,
        );
      }
    }
  } finally {
    await server.stop();
  }
  if (json) {
    console.log(JSON.stringify({ environment: env, settings: { rate, seconds }, rows }, null, 2));
    return;
  }
  console.log(describeEnvironment(env));
  console.log(`open loop: ${rate} logical requests/s for ${seconds} s per client and scenario`);
  console.log('');
  console.log(render(rows));
  console.log('');
  for (const line of targets(rows)) console.log(line);
  console.log('');
  for (const s of scenarios) console.log(`  ${s.name.padEnd(16)} ${s.what}`);
  for (const c of CLIENTS) console.log(`  ${c.name.padEnd(16)} ${c.what}`);
  console.log(
    '  attempts/req: dispatches below the resilience layer per logical request; server/req: what the server received.',
  );
  console.log(
    '  late fail p50: failures of requests started after the first second; open-circuit: refused by the library’s breaker.',
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
