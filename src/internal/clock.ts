/**
 * The library's two time scales, both read from the monotonic clock.
 *
 * - Monotonic milliseconds (`performance.now()`): durations, deadlines, backoffs.
 * - Policy time: the same reading shifted by `performance.timeOrigin`, so it counts epoch
 *   milliseconds like `Date.now()` (breaker snapshots carry it across processes) but never steps
 *   back when the wall clock is adjusted. Breakers and retry budgets run on it.
 *
 * A clock read is not free (about 0.1–0.2 µs in Node 20, which calls into C++ for each), and a
 * request used to make nine. The stages now share the reading taken when a dispatch step begins
 * (`Exchange.dispatchTime`) and convert it with `policyTime()` instead of reading again.
 */
const TIME_ORIGIN = performance.timeOrigin;

/** Policy time for a monotonic reading. */
export function policyTime(monotonicMs: number): number {
  return TIME_ORIGIN + monotonicMs;
}

/** Policy time now. */
export function policyNow(): number {
  return TIME_ORIGIN + performance.now();
}
