/**
 * Delays between attempts. Retries use exponential backoff with decorrelated jitter (spec rule 8),
 * so that clients failing together do not retry together; the circuit breaker's half-open wait
 * grows exponentially without jitter (it is one timer per key, not a crowd).
 */

import { decorrelatedJitterGenerator, type IExponentialBackoffOptions } from 'cockatiel';

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
 * Exponential backoff with decorrelated jitter: Polly's `DecorrelatedJitterBackoffV2`, computed by
 * cockatiel's `decorrelatedJitterGenerator`.
 *
 * Why not cockatiel's `ExponentialBackoff` object itself: each of its steps spreads the options
 * into a new object and allocates a closure. Here the options live once per stage and a step is
 * one small object, made only when a retry is actually scheduled.
 */
export class DecorrelatedBackoff {
  readonly #jitter: Jitter;

  /**
   * @param options - validated by the retry stage: `0 < initialDelay <= maxDelay`.
   * @param random - a source of numbers in `[0, 1)`, for tests. **Default:** `Math.random`
   */
  constructor(options: BackoffOptions, random: () => number = Math.random) {
    this.#jitter = {
      options: {
        generator: decorrelatedJitterGenerator,
        initialDelay: options.initialDelay,
        maxDelay: options.maxDelay,
        exponent: 2,
      },
      random,
    };
  }

  /** The delay before the first retry. */
  first(): BackoffStep {
    return decorrelatedStep(this.#jitter, undefined);
  }
}

/** What every step of one {@link DecorrelatedBackoff} shares. */
interface Jitter {
  readonly options: IExponentialBackoffOptions<GeneratorState>;
  readonly random: () => number;
}

/** cockatiel's generator state: the attempt number and the formula's previous value. */
type GeneratorState = [number, number];

function decorrelatedStep(jitter: Jitter, state: GeneratorState | undefined): BackoffStep {
  const [delay, next] = draw(jitter, state);
  return new DecorrelatedStep(jitter, next, delay);
}

/**
 * One draw from cockatiel's generator. It reads `Math.random` itself, so an injected source (the
 * tests pin the jitter this way) is lent to it for the duration of the call.
 */
function draw(jitter: Jitter, state: GeneratorState | undefined): [number, GeneratorState] {
  if (jitter.random === Math.random) {
    return decorrelatedJitterGenerator(state, jitter.options) as [number, GeneratorState];
  }
  const random = Math.random;
  Math.random = jitter.random;
  try {
    return decorrelatedJitterGenerator(state, jitter.options) as [number, GeneratorState];
  } finally {
    Math.random = random;
  }
}

class DecorrelatedStep implements BackoffStep {
  readonly delay: number;
  readonly #jitter: Jitter;
  readonly #state: GeneratorState;

  constructor(jitter: Jitter, state: GeneratorState, delay: number) {
    this.#jitter = jitter;
    this.#state = state;
    this.delay = delay;
  }

  next(): BackoffStep {
    return decorrelatedStep(this.#jitter, this.#state);
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
