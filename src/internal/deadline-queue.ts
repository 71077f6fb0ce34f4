// Timeouts of one duration on one Node timer: a FIFO of deadlines, so arming one allocates
// nothing and needs no timer of its own.

import { monotonicNow } from './clock.js';
import { STALL_MS, timerLate } from './loop-stalls.js';

/** Something with a deadline in a DeadlineQueue. The links live on the item: nothing is allocated per entry. */
export interface Deadline {
  deadlineAt: number;
  deadlinePrev: Deadline | null;
  deadlineNext: Deadline | null;
  inDeadlineQueue: boolean;
  /** The item's own timer, when its duration is not the queue's (a per-request override). */
  deadlineTimer: NodeJS.Timeout | null;
  /** Called once when the deadline passes while the item is still waiting for it. */
  expire(): void;
}

/**
 * Deadlines that all lie the same number of milliseconds after they were added, so they expire in
 * the order they came: a FIFO with one Node timer for the whole queue, armed for its head.
 *
 * A timeout stage has one duration, so its requests' deadlines are of this kind. A Node timer per
 * request costs a `Timeout` object, async-hooks bookkeeping and a clearTimeout; here adding and
 * removing a deadline only relinks two pointers. The timer is unref'd, re-armed when it fires early
 * (its head left the queue before expiring), and cleared when the queue empties, so an idle
 * pipeline holds no timer.
 *
 * A timer that fires `STALL_MS` or more late means the event loop stalled (a GC pause, a CPU-bound
 * task, a starved machine). Node runs due timers before it reads sockets, so the responses that
 * arrived during the stall are still unread: expiring now would time out requests that were
 * answered. Instead the queue reports the stall (loop-stalls.ts) and lets one round of I/O run
 * first; what is still due a millisecond later expires. A deadline is not extended: the time the
 * upstream took is what it bounds.
 */
export class DeadlineQueue {
  readonly #ms: number;
  #head: Deadline | null = null;
  #tail: Deadline | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** When the armed timer is due (monotonic ms). */
  #dueAt = 0;
  /** The expiry after a stall already waited one round of I/O. */
  #deferred = false;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** The duration every deadline in this queue has. */
  get ms(): number {
    return this.#ms;
  }

  /**
   * Starts `item`'s deadline `ms` after `now`: in the queue when `ms` is the queue's duration,
   * otherwise (a per-request override) with an unref'd timer of the item's own.
   */
  start(item: Deadline, now: number, ms: number = this.#ms): void {
    if (ms === this.#ms) {
      this.add(item, now);
      return;
    }
    // Passing the item as the argument keeps the callback a shared function: no closure per request.
    item.deadlineAt = now + ms;
    item.deadlineTimer = setTimeout(expireOwn, ms, item);
    item.deadlineTimer.unref();
  }

  /** Stops `item`'s deadline, however it was started; nothing happens if it has none. */
  stop(item: Deadline): void {
    if (item.inDeadlineQueue) this.remove(item);
    if (item.deadlineTimer !== null) {
      clearTimeout(item.deadlineTimer);
      item.deadlineTimer = null;
    }
  }

  /**
   * Queues `item` to expire `ms` after `now` (monotonic ms, read by the caller). Callers pass
   * the reading taken when their dispatch step began, so items may come out of order by the
   * microseconds one synchronous step lasts; such an item expires at most that much late.
   */
  add(item: Deadline, now: number): void {
    item.deadlineAt = now + this.#ms;
    item.deadlinePrev = this.#tail;
    item.deadlineNext = null;
    item.inDeadlineQueue = true;
    if (this.#tail !== null) this.#tail.deadlineNext = item;
    else this.#head = item;
    this.#tail = item;
    if (this.#timer === null) {
      this.#deferred = false;
      this.#arm(this.#ms, now);
    }
  }

  remove(item: Deadline): void {
    if (!item.inDeadlineQueue) return;
    this.#unlink(item);
    if (this.#head === null && this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
      // The answers read during a deferral emptied the queue: the next stall defers again.
      this.#deferred = false;
    }
  }

  /** Fired by the timer: expires everything due, then re-arms for the new head. */
  expireDue(): void {
    this.#timer = null;
    const now = monotonicNow();
    const late = now - this.#dueAt;
    if (late >= STALL_MS && !this.#deferred && this.#head !== null) {
      timerLate(late, now);
      this.#deferred = true;
      // A millisecond away: the poll phase, where sockets are read, runs before it.
      this.#arm(1, now);
      return;
    }
    this.#deferred = false;
    let head = this.#head;
    while (head !== null && head.deadlineAt <= now) {
      this.#unlink(head);
      head.expire();
      head = this.#head;
    }
    if (head !== null && this.#timer === null) this.#arm(head.deadlineAt - now, now);
  }

  #arm(ms: number, now: number): void {
    // Node fires a timer no earlier than its delay rounded to a millisecond; ceil keeps the head due.
    const delay = Math.max(1, Math.ceil(ms));
    this.#dueAt = now + delay;
    this.#timer = setTimeout(fireQueue, delay, this);
    this.#timer.unref();
  }

  #unlink(item: Deadline): void {
    const prev = item.deadlinePrev;
    const next = item.deadlineNext;
    if (prev !== null) prev.deadlineNext = next;
    else this.#head = next;
    if (next !== null) next.deadlinePrev = prev;
    else this.#tail = prev;
    item.deadlinePrev = null;
    item.deadlineNext = null;
    item.inDeadlineQueue = false;
  }
}

function fireQueue(queue: DeadlineQueue): void {
  queue.expireDue();
}

function expireOwn(item: Deadline): void {
  item.deadlineTimer = null;
  const now = monotonicNow();
  const late = now - item.deadlineAt;
  if (late >= STALL_MS) {
    // As in the queue: let the sockets be read before expiring.
    timerLate(late, now);
    item.deadlineAt = Number.POSITIVE_INFINITY;
    item.deadlineTimer = setTimeout(expireOwn, 1, item);
    item.deadlineTimer.unref();
    return;
  }
  item.expire();
}
