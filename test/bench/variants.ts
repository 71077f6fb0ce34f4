// The clients the overhead benchmark compares. Each one sends a GET to the upstream and reads the
// whole (small) body, so every variant does the same work on the wire; only what sits between
// `request()` and the Agent differs. Each is built in a fresh process (see client.ts).

import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  bulkhead as cockatielBulkhead,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  ExponentialBackoff,
  handleAll,
  TimeoutStrategy,
  wrap,
} from 'cockatiel';
import CircuitBreaker from 'opossum';
import { Registry } from 'prom-client';
import { Agent, Dispatcher, interceptors, request, setGlobalDispatcher } from 'undici';

// The library under test: the tsc build the orchestrator made (see buildLibrary in common.ts), or
// src/ through tsx when run with --tsx or on its own.
const library: typeof import('../../src/index.js') = await import(
  process.env.BREAKWATER_BENCH_ENTRY ?? '../../src/index.js'
);
const { bulkhead, circuitBreaker, pipeline, prometheusMetrics, resilient, retry, standardPipeline, timeout } =
  library;

export interface BenchClient {
  /** One request, body read to the end; rejects on anything but a 200. */
  send(): Promise<void>;
  close(): Promise<void>;
}

export interface Variant {
  name: string;
  /** What it is, for the table's legend. */
  what: string;
  build(origin: string): BenchClient;
}

/** A no-op Dispatcher subclass: the floor of the `resilient()` integration path. */
export class ForwardingDispatcher extends Dispatcher {
  readonly #inner: Dispatcher;

  constructor(inner: Dispatcher) {
    super();
    this.#inner = inner;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#inner.dispatch(opts, handler);
  }

  override close(): Promise<void> {
    return this.#inner.close();
  }

  override destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}

/** The plain client on `dispatcher`: request(), check the status, read the body. */
function plain(origin: string, dispatcher: Dispatcher): BenchClient {
  const url = `${origin}/`;
  const opts = { dispatcher };
  return {
    async send() {
      const res = await request(url, opts);
      const body = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${body}`);
    },
    close: () => dispatcher.close(),
  };
}

/** The plain client through the global dispatcher: `setGlobalDispatcher(d)`, then request(url) with no options. */
function global(origin: string, dispatcher: Dispatcher): BenchClient {
  const url = `${origin}/`;
  setGlobalDispatcher(dispatcher);
  return {
    async send() {
      const res = await request(url);
      const body = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${body}`);
    },
    close: () => dispatcher.close(),
  };
}

const noopInterceptor: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) =>
  dispatch(opts, handler);

export const VARIANTS: readonly Variant[] = [
  {
    name: 'raw',
    what: "undici request() on an Agent (the baseline of every 'x raw')",
    build: (origin) => plain(origin, new Agent()),
  },
  {
    name: 'noop-compose',
    what: 'no-op interceptor through agent.compose(): the floor of the compose path',
    build: (origin) => plain(origin, new Agent().compose(noopInterceptor)),
  },
  {
    name: 'noop-dispatcher',
    what: 'no-op Dispatcher subclass forwarding dispatch(): the floor of the resilient() path',
    build: (origin) => plain(origin, new ForwardingDispatcher(new Agent())),
  },
  {
    name: 'bw-timeout',
    what: 'resilient(agent, pipeline([timeout(10_000)]))',
    build: (origin) => plain(origin, resilient(new Agent(), pipeline([timeout(10_000)]))),
  },
  {
    name: 'bw-retry',
    what: 'resilient(agent, pipeline([retry()]))',
    build: (origin) => plain(origin, resilient(new Agent(), pipeline([retry()]))),
  },
  {
    name: 'bw-breaker',
    what: 'resilient(agent, pipeline([circuitBreaker()]))',
    build: (origin) => plain(origin, resilient(new Agent(), pipeline([circuitBreaker()]))),
  },
  {
    name: 'bw-bulkhead',
    what: 'resilient(agent, pipeline([bulkhead({ maxConcurrent: 64, maxQueue: 1024 })]))',
    build: (origin) =>
      plain(origin, resilient(new Agent(), pipeline([bulkhead({ maxConcurrent: 64, maxQueue: 1024 })]))),
  },
  {
    name: 'bw-std-compose',
    what: 'agent.compose(standardPipeline())',
    build: (origin) => plain(origin, new Agent().compose(standardPipeline())),
  },
  {
    name: 'bw-std-resilient',
    what: 'resilient(agent, standardPipeline())',
    build: (origin) => plain(origin, resilient(new Agent(), standardPipeline())),
  },
  {
    name: 'bw-std-metrics-compose',
    what: 'agent.compose(standardPipeline({ metrics: prometheusMetrics(...) }))',
    build: (origin) => {
      const metrics = prometheusMetrics({ registry: new Registry() });
      return plain(origin, new Agent().compose(standardPipeline({ metrics })));
    },
  },
  {
    name: 'bw-std-metrics-resilient',
    what: 'resilient(agent, standardPipeline({ metrics: prometheusMetrics(...) }))',
    build: (origin) => {
      const metrics = prometheusMetrics({ registry: new Registry() });
      return plain(origin, resilient(new Agent(), standardPipeline({ metrics })));
    },
  },
  {
    name: 'bw-std-metrics-hedge-resilient',
    what: 'the same with retry({ hedge: { delay: 5_000 } }): hedging configured, never firing',
    build: (origin) => {
      const metrics = prometheusMetrics({ registry: new Registry() });
      return plain(
        origin,
        resilient(new Agent(), standardPipeline({ metrics, retry: { hedge: { delay: 5_000 } } })),
      );
    },
  },
  {
    name: 'raw-global',
    what: 'setGlobalDispatcher(agent) + request(url)',
    build: (origin) => global(origin, new Agent()),
  },
  {
    name: 'noop-global',
    what: 'setGlobalDispatcher(no-op Dispatcher subclass) + request(url)',
    build: (origin) => global(origin, new ForwardingDispatcher(new Agent())),
  },
  {
    name: 'bw-std-global',
    what: 'setGlobalDispatcher(resilient(agent, standardPipeline())) + request(url)',
    build: (origin) => global(origin, resilient(new Agent(), standardPipeline())),
  },
  {
    name: 'bw-std-metrics-global',
    what: 'setGlobalDispatcher(resilient(agent, standardPipeline({ metrics }))) + request(url)',
    build: (origin) => {
      const metrics = prometheusMetrics({ registry: new Registry() });
      return global(origin, resilient(new Agent(), standardPipeline({ metrics })));
    },
  },
  {
    name: 'undici-retry',
    what: "agent.compose(interceptors.retry()): undici's own retry interceptor, defaults",
    build: (origin) => plain(origin, new Agent().compose(interceptors.retry())),
  },
  {
    name: 'cockatiel',
    what: 'cockatiel wrap(timeout, retry, circuitBreaker, bulkhead) around request(), signal passed',
    build: (origin) => {
      const agent = new Agent();
      const url = `${origin}/`;
      // The same four policies and defaults as the preset, in the same order (outermost first).
      const policy = wrap(
        cockatielTimeout(30_000, TimeoutStrategy.Cooperative),
        cockatielRetry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() }),
        cockatielBreaker(handleAll, { halfOpenAfter: 5_000, breaker: new ConsecutiveBreaker(10) }),
        cockatielBulkhead(64, 1024),
      );
      return {
        async send() {
          await policy.execute(async ({ signal }) => {
            const res = await request(url, { dispatcher: agent, signal });
            const body = await res.body.text();
            if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${body}`);
          });
        },
        close: () => agent.close(),
      };
    },
  },
  {
    name: 'opossum',
    what: 'opossum CircuitBreaker around request() (10 s timeout, 50 % errors, 20 calls)',
    build: (origin) => {
      const agent = new Agent();
      const url = `${origin}/`;
      const opts = { dispatcher: agent };
      const breaker = new CircuitBreaker(
        async () => {
          const res = await request(url, opts);
          const body = await res.body.text();
          if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${body}`);
        },
        { timeout: 10_000, errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeout: 5_000 },
      );
      return {
        send: () => breaker.fire(),
        close: async () => {
          breaker.shutdown();
          await agent.close();
        },
      };
    },
  },
];

export function variantNamed(name: string): Variant {
  const v = VARIANTS.find((x) => x.name === name);
  if (v === undefined) {
    throw new Error(`unknown variant ${name}; known: ${VARIANTS.map((x) => x.name).join(', ')}`);
  }
  return v;
}

/**
 * The variant names `--only a,b` asks for, or `fallback` without it. An unknown name ends the
 * process with status 2, naming the known ones: a typo must not quietly shrink a run.
 */
export function onlyVariants(args: Map<string, string>, fallback: readonly string[]): string[] {
  const names = args
    .get('only')
    ?.split(',')
    .map((s) => s.trim()) ?? [...fallback];
  const unknown = names.filter((name) => !VARIANTS.some((v) => v.name === name));
  if (unknown.length > 0) {
    console.error(
      `unknown variant(s): ${unknown.join(', ')}; known: ${VARIANTS.map((v) => v.name).join(', ')}`,
    );
    process.exit(2);
  }
  return names;
}
