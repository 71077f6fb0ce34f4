/**
 * The library's two time scales, both read from the monotonic clock.
 *
 * - Monotonic milliseconds (`monotonicNow()`, on `performance.now()`'s scale): durations,
 *   deadlines, backoffs.
 * - Policy time: the same reading shifted by `performance.timeOrigin`, so it counts epoch
 *   milliseconds like `Date.now()` (breaker snapshots carry it across processes) but never steps
 *   back when the wall clock is adjusted. Breakers and retry budgets run on it.
 *
 * A clock read is not free. The gates a passage goes through share the reading it took when it
 * started (`Passage.time`, set again at the response headers) and convert it with `policyTime()`
 * instead of reading again.
 */
const TIME_ORIGIN = performance.timeOrigin;

// `performance.now()` costs more than the clock behind it: the global `performance` is a lazy
// getter, and `now()` checks its receiver's brand before it reads the clock. `process.hrtime()`
// reads the same monotonic clock (libuv's uv_hrtime) for a fraction of that (docs/benchmarks.md
// has the counts), so one offset keeps our readings on performance.now()'s scale.
// It is looked up on every read, not kept, so that fake timers (sinon, jest), which replace it,
// move our clock along with their timers.
function hrtimeMs(): number {
  const t = process.hrtime();
  return t[0] * 1e3 + t[1] / 1e6;
}

/**
 * hrtime minus performance.now(), from the closest of a few paired readings: a pause between the
 * two reads of one pair (a busy machine loading many modules) would otherwise skew every reading
 * by its length.
 */
function measureOffset(): number {
  let best = Number.POSITIVE_INFINITY;
  let offset = 0;
  for (let i = 0; i < 5; i++) {
    const before = performance.now();
    const hr = hrtimeMs();
    const after = performance.now();
    if (after - before < best) {
      best = after - before;
      offset = hr - (before + after) / 2;
    }
  }
  return offset;
}

const HRTIME_ORIGIN = measureOffset();

/** Monotonic milliseconds, as `performance.now()` would read them. */
export function monotonicNow(): number {
  return hrtimeMs() - HRTIME_ORIGIN;
}

/** Policy time for a monotonic reading. */
export function policyTime(monotonicMs: number): number {
  return TIME_ORIGIN + monotonicMs;
}

/** Policy time now. */
export function policyNow(): number {
  return TIME_ORIGIN + monotonicNow();
}
