import type { CircuitState, TimeoutScope } from '../errors.js';

/**
 * What the pipeline reports as it works. The metrics module implements it; policy code only ever
 * calls it, so no stage knows about prom-client. Every method is called on the hot path, so an
 * implementation resolves labels once per origin (in `origin()`) and keeps the children.
 */
export interface PipelineObserver {
  /** The handle for one origin label value (already sanitised: scheme://host:port). Called once per request; cache it. */
  origin(origin: string): OriginObserver;
  /** Gives the observer scrape-time access to the live state of one pipeline. May be called several times (one pipeline each). */
  attach(source: StateSource): void;
  /** A fleet store call failed, was late, or the store was unavailable: the pipeline used its local state. */
  storeError?(operation: string, reason: 'timeout' | 'error' | 'unavailable'): void;
}

/** How a logical request ended, as the `outcome` label of `requests_total`. */
export type RequestOutcome =
  | 'success'
  | 'failure'
  | 'bulkhead_rejected'
  | 'circuit_open'
  | 'rate_limited'
  | 'timeout'
  | 'aborted';

/** Why a retry was scheduled, as the `reason` label of `retries_total`. */
export type RetryReason = 'status' | 'network' | 'timeout';

/**
 * `status_class` label: `1xx`…`5xx` for a response, else the kind of error that ended it.
 */
export type StatusClass =
  | '1xx'
  | '2xx'
  | '3xx'
  | '4xx'
  | '5xx'
  | 'timeout'
  | 'network'
  | 'bulkhead_rejected'
  | 'circuit_open'
  | 'rate_limited'
  | 'aborted'
  | 'error';

export interface OriginObserver {
  /**
   * A logical request settled (what the caller saw): duration includes queueing and retries.
   * The pipeline also passes `statusCode`, the answer's status (0 when it ended with an error), and
   * `error`, the error it ended with (null when it got an answer).
   */
  requestFinished(
    method: string,
    outcome: RequestOutcome,
    statusClass: StatusClass,
    seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void;
  /**
   * One attempt reached response headers or failed; `seconds` runs to headers (or to the failure).
   * The pipeline also passes `statusCode` (0 when it failed) and `error` (null when it got headers).
   */
  attemptFinished(
    method: string,
    statusClass: StatusClass,
    seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void;
  retryScheduled(reason: RetryReason): void;
  retryBudgetExhausted(): void;
  queueWaited(seconds: number): void;
  bulkheadRejected(): void;
  timedOut(scope: TimeoutScope): void;
  circuitTransition(to: CircuitState): void;
  circuitRejected(): void;
  /** A hedge settled: `won` when its response was the answer, `lost` when another's was (or none). */
  hedgeFinished(result: 'won' | 'lost'): void;
}

/** A point-in-time view of one isolation key, read at scrape time. */
export interface KeySnapshot {
  key: string;
  /** The origin label of the requests that use this key. */
  origin: string;
  queued: number;
  inFlight: number;
  /** The adaptive bulkhead's limit now; absent without one. */
  concurrencyLimit?: number;
  /** Absent when the pipeline has no circuit breaker. */
  circuit?: CircuitState;
  /** Retries the budget would allow right now; absent without a budget. */
  retryBudgetLeft?: number;
  /** The hedge delay now, in seconds; absent without hedging or before an adaptive one is known. */
  hedgeDelay?: number;
}

export interface StateSource {
  snapshot(): KeySnapshot[];
}
