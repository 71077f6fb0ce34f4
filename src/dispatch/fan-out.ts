/*
 * Several observers as one: `pipeline(stages, { metrics: [prometheus, otel] })`. The engine keeps a
 * single observer per request whatever the count; with one observer the pipeline passes that
 * observer itself, so the common case pays nothing for the possibility of more.
 */
import type { CircuitState, TimeoutScope } from '../errors.js';
import type {
  OriginObserver,
  PipelineObserver,
  RequestOutcome,
  RetryReason,
  StateSource,
  StatusClass,
} from './observer.js';

/** One observer for `observers`: undefined for none, the observer itself for one. */
export function fanOut(observers: readonly PipelineObserver[]): PipelineObserver | undefined {
  if (observers.length === 0) return undefined;
  if (observers.length === 1) return observers[0];
  return new FanOut(observers);
}

class FanOut implements PipelineObserver {
  readonly #observers: readonly PipelineObserver[];
  // The engine already asks once per origin (and remembers the last); this keeps one handle per
  // label value so the per-observer handles are looked up once.
  readonly #byOrigin = new Map<string, FanOutOrigin>();

  constructor(observers: readonly PipelineObserver[]) {
    this.#observers = [...observers];
  }

  origin(origin: string): OriginObserver {
    let handle = this.#byOrigin.get(origin);
    if (handle === undefined) {
      handle = new FanOutOrigin(this.#observers.map((o) => o.origin(origin)));
      // Origins are bounded by each observer; this map only mirrors them, so bound it the same way.
      if (this.#byOrigin.size >= 1024) this.#byOrigin.clear();
      this.#byOrigin.set(origin, handle);
    }
    return handle;
  }

  attach(source: StateSource): void {
    for (const o of this.#observers) o.attach(source);
  }

  storeError(operation: string, reason: 'timeout' | 'error' | 'unavailable'): void {
    for (const o of this.#observers) o.storeError?.(operation, reason);
  }
}

class FanOutOrigin implements OriginObserver {
  readonly #all: readonly OriginObserver[];

  constructor(all: readonly OriginObserver[]) {
    this.#all = all;
  }

  requestFinished(
    method: string,
    outcome: RequestOutcome,
    statusClass: StatusClass,
    seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void {
    for (const o of this.#all) o.requestFinished(method, outcome, statusClass, seconds, statusCode, error);
  }

  attemptFinished(
    method: string,
    statusClass: StatusClass,
    seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void {
    for (const o of this.#all) o.attemptFinished(method, statusClass, seconds, statusCode, error);
  }

  retryScheduled(reason: RetryReason): void {
    for (const o of this.#all) o.retryScheduled(reason);
  }

  retryBudgetExhausted(): void {
    for (const o of this.#all) o.retryBudgetExhausted();
  }

  queueWaited(seconds: number): void {
    for (const o of this.#all) o.queueWaited(seconds);
  }

  bulkheadRejected(): void {
    for (const o of this.#all) o.bulkheadRejected();
  }

  timedOut(scope: TimeoutScope): void {
    for (const o of this.#all) o.timedOut(scope);
  }

  circuitTransition(to: CircuitState): void {
    for (const o of this.#all) o.circuitTransition(to);
  }

  circuitRejected(): void {
    for (const o of this.#all) o.circuitRejected();
  }

  hedgeFinished(result: 'won' | 'lost'): void {
    for (const o of this.#all) o.hedgeFinished(result);
  }
}
