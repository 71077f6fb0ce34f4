// `pipeline()`: composes stages into one undici interceptor, with `health()`, `close()` and
// `destroy()`.

import type { Dispatcher } from 'undici';
import { fanOut } from './dispatch/fan-out.js';
import type { KeySnapshot, PipelineObserver } from './dispatch/observer.js';
import { compilePlan, isStage, type Stage } from './dispatch/plan.js';
import { type KeyFunction, Runtime } from './dispatch/runtime.js';
import type { DispatchFn, DispatchOptions } from './dispatch/types.js';
import type { CircuitState } from './errors.js';
import { InvalidOptionError } from './errors.js';
import type { CircuitBroadcast, FleetStore } from './fleet/store.js';
import { StoreLink } from './fleet/store-link.js';
import { policyNow } from './internal/clock.js';
import type { Disposable } from './internal/event.js';
import { knownKeys, optionalFunction, optionalObject } from './internal/validate.js';
import { sanitizeOrigin } from './metrics/labels.js';
import { BulkheadStage } from './policies/bulkhead.js';
import { CircuitBreakerStage } from './policies/circuit-breaker.js';
import { RetryStage } from './policies/retry.js';

export type { Stage };

export interface PipelineOptions {
  /**
   * Receives the pipeline's events and reads its state at scrape time, e.g. `prometheusMetrics()`;
   * an array for several side by side (`[prometheusMetrics(…), openTelemetryMetrics()]`).
   */
  metrics?: PipelineObserver | readonly PipelineObserver[];
  /**
   * The isolation key of a request: breakers, bulkheads and budgets are kept per key.
   * @default the request's origin, `scheme://host[:port]` as undici passes it
   */
  key?: (opts: DispatchOptions) => string;
  /**
   * A store shared by a fleet of processes, e.g. `redisStore()` from `breakwater/redis`: the
   * pipeline's rate limits and circuit breakers then hold across every process that uses it.
   * When it fails or is slower than its timeout, the pipeline uses its local state.
   * @default none: every limit and breaker is this process's own
   */
  store?: FleetStore;
}

/** One key's live state, as `health()` reports it. */
export interface KeyHealth {
  /** Absent without a circuit breaker stage. */
  circuit?: CircuitState;
  inFlight: number;
  queued: number;
  /** The adaptive bulkhead's limit now (the smallest, if several); absent without one. */
  concurrencyLimit?: number;
  /** Absent without a retry budget. */
  retryBudgetLeft?: number;
  /** Milliseconds a request waits for headers before a hedge goes; absent without hedging or before an adaptive delay is known. */
  hedgeDelayMs?: number;
}

/** What `pipeline()` returns: an undici interceptor with a little more. */
export interface ResilienceInterceptor {
  (dispatch: Dispatcher['dispatch']): Dispatcher['dispatch'];
  /** The stages, outermost first. */
  readonly stages: readonly Stage[];
  /** Per key: breaker state, attempts in flight and queued, retries the budget allows now. */
  health(): Record<string, KeyHealth>;
  /** Refuses new requests and resolves once those in progress settled; then no timer of ours is left. */
  close(): Promise<void>;
  /** Refuses new requests and aborts the ones in progress (queued, in backoff, in flight). */
  destroy(error?: Error): void;
}

const kRuntime = Symbol('breakwater.runtime');

/**
 * Composes stages into one undici interceptor, for `dispatcher.compose(...)` or `resilient()`.
 * Stages are listed outermost first, like cockatiel's `wrap` and Polly's builder; a timeout
 * after a retry stage bounds each attempt, a timeout before it bounds the whole exchange.
 */
export function pipeline(stages: readonly Stage[], options: PipelineOptions = {}): ResilienceInterceptor {
  if (!Array.isArray(stages)) throw new InvalidOptionError('stages', 'an array of stages', stages);
  stages.forEach((stage, i) => {
    if (!isStage(stage))
      throw new InvalidOptionError(
        `stages[${i}]`,
        'a stage made by bulkhead(), timeout(), retry(), circuitBreaker(), rateLimit() or gate()',
        stage,
      );
  });
  const o = optionalObject('pipeline', options);
  knownKeys('pipeline', o, ['metrics', 'key', 'store']);
  const key = optionalFunction<KeyFunction>('pipeline.key', o?.key);
  const observers = checkObservers(o?.metrics);
  const metrics = fanOut(observers);
  const store = o?.store as FleetStore | undefined;
  if (
    store !== undefined &&
    (store === null || typeof store !== 'object' || typeof store.acquireRate !== 'function')
  ) {
    throw new InvalidOptionError(
      'pipeline.store',
      "a fleet store such as redisStore() from 'breakwater/redis'",
      store,
    );
  }
  const frozen = Object.freeze([...stages]);
  const link = store === undefined ? null : new StoreLink(store, metrics);
  const plan = compilePlan(frozen, link);
  const runtimes = new Set<Runtime>();
  const subscriptions: Disposable[] = [];

  const interceptor = ((dispatch: Dispatcher['dispatch']) => {
    const runtime = new Runtime(dispatch as DispatchFn, plan, key, metrics, (r) => runtimes.delete(r));
    runtimes.add(runtime);
    const dispatchFn = runtime.dispatch as Dispatcher['dispatch'] & { [kRuntime]?: Runtime };
    dispatchFn[kRuntime] = runtime;
    return dispatchFn;
  }) as ResilienceInterceptor;

  Object.defineProperties(interceptor, {
    stages: { value: frozen, enumerable: true },
    health: { value: () => health(frozen) },
    close: {
      value: async () => {
        await Promise.all([...runtimes].map((r) => r.close()));
        for (const subscription of subscriptions.splice(0)) subscription.dispose();
      },
    },
    destroy: {
      value: (error?: Error) => {
        for (const runtime of runtimes) runtime.destroy(error);
        for (const subscription of subscriptions.splice(0)) subscription.dispose();
      },
    },
  });
  if (link !== null && frozen.some((s) => s instanceof CircuitBreakerStage)) {
    subscriptions.push(link.store.subscribeCircuit((message) => applyBroadcast(frozen, link, message)));
  }
  for (const metrics of observers) {
    metrics.attach({ snapshot: () => snapshot(frozen, key !== undefined) });
    // Transitions are counted from the stage's own events, so the ones made by hand (isolate,
    // reset, restore) are counted as well as those a request caused.
    for (const stage of frozen) {
      if (stage instanceof CircuitBreakerStage && !alreadyCounting(stage, metrics)) {
        const subscription = stage.onStateChange(({ key: k, to }) =>
          metrics.origin(originLabel(k, key !== undefined)).circuitTransition(to),
        );
        subscriptions.push({
          dispose: () => {
            subscription.dispose();
            countedTransitions.get(stage)?.delete(metrics);
          },
        });
      }
    }
  }
  return interceptor;
}

/** Another process opened or closed a circuit: this pipeline's breakers for that key follow. */
function applyBroadcast(stages: readonly Stage[], link: StoreLink, message: CircuitBroadcast): void {
  if (message.sender === link.id) return;
  const retryAfterMs = Number(message.retryAfterMs);
  const reopenCount = Number(message.reopenCount);
  if (message.state === 'open' && !(Number.isFinite(retryAfterMs) && Number.isInteger(reopenCount))) return;
  for (const stage of stages) {
    if (!(stage instanceof CircuitBreakerStage)) continue;
    const breaker = stage.breakers.get(message.key);
    if (message.state === 'open')
      breaker.openFromFleet(policyNow(), Math.max(0, retryAfterMs), Math.max(0, reopenCount));
    else breaker.closeFromFleet();
  }
}

/** The observers given as `metrics`: none, one, or an array of them. */
function checkObservers(value: unknown): PipelineObserver[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  list.forEach((item: Partial<PipelineObserver> | null | undefined, i) => {
    if (typeof item?.origin !== 'function' || typeof item.attach !== 'function') {
      throw new InvalidOptionError(
        Array.isArray(value) ? `pipeline.metrics[${i}]` : 'pipeline.metrics',
        'a metrics object such as prometheusMetrics({ registry }) or openTelemetryMetrics()',
        item,
      );
    }
  });
  // The same observer twice would count every event twice.
  return [...new Set(list as PipelineObserver[])];
}

/** The runtime behind a dispatch function made by a pipeline interceptor (for `resilient()`). */
export function runtimeOf(dispatch: unknown): Runtime | undefined {
  return (dispatch as { [kRuntime]?: Runtime } | null)?.[kRuntime];
}

function collectKeys(stages: readonly Stage[]): Map<string, KeyHealth> {
  const keys = new Map<string, KeyHealth>();
  const entry = (key: string): KeyHealth => {
    let h = keys.get(key);
    if (h === undefined) {
      h = { inFlight: 0, queued: 0 };
      keys.set(key, h);
    }
    return h;
  };
  const now = policyNow();
  for (const stage of stages) {
    if (stage instanceof BulkheadStage) {
      for (const [key, state] of stage.states.entries()) {
        const h = entry(key);
        h.inFlight += state.inFlight;
        h.queued += state.queued;
        if (state.adaptive !== null) {
          h.concurrencyLimit = Math.min(h.concurrencyLimit ?? Number.POSITIVE_INFINITY, state.limit);
        }
      }
    } else if (stage instanceof CircuitBreakerStage) {
      for (const [key, breaker] of stage.breakers.entries()) {
        const h = entry(key);
        h.circuit = worse(h.circuit, breaker.state);
      }
    } else if (stage instanceof RetryStage) {
      if (stage.budgets !== null) {
        for (const [key, budget] of stage.budgets.entries()) {
          const h = entry(key);
          const left = budget.remaining(now);
          h.retryBudgetLeft = h.retryBudgetLeft === undefined ? left : Math.min(h.retryBudgetLeft, left);
        }
      }
      const hedge = stage.hedge;
      if (hedge !== null) {
        for (const [key, clock] of hedge.clocks.entries()) {
          const ms = hedge.delayOf(clock);
          if (ms !== undefined) entry(key).hedgeDelayMs = ms;
        }
      }
    }
  }
  return keys;
}

const SEVERITY: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

function worse(a: CircuitState | undefined, b: CircuitState): CircuitState {
  return a === undefined || SEVERITY[b] > SEVERITY[a] ? b : a;
}

function health(stages: readonly Stage[]): Record<string, KeyHealth> {
  return Object.fromEntries(collectKeys(stages));
}

function snapshot(stages: readonly Stage[], customKey: boolean): KeySnapshot[] {
  const out: KeySnapshot[] = [];
  for (const [key, { hedgeDelayMs, ...h }] of collectKeys(stages)) {
    const snapshot: KeySnapshot = { key, origin: originLabel(key, customKey), ...h };
    if (hedgeDelayMs !== undefined) snapshot.hedgeDelay = hedgeDelayMs / 1000;
    out.push(snapshot);
  }
  return out;
}

/** The origin label of a key. With a custom key function the key is not an origin: say so rather than leak it. */
function originLabel(key: string, customKey: boolean): string {
  return customKey ? 'other' : sanitizeOrigin(key);
}

/** Breaker stages whose transitions a metrics object already counts (a stage shared by two pipelines). */
const countedTransitions = new WeakMap<CircuitBreakerStage, WeakSet<PipelineObserver>>();

function alreadyCounting(stage: CircuitBreakerStage, metrics: PipelineObserver): boolean {
  let observers = countedTransitions.get(stage);
  if (observers === undefined) {
    observers = new WeakSet();
    countedTransitions.set(stage, observers);
  }
  if (observers.has(metrics)) return true;
  observers.add(metrics);
  return false;
}
