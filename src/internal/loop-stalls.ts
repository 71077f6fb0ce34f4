/**
 * Whether this process's event loop stalled, and for how long: a long GC pause, a CPU-bound task,
 * a starved machine. While it is stalled nothing of ours runs, so every attempt in flight looks
 * slow at once and every timer comes due together; decisions about the upstream must not be made
 * from such a period.
 *
 * Two sources feed it. Our own deadline timers report how late they fired (free, and exact for the
 * moment they fire). For latency samples there may be no timer at all, so while adaptive limits
 * have attempts in flight Node's event-loop delay histogram runs too (a native timer, unref'd, at
 * 10 ms resolution); nobody waiting means it is off, so an idle pipeline holds no timer.
 */

import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';

/** A timer this late, or a loop delay this long, is a stall. */
export const STALL_MS = 50;
const RESOLUTION_MS = 10;
/** The stalls remembered: enough for any attempt still in flight. */
const REMEMBERED = 16;

let histogram: IntervalHistogram | null = null;
let watchers = 0;
let lastReadAt = Number.NEGATIVE_INFINITY;
// A ring of recent stalls: when each was seen (monotonic ms, at or after its end) and how long.
const seenAt = new Float64Array(REMEMBERED).fill(Number.NEGATIVE_INFINITY);
const lasted = new Float64Array(REMEMBERED);
let next = 0;

function remember(at: number, ms: number): void {
  // One stall is reported by every timer it made late, all within a moment: keep it once.
  const newest = (next + REMEMBERED - 1) % REMEMBERED;
  if (at - seenAt[newest]! < 1) {
    if (ms > lasted[newest]!) lasted[newest] = ms;
    return;
  }
  seenAt[next] = at;
  lasted[next] = ms;
  next = (next + 1) % REMEMBERED;
}

/** Someone needs stalls detected from now on (an attempt under an adaptive limit started). */
export function watchStalls(): void {
  if (watchers++ > 0) return;
  histogram ??= monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.reset();
  histogram.enable();
}

/** The matching end of `watchStalls()`. */
export function unwatchStalls(): void {
  if (--watchers > 0) return;
  histogram?.disable();
}

/** A timer of ours fired `lateMs` late at `now`. */
export function timerLate(lateMs: number, now: number): void {
  if (lateMs >= STALL_MS) remember(now, lateMs);
}

/**
 * The longest stall seen between `since` and `now` (monotonic ms), or 0. Conservative: a stall is
 * dated when it was seen, and the histogram is read only when asked, so a stall from before
 * `since` (as far back as the previous read) may be counted.
 */
export function longestStallSince(since: number, now: number): number {
  if (histogram !== null && watchers > 0 && now - lastReadAt >= RESOLUTION_MS) {
    // The histogram's max covers everything since the last read: the stall lies in (lastReadAt, now].
    const maxMs = histogram.max / 1e6;
    if (maxMs >= STALL_MS) remember(now, maxMs);
    histogram.reset();
    lastReadAt = now;
  }
  let longest = 0;
  for (let i = 0; i < REMEMBERED; i++) {
    if (seenAt[i]! >= since && lasted[i]! > longest) longest = lasted[i]!;
  }
  return longest;
}

/** Whether the loop stalled between `since` and `now`. */
export function stalledSince(since: number, now: number): boolean {
  return longestStallSince(since, now) >= STALL_MS;
}
