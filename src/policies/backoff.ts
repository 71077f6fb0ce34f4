/**
 * Delays between attempts. Retries use exponential backoff with decorrelated jitter (spec rule 8),
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

/**
 * Scales the formula's output so that median delays fall near `initialDelay × 1, 2, 4…` rather
 * than `× 1.4, 2.8, 5.6…`.
 */
const RP_SCALING_FACTOR = 1 / 1.4;
/** Smooths the first delays of the formula. */
const P_FACTOR = 4;

/**
 * Exponential backoff with decorrelated jitter: Polly's `DecorrelatedJitterBackoffV2`, the same
 * formula as cockatiel's `decorrelatedJitterGenerator` (the tests check the two agree number for
 * number).
 *
 * Why not cockatiel's `ExponentialBackoff` itself: its generator calls `Math.random()` directly,
 * so tests could not pin the jitter, and each of its steps allocates a closure and an options
 * spread. This class holds the options once; a step is one small object, made only when a retry
 * is actually scheduled, so one instance serves every request of a stage.
 */
export class DecorrelatedBackoff {
  readonly #jitter: Jitter;

  /**
   * @param options - validated by the retry stage: `0 < initialDelay <= maxDelay`.
   * @param random - a source of numbers in `[0, 1)`. **Default:** `Math.random`
   */
  constructor(options: BackoffOptions, random: () => number = Math.random) {
    this.#jitter = { initialDelay: options.initialDelay, maxDelay: options.maxDelay, random };
  }

  /** The delay before the first retry. */
  first(): BackoffStep {
    return decorrelatedStep(this.#jitter, 0, 0);
  }
}

/** What every step of one {@link DecorrelatedBackoff} shares. */
interface Jitter {
  readonly initialDelay: number;
  readonly maxDelay: number;
  readonly random: () => number;
}

/** The step for retry number `attempt` (0-based), given the formula's value at the previous one. */
function decorrelatedStep(jitter: Jitter, attempt: number, previous: number): BackoffStep {
  const t = attempt + jitter.random();
  const next = 2 ** t * Math.tanh(Math.sqrt(P_FACTOR * t));
  // Past 2^1024 the formula overflows; from there on the cap is the answer.
  const grown = Number.isFinite(next) ? Math.max(0, next - previous) : Number.POSITIVE_INFINITY;
  const delay = Math.min(grown * RP_SCALING_FACTOR * jitter.initialDelay, jitter.maxDelay);
  return new DecorrelatedStep(jitter, attempt, next, delay);
}

class DecorrelatedStep implements BackoffStep {
  readonly delay: number;
  readonly #jitter: Jitter;
  readonly #attempt: number;
  readonly #formulaValue: number;

  constructor(jitter: Jitter, attempt: number, formulaValue: number, delay: number) {
    this.#jitter = jitter;
    this.#attempt = attempt;
    this.#formulaValue = formulaValue;
    this.delay = delay;
  }

  next(): BackoffStep {
    return decorrelatedStep(this.#jitter, this.#attempt + 1, this.#formulaValue);
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
