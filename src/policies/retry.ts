// The retry stage: its options and defaults, per-key retry budgets and its events. The attempt
// policy that applies them runs in dispatch/exchange.ts.

import type { RetryReason } from '../dispatch/observer.js';
import { InvalidOptionError } from '../errors.js';
import { IDEMPOTENT_METHODS } from '../http/idempotency.js';
import { type Disposable, Event } from '../internal/event.js';
import { KeyedMap } from '../internal/keyed-map.js';
import {
  duration,
  integer,
  integerList,
  knownKeys,
  optionalObject,
  ratio,
  stringList,
} from '../internal/validate.js';
import { DecorrelatedBackoff } from './backoff.js';
import { type HedgeEvent, type HedgeOptions, HedgePolicy } from './hedge.js';
import { RetryBudget, type RetryBudgetOptions } from './retry-budget.js';

export interface RetryOptions {
  /**
   * Attempts in all, the first included.
   * @default 3
   */
  maxAttempts?: number;
  /**
   * Exponential backoff with decorrelated jitter between attempts, in milliseconds.
   * @default { initialDelay: 100, maxDelay: 10_000 }
   */
  backoff?: { initialDelay?: number; maxDelay?: number };
  /**
   * Response statuses that are retried.
   * @default [408, 429, 500, 502, 503, 504]
   */
  statuses?: number[];
  /**
   * Methods retried without an opt-in: the idempotent ones.
   * @default ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE', 'QUERY']
   */
  methods?: string[];
  /**
   * The longest Retry-After honoured, in milliseconds; a longer one ends the retries and the
   * response goes to the caller.
   * @default 30_000
   */
  maxRetryAfter?: number;
  /**
   * Per-key retry budget: retries may not exceed `ratio` × requests over `window` ms, plus
   * `minPerSecond`. `false` turns it off.
   * @default { ratio: 0.2, minPerSecond: 10, window: 10_000 }
   */
  budget?: { ratio?: number; minPerSecond?: number; window?: number } | false;
  /**
   * Keys whose budgets are kept; the least recently used idle one is dropped beyond it.
   * @default 1000
   */
  maxKeys?: number;
  /**
   * Hedged requests: when an attempt has no response headers after a delay, send another and take
   * whichever answers first. `true` takes the defaults. Hedges count in `maxAttempts` and draw from
   * the same budget; only requests that may be retried are hedged.
   * @default off
   */
  hedge?: HedgeOptions | boolean;
}

/** Emitted when a retry is scheduled. */
export interface RetryEvent {
  key: string;
  /** The attempt that failed (1 for the first). */
  attempt: number;
  /** Milliseconds until the next attempt. */
  delay: number;
  reason: RetryReason;
  statusCode?: number;
  error?: Error;
}

/** Why a retryable outcome was not retried. */
export type GiveUpReason =
  | 'attempts'
  | 'budget'
  | 'retry-after'
  | 'deadline'
  | 'not-replayable'
  | 'not-idempotent';

/** Emitted when a retryable outcome goes to the caller instead of being retried. */
export interface GiveUpEvent {
  key: string;
  attempts: number;
  reason: GiveUpReason;
  statusCode?: number;
  error?: Error;
}

export const DEFAULT_RETRY_STATUSES: readonly number[] = [408, 429, 500, 502, 503, 504];

/** A retry stage: its settings, its per-key budgets and its events. */
export class RetryStage {
  readonly kind = 'retry';
  readonly maxAttempts: number;
  readonly backoff: DecorrelatedBackoff;
  /** Indexed by status code: a lookup per response without hashing. */
  readonly retryableStatus: readonly boolean[];
  readonly statuses: readonly number[];
  readonly methods: ReadonlySet<string>;
  readonly maxRetryAfter: number;
  readonly budgets: KeyedMap<RetryBudget> | null;
  /** Hedging settings and per-key clocks; null when the stage does not hedge. */
  readonly hedge: HedgePolicy | null;
  readonly #onRetry = new Event<RetryEvent>();
  readonly #onHedge = new Event<HedgeEvent>();
  readonly #onGiveUp = new Event<GiveUpEvent>();

  constructor(options: RetryOptions = {}) {
    const o = optionalObject('retry', options);
    knownKeys('retry', o, [
      'maxAttempts',
      'backoff',
      'statuses',
      'methods',
      'maxRetryAfter',
      'budget',
      'maxKeys',
      'hedge',
    ]);
    this.maxAttempts = integer('retry.maxAttempts', o?.maxAttempts, 1, 3);
    const backoff = optionalObject('retry.backoff', o?.backoff);
    knownKeys('retry.backoff', backoff, ['initialDelay', 'maxDelay']);
    const initialDelay = duration('retry.backoff.initialDelay', backoff?.initialDelay, 100);
    const maxDelay = duration('retry.backoff.maxDelay', backoff?.maxDelay, 10_000);
    if (maxDelay < initialDelay) {
      throw new InvalidOptionError(
        'retry.backoff.maxDelay',
        `>= retry.backoff.initialDelay (${initialDelay})`,
        maxDelay,
      );
    }
    this.backoff = new DecorrelatedBackoff({ initialDelay, maxDelay });
    this.statuses = integerList('retry.statuses', o?.statuses, 100, 599, DEFAULT_RETRY_STATUSES);
    const retryable: boolean[] = new Array(600).fill(false);
    for (const status of this.statuses) retryable[status] = true;
    this.retryableStatus = retryable;
    this.methods = new Set(
      stringList('retry.methods', o?.methods, IDEMPOTENT_METHODS).map((m) => m.toUpperCase()),
    );
    this.maxRetryAfter = duration('retry.maxRetryAfter', o?.maxRetryAfter, 30_000, true);
    const maxKeys = integer('retry.maxKeys', o?.maxKeys, 1, 1000);
    this.budgets = o?.budget === false ? null : createBudgets(o?.budget, maxKeys);
    this.hedge = o?.hedge === undefined || o.hedge === false ? null : new HedgePolicy(o.hedge, maxKeys);
  }

  /** Subscribes to hedges sent, e.g. to log them. */
  onHedge(listener: (event: HedgeEvent) => void): Disposable {
    return this.#onHedge.subscribe(listener);
  }

  /** @internal */
  get hedgeEvents(): Event<HedgeEvent> {
    return this.#onHedge;
  }

  /** Subscribes to scheduled retries, e.g. to log them. */
  onRetry(listener: (event: RetryEvent) => void): Disposable {
    return this.#onRetry.subscribe(listener);
  }

  /** Subscribes to retryable outcomes that were not retried (attempts, budget, Retry-After, deadline). */
  onGiveUp(listener: (event: GiveUpEvent) => void): Disposable {
    return this.#onGiveUp.subscribe(listener);
  }

  /** @internal */
  get retryEvents(): Event<RetryEvent> {
    return this.#onRetry;
  }

  /** @internal */
  get giveUpEvents(): Event<GiveUpEvent> {
    return this.#onGiveUp;
  }
}

function createBudgets(value: unknown, maxKeys: number): KeyedMap<RetryBudget> {
  const b = optionalObject('retry.budget', value);
  knownKeys('retry.budget', b, ['ratio', 'minPerSecond', 'window']);
  const options: RetryBudgetOptions = {
    ratio: ratio('retry.budget.ratio', b?.ratio, 0.2),
    minPerSecond: nonNegative('retry.budget.minPerSecond', b?.minPerSecond, 10),
    window: duration('retry.budget.window', b?.window, 10_000),
  };
  return new KeyedMap(
    maxKeys,
    () => new RetryBudget(options),
    // A budget holds no request: evicting one under pressure only forgets its recent counts.
    () => true,
  );
}

function nonNegative(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError(path, 'a number >= 0', value);
  }
  return value;
}

/**
 * Retries what failed in a way a repeat can fix — a retryable status, a transient network error,
 * an attempt timeout — only when repeating is safe: an idempotent method (or an opt-in), and a
 * body that can be sent again.
 */
export function retry(options?: RetryOptions): RetryStage {
  return new RetryStage(options);
}
