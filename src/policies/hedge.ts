// The retry stage's hedging settings, and each key's hedge clock (adaptive delay, deadline queue).

import { InvalidOptionError } from '../errors.js';
import { DeadlineQueue } from '../internal/deadline-queue.js';
import { KeyedMap } from '../internal/keyed-map.js';
import { duration, integer, knownKeys, optionalObject } from '../internal/validate.js';
import { LatencyQuantile } from './latency-quantile.js';

/** Hedged requests, as part of the retry stage: `retry({ hedge: { … } })`. */
export interface HedgeOptions {
  /**
   * How long an attempt may go without response headers before another is sent: milliseconds, or
   * `'adaptive'`, the key's p(1 − maxExtraLoad) of recent successful attempts' time to headers.
   * @default 'adaptive'
   */
  delay?: 'adaptive' | number;
  /**
   * The share of extra requests hedging may cost: with `'adaptive'`, hedges go out after the
   * p(1 − maxExtraLoad) latency, so about this share of requests is hedged.
   * @default 0.05
   */
  maxExtraLoad?: number;
  /**
   * Hedges in flight at once besides the first attempt.
   * @default 1
   */
  maxHedges?: number;
}

/** Emitted when a hedge is sent. */
export interface HedgeEvent {
  key: string;
  /** The hedge's attempt number (2 for the first hedge). */
  attempt: number;
  /** Milliseconds the request had waited for headers when the hedge went. */
  delay: number;
}

/** The smallest adaptive delay: below it a hedge would race its own first attempt. */
export const HEDGE_FLOOR_MS = 1;
/** Successful attempts a key must have seen before its adaptive delay is trusted. */
const MIN_SAMPLES = 20;

/**
 * One key's hedging clock: its latency quantile (adaptive delay only) and the deadline queue its
 * requests' hedge timers wait in. A queue holds deadlines of one duration; when the key's delay
 * moves by more than a tenth, later timers go to a fresh queue of the new duration.
 */
export class HedgeClock {
  readonly latencies: LatencyQuantile | null;
  #queue: DeadlineQueue | null = null;

  constructor(latencies: LatencyQuantile | null) {
    this.latencies = latencies;
  }

  /** The queue for a delay of `ms`. */
  queueFor(ms: number): DeadlineQueue {
    const queue = this.#queue;
    if (queue !== null && Math.abs(queue.ms - ms) <= queue.ms / 10) return queue;
    this.#queue = new DeadlineQueue(ms);
    return this.#queue;
  }
}

/** A retry stage's hedging settings, validated, and its per-key clocks. */
export class HedgePolicy {
  readonly delay: 'adaptive' | number;
  readonly maxExtraLoad: number;
  readonly maxHedges: number;
  readonly clocks: KeyedMap<HedgeClock>;

  constructor(value: unknown, maxKeys: number) {
    const o = value === true ? {} : optionalObject('retry.hedge', value);
    if (o === undefined) throw new InvalidOptionError('retry.hedge', 'true or an object', value);
    knownKeys('retry.hedge', o, ['delay', 'maxExtraLoad', 'maxHedges']);
    this.delay =
      o.delay === undefined || o.delay === 'adaptive' ? 'adaptive' : duration('retry.hedge.delay', o.delay);
    const load = o.maxExtraLoad ?? 0.05;
    if (typeof load !== 'number' || !(load > 0 && load <= 0.5)) {
      throw new InvalidOptionError('retry.hedge.maxExtraLoad', 'a number > 0 and <= 0.5', load);
    }
    this.maxExtraLoad = load;
    this.maxHedges = integer('retry.hedge.maxHedges', o.maxHedges, 1, 1);
    const quantile = 1 - load;
    const adaptive = this.delay === 'adaptive';
    this.clocks = new KeyedMap(
      maxKeys,
      () => new HedgeClock(adaptive ? new LatencyQuantile(quantile, MIN_SAMPLES) : null),
      () => true,
    );
  }

  /** The hedge delay for `clock` in ms now, or undefined while an adaptive one has too few samples. */
  delayOf(clock: HedgeClock): number | undefined {
    if (this.delay !== 'adaptive') return this.delay;
    const ms = clock.latencies!.value();
    return ms === undefined ? undefined : Math.max(ms, HEDGE_FLOOR_MS);
  }
}
