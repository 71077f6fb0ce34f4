/**
 * The adaptive concurrency limit of one key: a gradient on latency, after Envoy's adaptive
 * concurrency filter, with drops taken as a signal of their own. It knows nothing of undici: the
 * bulkhead gate feeds it each attempt's latency to response headers, or a drop.
 *
 * - **Baseline.** The no-load latency is the median of a few attempts sent while the limit is held
 *   at `baselineConcurrency`, so the upstream has no queue of ours to add. It is measured first,
 *   then again every `baselineInterval` (±25 % jitter, so a fleet does not measure in step), so a
 *   permanently slower upstream becomes the new baseline. A window whose median is below the
 *   baseline lowers it at once.
 * - **Gradient.** Each window of samples (at least `window` ms and `minSamples` samples) gives
 *   its median latency. `gradient = baseline × (1 + tolerance) / median`, clamped to [0.5, 2];
 *   `limit = gradient × limit + √limit`. At the baseline the limit grows; as the upstream queues,
 *   the median rises and the limit settles where the queue it adds is about `tolerance` of the
 *   service time plus √limit requests of headroom.
 * - **Drops** (429, 503, a timeout or a failed connection) multiply the limit by `dropFactor` at
 *   once, at most once per round trip: drops of attempts sent before the last cut are the same
 *   congestion, already answered (TCP cuts its window once per round trip for the same reason).
 * - **Unused limits do not grow.** A window in which fewer than half the limit were in flight
 *   may shrink the limit but never grows it.
 * - **The client's own stalls are not the upstream's latency.** A window during which the event
 *   loop stalled (`stalled(since)`) is discarded: every attempt in flight looked slow at once.
 */

import { InvalidOptionError } from '../errors.js';
import { duration, integer, knownKeys, numberBetween, optionalObject, ratio } from '../internal/validate.js';

export interface AdaptiveLimitOptions {
  /**
   * The limit before the first measurement.
   * @default 20
   */
  initial?: number;
  /**
   * The limit never goes below it.
   * @default 1
   */
  min?: number;
  /**
   * The limit never goes above it.
   * @default 1000
   */
  max?: number;
  /**
   * How far above the no-load latency the median may rise before the limit shrinks, as a
   * fraction of it.
   * @default 0.2
   */
  tolerance?: number;
  /**
   * The shortest sample window, in milliseconds; a window also needs `minSamples` samples.
   * @default 250
   */
  window?: number;
  /**
   * The fewest samples that end a window.
   * @default 20
   */
  minSamples?: number;
  /**
   * What a drop multiplies the limit by.
   * @default 0.9
   */
  dropFactor?: number;
  /**
   * How often the no-load latency is measured again, in milliseconds (±25 % jitter).
   * @default 30000
   */
  baselineInterval?: number;
  /**
   * The limit held while the no-load latency is measured.
   * @default 3
   */
  baselineConcurrency?: number;
}

/** The adaptive options, resolved and checked once per stage. */
export interface AdaptiveLimitSettings {
  readonly initial: number;
  readonly min: number;
  readonly max: number;
  readonly tolerance: number;
  readonly window: number;
  readonly minSamples: number;
  readonly dropFactor: number;
  readonly baselineInterval: number;
  readonly baselineConcurrency: number;
}

/** What the limit needs from outside: randomness for the jitter and the event loop's stalls. */
export interface AdaptiveLimitEnvironment {
  /** A number in [0, 1). */
  random(): number;
  /** Whether the event loop stalled between `since` and `now` (monotonic ms). */
  stalled(since: number, now: number): boolean;
}

/** Samples that end a baseline measurement, and the longest it may take once it has a few. */
const BASELINE_SAMPLES = 16;
const BASELINE_MIN_SAMPLES = 3;
const BASELINE_MAX_MS = 2_000;
/** Room for samples in one window; a fuller window ends early. */
const WINDOW_CAPACITY = 512;

export function adaptiveLimitSettings(path: string, value: unknown): AdaptiveLimitSettings {
  const o = optionalObject(path, value) ?? {};
  knownKeys(path, o, [
    'initial',
    'min',
    'max',
    'tolerance',
    'window',
    'minSamples',
    'dropFactor',
    'baselineInterval',
    'baselineConcurrency',
  ]);
  const min = integer(`${path}.min`, o.min, 1, 1);
  const max = integer(`${path}.max`, o.max, min, Math.max(min, 1000));
  const initial = integer(`${path}.initial`, o.initial, min, Math.min(max, Math.max(min, 20)));
  if (initial > max) throw new InvalidOptionError(`${path}.initial`, `an integer <= max (${max})`, initial);
  const tolerance = numberBetween(`${path}.tolerance`, o.tolerance, 0, 10, 0.2);
  const dropFactor = ratio(`${path}.dropFactor`, o.dropFactor, 0.9);
  if (dropFactor === 0 || dropFactor === 1) {
    throw new InvalidOptionError(`${path}.dropFactor`, 'a number between 0 and 1, exclusive', dropFactor);
  }
  return {
    initial,
    min,
    max,
    tolerance,
    window: duration(`${path}.window`, o.window, 250),
    minSamples: integer(`${path}.minSamples`, o.minSamples, 1, 20),
    dropFactor,
    baselineInterval: duration(`${path}.baselineInterval`, o.baselineInterval, 30_000),
    baselineConcurrency: integer(`${path}.baselineConcurrency`, o.baselineConcurrency, min, Math.max(min, 3)),
  };
}

/** One key's limit. All times are monotonic milliseconds passed in by the caller. */
export class AdaptiveLimit {
  readonly #settings: AdaptiveLimitSettings;
  readonly #env: AdaptiveLimitEnvironment;
  /** The limit the gradient and drops move, fractional; `current` is its floor. */
  #limit: number;
  /** The no-load latency, ms; NaN until first measured. */
  #baseline = Number.NaN;
  /** While measuring the baseline: when it began (samples of attempts sent before are ignored). */
  #measuringSince = Number.NaN;
  #nextBaselineAt: number;
  readonly #samples = new Float64Array(WINDOW_CAPACITY);
  #count = 0;
  #windowStart: number;
  #windowPeak = 0;
  #lastCut = Number.NEGATIVE_INFINITY;
  #windows = 0;

  constructor(settings: AdaptiveLimitSettings, env: AdaptiveLimitEnvironment, now: number) {
    this.#settings = settings;
    this.#env = env;
    this.#limit = settings.initial;
    this.#windowStart = now;
    // Measured at the first admission.
    this.#nextBaselineAt = Number.NEGATIVE_INFINITY;
  }

  /** Attempts allowed in flight now. */
  get current(): number {
    if (this.measuring) return Math.min(Math.floor(this.#limit), this.#settings.baselineConcurrency);
    return Math.floor(this.#limit);
  }

  /** The no-load latency in ms, or NaN before it was first measured. */
  get baseline(): number {
    return this.#baseline;
  }

  /** Sample windows that moved the limit so far (for tests and diagnostics). */
  get windows(): number {
    return this.#windows;
  }

  get measuring(): boolean {
    return !Number.isNaN(this.#measuringSince);
  }

  /** An attempt was admitted; `inFlight` counts it. */
  admitted(inFlight: number, now: number): void {
    if (inFlight > this.#windowPeak) this.#windowPeak = inFlight;
    if (!this.measuring && now >= this.#nextBaselineAt) this.#startMeasuring(now);
  }

  /** An attempt admitted at `startedAt` got response headers at `now`, not a drop. */
  sample(startedAt: number, now: number): void {
    const latency = now - startedAt;
    if (this.measuring) {
      if (startedAt >= this.#measuringSince) this.#measure(latency, now);
      return;
    }
    if (this.#count < WINDOW_CAPACITY) this.#samples[this.#count++] = latency;
    const settings = this.#settings;
    if (
      (this.#count >= settings.minSamples && now - this.#windowStart >= settings.window) ||
      this.#count === WINDOW_CAPACITY
    ) {
      this.#closeWindow(now);
    }
  }

  /** An attempt admitted at `startedAt` was dropped: 429, 503, a timeout, a failed connection. */
  drop(startedAt: number, now: number): void {
    if (startedAt < this.#lastCut) return;
    this.#lastCut = now;
    const settings = this.#settings;
    this.#limit = Math.max(settings.min, this.#limit * settings.dropFactor);
  }

  #closeWindow(now: number): void {
    const median = medianOf(this.#samples, this.#count);
    const peak = this.#windowPeak;
    this.#count = 0;
    this.#windowPeak = 0;
    const since = this.#windowStart;
    this.#windowStart = now;
    // No gradient without a no-load latency: the first measurement was spoiled by a stall and
    // is being taken again.
    if (Number.isNaN(this.#baseline) || this.#env.stalled(since, now)) return;
    this.#windows++;
    if (median < this.#baseline) this.#baseline = median;
    const settings = this.#settings;
    const limit = this.#limit;
    const gradient = clamp((this.#baseline * (1 + settings.tolerance)) / Math.max(median, 1e-3), 0.5, 2);
    let next = gradient * limit + Math.sqrt(limit);
    // A key that does not use half its limit has told us nothing about a higher one.
    if (peak < limit / 2 && next > limit) next = limit;
    this.#limit = clamp(next, settings.min, settings.max);
  }

  #startMeasuring(now: number): void {
    this.#measuringSince = now;
    this.#count = 0;
  }

  #measure(latency: number, now: number): void {
    if (this.#count < WINDOW_CAPACITY) this.#samples[this.#count++] = latency;
    const enough =
      this.#count >= BASELINE_SAMPLES ||
      (this.#count >= BASELINE_MIN_SAMPLES && now - this.#measuringSince >= BASELINE_MAX_MS);
    if (!enough) return;
    const stalled = this.#env.stalled(this.#measuringSince, now);
    if (!stalled) this.#baseline = medianOf(this.#samples, this.#count);
    this.#measuringSince = Number.NaN;
    this.#count = 0;
    this.#windowPeak = 0;
    this.#windowStart = now;
    // After a stall, or before any baseline, measure again soon rather than in an interval.
    const interval = this.#settings.baselineInterval;
    this.#nextBaselineAt =
      stalled || Number.isNaN(this.#baseline) ? now : now + interval * (0.75 + 0.5 * this.#env.random());
  }
}

function clamp(value: number, low: number, high: number): number {
  return value < low ? low : value > high ? high : value;
}

/** The median of the first `count` values (sorts them in place). */
function medianOf(values: Float64Array, count: number): number {
  const sorted = values.subarray(0, count).sort();
  const middle = count >> 1;
  return count % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
