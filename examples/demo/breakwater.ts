/**
 * The same job through Breakwater: `standardPipeline` around an undici Agent, with Prometheus
 * metrics served on /metrics while it runs. POSTs carry no Idempotency-Key, so they are retried
 * only when they provably never left (a refused connection): never run twice.
 */
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import {
  CircuitBreakerStage,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isTimeoutError,
  prometheusMetrics,
  RetryStage,
  resilient,
  type StandardPipelineOptions,
  serveMetrics,
  standardPipeline,
} from '../../src/index.js';
import {
  type ClientRun,
  describeError,
  headersOf,
  type LogicalRequest,
  runJob,
  SAMPLE_MS,
  type Send,
  sampleEvery,
} from './job.js';
import { Progress } from './progress.js';
import { UPSTREAM_WORKERS, type Upstream } from './upstream.js';

/** Tuned for a demo that finishes in seconds; production defaults are in the README. */
export const BREAKWATER_SETTINGS = {
  totalTimeout: 5_000,
  // Above the slowest ordinary response (3 s), so that a slow POST, which may not be repeated, is
  // not cut; hung attempts still are, and slow GETs are hedged long before.
  attemptTimeout: 3_500,
  retry: {
    maxAttempts: 3,
    backoff: { initialDelay: 50, maxDelay: 1_000 },
    maxRetryAfter: 2_000,
    // A response that takes far longer than the key's p95 gets a second copy; whichever answers
    // first wins, and the other is aborted, which frees its upstream worker too.
    hedge: { delay: 'adaptive', maxExtraLoad: 0.05 },
  },
  // A failure ratio over a window (as Polly v8's breaker), not a count of consecutive failures:
  // with 20 requests in flight, the short outage of `flaky` fails 20 attempts in a row within
  // milliseconds. A consecutive trigger would open on that, and in a job that starts the next
  // request as soon as one settles, an open breaker fails the whole rest of the job at once.
  // A real outage (`--profile outage`) still opens it within the first 40 attempts.
  circuitBreaker: {
    consecutiveFailures: false,
    failureRatio: 0.5,
    minimumThroughput: 40,
    window: 5_000,
    halfOpenAfter: { initial: 500, max: 4_000 },
  },
  // Above what the demo keeps in flight (20 by default), so that hedges find a free slot: a hedge
  // never queues behind real traffic. The excess of a larger --concurrency waits here, bounded.
  bulkhead: { maxConcurrent: UPSTREAM_WORKERS * 3, maxQueue: 1_024 },
} satisfies StandardPipelineOptions;

/** The settings above, in words, a line each. */
export function describeBreakwater(): string[] {
  const s = BREAKWATER_SETTINGS;
  const cb = s.circuitBreaker;
  return [
    `standardPipeline: total timeout ${s.totalTimeout / 1000} s, attempt timeout ${s.attemptTimeout / 1000} s ` +
      `(to headers), ${s.retry.maxAttempts} attempts,`,
    `jittered backoff ${s.retry.backoff.initialDelay} ms-${s.retry.backoff.maxDelay / 1000} s, ` +
      `Retry-After honoured up to ${s.retry.maxRetryAfter / 1000} s, retry budget;`,
    `breaker opens at ${cb.failureRatio * 100} % failures over ${cb.window / 1000} s ` +
      `(>= ${cb.minimumThroughput} attempts), half-open after ${cb.halfOpenAfter.initial / 1000} s;`,
    `bulkhead: ${s.bulkhead.maxConcurrent} in flight, the rest queued (room for hedges: a hedge never queues);`,
    `hedging after the p${Math.round((1 - s.retry.hedge.maxExtraLoad) * 100)} of recent times to headers`,
  ];
}

/** Prometheus' view of the Breakwater run: a registry and the /metrics server that exposes it. */
export interface MetricsEndpoint {
  registry: Registry;
  url: string;
  close(): Promise<void>;
}

/** Serves /metrics on 127.0.0.1 (`port` 0: any free port). */
export async function startMetrics(port: number): Promise<MetricsEndpoint> {
  const registry = new Registry();
  const server = await serveMetrics({ registry, port, host: '127.0.0.1' });
  return { registry, url: server.url, close: () => server.close() };
}

export interface BreakwaterRun extends ClientRun {
  /** What the last scrape of /metrics reported as `breakwater_requests_total`, summed. */
  scrapedRequests: number;
}

export async function runBreakwater(
  upstream: Upstream,
  requests: readonly LogicalRequest[],
  concurrency: number,
  stream: NodeJS.WriteStream | null,
  endpoint: MetricsEndpoint,
): Promise<BreakwaterRun> {
  const agent = new Agent();
  const metrics = prometheusMetrics({ registry: endpoint.registry, dispatchers: [agent] });
  const interceptor = standardPipeline({ ...BREAKWATER_SETTINGS, metrics });
  const dispatcher = resilient(agent, interceptor);

  let circuitOpens = 0;
  let retries = 0;
  let hedgesSent = 0;
  const notRetried: Record<string, number> = {};
  const subscriptions = interceptor.stages.flatMap((stage) => {
    if (stage instanceof CircuitBreakerStage) {
      return [
        stage.onStateChange((e) => {
          if (e.to === 'open') circuitOpens++;
        }),
      ];
    }
    if (stage instanceof RetryStage) {
      return [
        stage.onRetry(() => retries++),
        stage.onHedge(() => hedgesSent++),
        stage.onGiveUp((e) => {
          notRetried[e.reason] = (notRetried[e.reason] ?? 0) + 1;
        }),
      ];
    }
    return [];
  });

  let peakQueueDepth = 0;
  let live = { inFlight: 0, queued: 0, circuit: 'closed' };
  const stopSampling = sampleEvery(SAMPLE_MS, () => {
    const keys = Object.values(interceptor.health());
    const queued = keys.reduce((sum, k) => sum + k.queued, 0);
    peakQueueDepth = Math.max(peakQueueDepth, queued);
    live = {
      inFlight: keys.reduce((sum, k) => sum + k.inFlight, 0),
      queued,
      circuit: keys[0]?.circuit ?? 'closed',
    };
  });

  const send: Send = async (req) => {
    try {
      const res = await request(upstream.url + req.path, {
        dispatcher,
        method: req.method,
        headers: headersOf(req),
        body: req.body,
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true };
      return { ok: false, failure: String(res.statusCode) };
    } catch (err) {
      if (isCircuitOpenError(err)) return { ok: false, failure: 'circuit open' };
      if (isBulkheadRejectedError(err)) return { ok: false, failure: 'bulkhead full' };
      if (isTimeoutError(err)) return { ok: false, failure: 'timeout' };
      return { ok: false, failure: describeError(err) };
    }
  };

  const progress = new Progress({
    label: 'Breakwater',
    total: requests.length,
    stream,
    status: () =>
      `in flight ${live.inFlight} · queued ${live.queued} · circuit ${live.circuit.replace('_', '-')}`,
  });
  try {
    const job = await runJob(requests, concurrency, send, (p) => progress.update(p));
    const scraped = await scrape(endpoint.url);
    return {
      job,
      retries,
      notRetried,
      circuitOpens,
      peakQueueDepth,
      hedgesSent,
      hedgesWon: scraped.hedgesWon,
      scrapedRequests: scraped.requests,
    };
  } finally {
    progress.finish();
    stopSampling();
    for (const s of subscriptions) s.dispose();
    await dispatcher.close();
  }
}

/** Reads /metrics the way Prometheus would: `breakwater_requests_total`, and the hedges that won. */
async function scrape(url: string): Promise<{ requests: number; hedgesWon: number }> {
  const scraper = new Agent();
  try {
    const res = await request(url, { dispatcher: scraper });
    const text = await res.body.text();
    let requests = 0;
    let hedgesWon = 0;
    for (const line of text.split('\n')) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (line.startsWith('breakwater_requests_total{')) requests += value;
      else if (line.startsWith('breakwater_hedges_total{') && line.includes('result="won"'))
        hedgesWon += value;
    }
    return { requests, hedgesWon };
  } finally {
    await scraper.close();
  }
}
