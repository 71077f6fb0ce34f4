/**
 * A quantile of recent latencies, kept online in fixed memory: the adaptive hedge delay of one
 * key. It knows nothing of requests or clocks; the adapter records each successful attempt's time
 * to response headers, in milliseconds.
 *
 * Latencies fall into logarithmic buckets (each 5 % wider than the last, 0.1 ms to about 10 min),
 * so a quantile is read within 5 % of its true value whatever the scale. The window decays by
 * samples, not by time: every `halfLife` samples all counts are halved, so the last few thousand
 * attempts dominate and an upstream that became slower is followed within a few half-lives. The
 * quantile itself is recomputed every 16 samples, not per request.
 *
 * Written here rather than taken from a sketch library (t-digest, HDR histogram): those answer
 * more than this needs, none decays by itself, and a fixed array of counts costs one logarithm
 * and one increment per sample.
 */
export class LatencyQuantile {
  readonly #quantile: number;
  readonly #minSamples: number;
  readonly #halfLife: number;
  readonly #counts = new Float64Array(BUCKETS);
  #total = 0;
  #sinceDecay = 0;
  #sinceRead = 0;
  #cached: number | undefined;

  /**
   * @param quantile - which quantile, in (0, 1): 0.95 for the p95.
   * @param minSamples - no answer before this many samples.
   * @param halfLife - samples after which an old sample weighs half.
   */
  constructor(quantile: number, minSamples = 20, halfLife = 1_000) {
    this.#quantile = quantile;
    this.#minSamples = minSamples;
    this.#halfLife = halfLife;
  }

  /** Counts one latency, in milliseconds. */
  record(ms: number): void {
    const counts = this.#counts;
    counts[bucketOf(ms)]! += 1;
    this.#total += 1;
    if (++this.#sinceDecay >= this.#halfLife) {
      this.#sinceDecay = 0;
      for (let i = 0; i < BUCKETS; i++) counts[i]! *= 0.5;
      this.#total *= 0.5;
    }
    if (++this.#sinceRead >= 16) {
      this.#sinceRead = 0;
      this.#cached = undefined;
    }
  }

  /** The quantile in milliseconds (a bucket's upper bound), or undefined with too few samples. */
  value(): number | undefined {
    if (this.#cached !== undefined) return this.#cached;
    if (this.#total < this.#minSamples) return undefined;
    const target = this.#quantile * this.#total;
    const counts = this.#counts;
    let seen = 0;
    let i = 0;
    for (; i < BUCKETS - 1; i++) {
      seen += counts[i]!;
      if (seen >= target) break;
    }
    this.#cached = upperBound(i);
    return this.#cached;
  }
}

const SMALLEST = 0.1;
const GROWTH = 1.05;
const LOG_GROWTH = Math.log(GROWTH);
/** Enough buckets to reach past ten minutes. */
const BUCKETS = Math.ceil(Math.log(600_000 / SMALLEST) / LOG_GROWTH) + 1;

function bucketOf(ms: number): number {
  if (!(ms > SMALLEST)) return 0;
  const i = Math.floor(Math.log(ms / SMALLEST) / LOG_GROWTH);
  return i < BUCKETS ? i : BUCKETS - 1;
}

function upperBound(bucket: number): number {
  return SMALLEST * GROWTH ** (bucket + 1);
}
