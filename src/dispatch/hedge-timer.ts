// The timer that sends a request's next hedge, and the refusal a gate declines a hedge with.

import type { Deadline, DeadlineQueue } from '../internal/deadline-queue.js';

/** What a gate refuses a hedge with when it would have to wait or probe: the hedge is just not sent. */
export const HEDGE_DECLINED: Error = new Error('breakwater: a hedge was not sent (no free slot, or a probe)');

/** Where a hedge timer reports: the request it belongs to. */
export interface HedgeOwner {
  hedgeDue(): void;
}

/**
 * The timer of one request's next hedge, in its key's queue of hedge deadlines. A node of its own
 * (the request's own links hold its total deadline), made only for a request that may be hedged.
 */
export class HedgeTimer implements Deadline {
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  /** The queue it was started in, to stop it there. */
  queue: DeadlineQueue | null = null;
  readonly #owner: HedgeOwner;

  constructor(owner: HedgeOwner) {
    this.#owner = owner;
  }

  /** Starts it `ms` after `now` in `queue`, stopping it first if it still runs. */
  start(queue: DeadlineQueue, now: number, ms: number): void {
    this.stop();
    this.queue = queue;
    queue.start(this, now, ms);
  }

  stop(): void {
    this.queue?.stop(this);
    this.queue = null;
  }

  expire(): void {
    this.queue = null;
    this.#owner.hedgeDue();
  }
}
