/**
 * The fan-out job both clients run: N logical requests (GETs and some POSTs), at most
 * `concurrency` at a time — the "gather with a semaphore" every hand-written script does.
 */
import { mulberry32 } from './profiles.js';

export interface LogicalRequest {
  index: number;
  method: 'GET' | 'POST';
  path: string;
  /** Sent as `x-request-id`, the same on every attempt: the upstream counts executions by it. */
  id: string;
  body?: string;
}

/** How one logical request ended, as the job's caller saw it. */
export interface SendResult {
  ok: boolean;
  /** Why it failed: a status (`503`), `connection reset`, `timeout`, `circuit open`, … */
  failure?: string;
}

export type Send = (request: LogicalRequest) => Promise<SendResult>;

export interface JobResult {
  succeeded: number;
  failed: number;
  /** Every logical request's latency in ms, failures included, in completion order. */
  latencies: number[];
  /** Failures by method and kind, e.g. `POST 503`. */
  failures: Record<string, number>;
  wallMs: number;
}

export interface JobProgress {
  settled: number;
  succeeded: number;
  failed: number;
}

/** The same list of requests for the same seed: about one in five is a POST. */
export function buildWorkload(count: number, seed: number): LogicalRequest[] {
  // A stream of its own, so the workload does not shift the upstream's fault sequence.
  const random = mulberry32(seed ^ 0x5bd1e995);
  const requests: LogicalRequest[] = [];
  for (let index = 0; index < count; index++) {
    const id = `req-${seed}-${index}`;
    if (random() < 0.2) {
      requests.push({
        index,
        method: 'POST',
        path: '/orders',
        id,
        body: JSON.stringify({ order: index, qty: 1 }),
      });
    } else {
      requests.push({ index, method: 'GET', path: `/items/${index}`, id });
    }
  }
  return requests;
}

/** The headers of every attempt: the request id (the upstream counts executions by it), and a type for a body. */
export function headersOf(req: LogicalRequest): Record<string, string> {
  return req.body === undefined
    ? { 'x-request-id': req.id }
    : { 'x-request-id': req.id, 'content-type': 'application/json' };
}

/** Runs `send` over every request with at most `concurrency` in progress. */
export async function runJob(
  requests: readonly LogicalRequest[],
  concurrency: number,
  send: Send,
  onProgress: (progress: JobProgress) => void,
): Promise<JobResult> {
  const semaphore = new Semaphore(concurrency);
  const result: JobResult = {
    succeeded: 0,
    failed: 0,
    latencies: [],
    failures: {},
    wallMs: 0,
  };
  const started = performance.now();
  await Promise.all(
    requests.map(async (request) => {
      await semaphore.acquire();
      const t0 = performance.now();
      let outcome: SendResult;
      try {
        outcome = await send(request);
      } catch (err) {
        outcome = { ok: false, failure: describeError(err) };
      } finally {
        semaphore.release();
      }
      result.latencies.push(performance.now() - t0);
      if (outcome.ok) result.succeeded++;
      else {
        result.failed++;
        const kind = `${request.method} ${outcome.failure ?? 'unknown'}`;
        result.failures[kind] = (result.failures[kind] ?? 0) + 1;
      }
      onProgress({
        settled: result.succeeded + result.failed,
        succeeded: result.succeeded,
        failed: result.failed,
      });
    }),
  );
  result.wallMs = performance.now() - started;
  return result;
}

/** A short name for an error a client threw: what the table's failure breakdown shows. */
export function describeError(err: unknown): string {
  const names: string[] = [];
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    names.push(e.name, (e as { code?: string }).code ?? '');
  }
  if (names.includes('TimeoutError') || names.includes('UND_ERR_HEADERS_TIMEOUT')) return 'timeout';
  if (names.includes('ECONNRESET') || names.includes('UND_ERR_SOCKET')) return 'connection reset';
  if (names.includes('ECONNREFUSED')) return 'connection refused';
  if (names.includes('AbortError')) return 'aborted';
  const first = err instanceof Error ? ((err as { code?: string }).code ?? err.name) : String(err);
  return first;
}

/** The counting semaphore of the hand-written script: FIFO, no timeout, no limit on waiters. */
class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    this.#free = size;
  }

  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#free++;
    else next();
  }
}

/** What one client's run produced, before the upstream's counts are added. */
export interface ClientRun {
  job: JobResult;
  /** Retries the client scheduled. */
  retries: number;
  /** Retryable outcomes that went to the caller instead, by reason (`attempts`, `budget`, `not-idempotent`, …). */
  notRetried: Record<string, number>;
  /** Times a circuit opened (0 without a breaker). */
  circuitOpens: number;
  /** The most requests seen waiting on the client side at once, sampled every 20 ms. */
  peakQueueDepth: number;
  /** Hedged attempts sent, and those whose response was the answer (0 without hedging). */
  hedgesSent: number;
  hedgesWon: number;
}

export const SAMPLE_MS = 20;

/** Calls `sample` every `ms` (on an unref'd timer) until the returned function is called. */
export function sampleEvery(ms: number, sample: () => void): () => void {
  const timer = setInterval(sample, ms);
  timer.unref();
  return () => clearInterval(timer);
}
