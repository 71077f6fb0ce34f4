/**
 * A retry budget for one key, as Finagle and Envoy have them: retries may not
 * exceed a share of the requests seen over a sliding window, plus a small floor so that a
 * low-traffic client can still retry. `maxAttempts` bounds one request; only a budget bounds the
 * load a whole fleet of clients adds when an upstream is already failing — without it, an outage
 * triples the traffic hitting the upstream exactly when it can least take it.
 */

/** Options of a {@link RetryBudget}. */
export interface RetryBudgetOptions {
  /** Retries allowed per request in the window, `0..1` (0.2: one retry per five requests). */
  ratio: number;
  /** Retries allowed per second regardless of traffic. */
  minPerSecond: number;
  /** The sliding window, in milliseconds. */
  window: number;
}

/**
 * The window moves in this many steps: a request counts for between 9/10 and 10/10 of `window`.
 * Finer buckets buy precision nobody needs at the cost of more work when time jumps.
 */
const BUCKETS = 10;

/**
 * Absorbs floating-point error in `ratio × requests`: 0.29 × 100 is 28.999999999999996 in
 * binary, and its floor must still be 29.
 */
const EPSILON = 1e-9;

/**
 * Counts requests and withdrawn retries in a ring of time buckets; no timers — time is passed in,
 * so one clock reading of the caller serves every check, and tests use a fake clock. Every call is
 * O(1) amortised (advancing the ring clears at most {@link BUCKETS} slots, however long the gap)
 * and allocates nothing.
 */
export class RetryBudget {
  readonly #ratio: number;
  /** `minPerSecond × window / 1000`: the retries the floor grants over one window. */
  readonly #floor: number;
  readonly #bucketWidth: number;
  readonly #requests = new Float64Array(BUCKETS);
  readonly #retries = new Float64Array(BUCKETS);
  /** Totals over the ring, kept in step with it so a check never sums the buckets. */
  #requestTotal = 0;
  #retryTotal = 0;
  /** Absolute index (`floor(now / bucketWidth)`) of the newest bucket. */
  #head = Number.NEGATIVE_INFINITY;

  /** @param options - validated by the retry stage: `0 <= ratio <= 1`, `minPerSecond >= 0`, `window > 0`. */
  constructor(options: RetryBudgetOptions) {
    this.#ratio = options.ratio;
    this.#floor = (options.minPerSecond * options.window) / 1_000;
    this.#bucketWidth = options.window / BUCKETS;
  }

  /** Counts one logical request (not its retries): each one earns `ratio` of a retry. */
  recordRequest(now: number): void {
    this.#requests[this.#advance(now)]! += 1;
    this.#requestTotal += 1;
  }

  /** Takes one retry from the budget if one is left; `false` means the retry must not happen. */
  tryWithdraw(now: number): boolean {
    const slot = this.#advance(now);
    if (this.#allowed() - this.#retryTotal < 1) return false;
    this.#retries[slot]! += 1;
    this.#retryTotal += 1;
    return true;
  }

  /** Gives back a retry just taken that was not sent after all (a hedge no gate would let go). */
  refund(now: number): void {
    const slot = this.#advance(now);
    if (this.#retries[slot]! < 1) return;
    this.#retries[slot]! -= 1;
    this.#retryTotal -= 1;
  }

  /** Retries that `tryWithdraw` would grant right now. */
  remaining(now: number): number {
    this.#advance(now);
    return Math.max(0, this.#allowed() - this.#retryTotal);
  }

  /** True when nothing happened over the window: the state is back to new and may be dropped. */
  isIdle(now: number): boolean {
    this.#advance(now);
    return this.#requestTotal === 0 && this.#retryTotal === 0;
  }

  /** `floor(ratio × requests in window + minPerSecond × window / 1000)`. */
  #allowed(): number {
    return Math.floor(this.#ratio * this.#requestTotal + this.#floor + EPSILON);
  }

  /**
   * Moves the ring forward to `now`, emptying the buckets that fell out of the window, and returns
   * the slot of the current bucket. A clock that steps back (wall-clock adjustments) counts into
   * the newest bucket rather than rewriting the past.
   */
  #advance(now: number): number {
    const index = Math.floor(now / this.#bucketWidth);
    const head = this.#head;
    if (index > head) {
      const expired = Math.min(index - head, BUCKETS);
      for (let i = 1; i <= expired; i++) {
        const slot = slotOf(index - expired + i);
        this.#requestTotal -= this.#requests[slot]!;
        this.#retryTotal -= this.#retries[slot]!;
        this.#requests[slot] = 0;
        this.#retries[slot] = 0;
      }
      this.#head = index;
    }
    return slotOf(this.#head);
  }
}

/** Position of an absolute bucket index in the ring, for negative indexes too. */
function slotOf(index: number): number {
  const slot = index % BUCKETS;
  return slot < 0 ? slot + BUCKETS : slot;
}
