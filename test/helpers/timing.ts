/** What {@link elapsed} returns: exactly one of `value` or `error` is meaningful. */
export interface Elapsed<T> {
  /** The resolved value, when `fn` fulfilled. */
  value?: T;
  /** The rejection reason, when `fn` rejected (or threw). */
  error?: unknown;
  /** Milliseconds from the call to settlement, measured with `performance.now()`. */
  ms: number;
}

/**
 * Runs `fn` and measures how long it takes to settle. Never rejects: a rejection is returned as
 * `error`, so a test can assert both the outcome and the time in one place.
 */
export async function elapsed<T>(fn: () => Promise<T>): Promise<Elapsed<T>> {
  const started = performance.now();
  try {
    const value = await fn();
    return { value, ms: performance.now() - started };
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
}
