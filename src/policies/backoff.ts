/**
 * Delays between attempts. Retries use exponential backoff with decorrelated jitter,
 * so that clients failing together do not retry together; the circuit breaker's half-open wait
 * grows exponentially without jitter (it is one timer per key, not a crowd).
 */

/** Options of {@link DecorrelatedBackoff}, in milliseconds. */
export interface BackoffOptions {
  /** The median first delay; later ones grow about twice per attempt. */
  initialDelay: number;
  /** No delay exceeds this. */
  maxDelay: number;
}

/** One delay in a sequence. Immutable: `next()` returns a new step and leaves this one as it was. */
export interface BackoffStep {
  /** Milliseconds to wait before this attempt, within `[0, maxDelay]`. */
  readonly delay: number;
  /** The step after this one. Each call draws fresh jitter. */
  next(): BackoffStep;
}

// The constants of Polly's "decorrelated jitter V2" formula (also cockatiel's): the steepness of
// the curve's start, and the factor that makes the median first delay equal `initialDelay`.
const P_FACTOR = 4;
const RP_SCALING = 1 / 1.4;

/**
 * Exponential backoff with decorrelated jitter, Polly's `DecorrelatedJitterBackoffV2`: each delay
 * is the increment of `2^t · tanh(√(4t))` over the previous one, with `t` the attempt number plus
 * a random fraction, scaled so the median first delay is `initialDelay`. The same numbers as
 * cockatiel's `decorrelatedJitterGenerator` for the same random draws.
 *
 * Written here rather than called from cockatiel because its generator reads `Math.random` itself,
 * and a random source taken as a parameter is what lets tests pin the jitter without swapping a
 * global; and because each step of cockatiel's `ExponentialBackoff` spreads the options into a
 * new object and allocates a closure, where a step here is one small object made only when a
 * retry is scheduled.
 */
export class DecorrelatedBackoff {
  readonly #options: BackoffOptions;
  readonly #random: () => number;

  /**
   * @param options - validated by the retry stage: `0 < initialDelay <= maxDelay`.
   * @param random - a source of numbers in `[0, 1)`, for tests. **Default:** `Math.random`
   */
  constructor(options: BackoffOptions, random: () => number = Math.random) {
    this.#options = options;
    this.#random = random;
  }

  /** The delay before the first retry. */
  first(): BackoffStep {
    return this.step(0, 0);
  }

  /** @internal The step after `attempt` steps whose formula value was `previous`. */
  step(attempt: number, previous: number): BackoffStep {
    const t = attempt + this.#random();
    const value = 2 ** t * Math.tanh(Math.sqrt(P_FACTOR * t));
    const increment = Number.isFinite(value) ? Math.max(0, value - previous) : Number.POSITIVE_INFINITY;
    const { initialDelay, maxDelay } = this.#options;
    return new DecorrelatedStep(
      this,
      attempt + 1,
      value,
      Math.min(increment * RP_SCALING * initialDelay, maxDelay),
    );
  }
}

class DecorrelatedStep implements BackoffStep {
  readonly delay: number;
  readonly #backoff: DecorrelatedBackoff;
  readonly #attempt: number;
  readonly #value: number;

  constructor(backoff: DecorrelatedBackoff, attempt: number, value: number, delay: number) {
    this.#backoff = backoff;
    this.#attempt = attempt;
    this.#value = value;
    this.delay = delay;
  }

  next(): BackoffStep {
    return this.#backoff.step(this.#attempt, this.#value);
  }
}

/**
 * The circuit breaker's wait before a probe: `initial` after the first opening, doubled for each
 * consecutive re-opening (a probe failed again), capped at `max`. No jitter: there is one timer
 * per key, and an operator reading "next probe in 20 s" should see exactly that.
 */
export class ExponentialDelay {
  readonly #initial: number;
  readonly #max: number;

  /** @param initial - the first wait, ms. @param max - the cap, ms; `>= initial`. */
  constructor(initial: number, max: number) {
    this.#initial = initial;
    this.#max = max;
  }

  /**
   * The wait after the `consecutiveOpens`-th opening in a row (1 for the first):
   * `min(max, initial × 2^(n-1))`. Values below 1 are read as 1.
   */
  delay(consecutiveOpens: number): number {
    const doublings = consecutiveOpens > 1 ? consecutiveOpens - 1 : 0;
    return Math.min(this.#max, this.#initial * 2 ** doublings);
  }
}
