// A record of how late a process's event loop ran, one entry per 100 ms (the largest delay Node's
// event-loop delay histogram saw in it), kept for the last minute. The soak keeps one in each of
// its two processes, so that a breaker that opens can be explained: did the client stall, or was
// the upstream (on the same cores) not answering?

import { monitorEventLoopDelay } from 'node:perf_hooks';

const INTERVAL_MS = 100;
const KEEP = 600;

export interface LoopDelayEntry {
  /** Epoch ms at the end of the interval (comparable across processes). */
  at: number;
  /** The largest loop delay in the interval, ms. */
  maxMs: number;
}

export class LoopDelayLog {
  readonly entries: LoopDelayEntry[] = [];
  readonly #histogram = monitorEventLoopDelay({ resolution: 10 });
  readonly #timer: NodeJS.Timeout;

  constructor() {
    this.#histogram.enable();
    this.#timer = setInterval(() => {
      this.entries.push({ at: performance.timeOrigin + performance.now(), maxMs: this.#histogram.max / 1e6 });
      if (this.entries.length > KEEP) this.entries.shift();
      this.#histogram.reset();
    }, INTERVAL_MS);
    this.#timer.unref();
  }

  /** The largest delay logged between `from` and `to` (epoch ms). */
  maxBetween(from: number, to: number): number {
    let max = 0;
    for (const e of this.entries)
      if (e.at >= from && e.at <= to + INTERVAL_MS && e.maxMs > max) max = e.maxMs;
    return max;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#histogram.disable();
  }
}
