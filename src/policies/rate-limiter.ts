/**
 * One key's rate limit, apart from undici and from timers: a token bucket with a FIFO of waiters.
 * The adapter asks `request()` when a request arrives, calls `drain()` when the head of the queue
 * is due (it owns the one timer), and reports what the upstream said with `pause()`. `now` is
 * passed in, so the bucket runs on a fake clock in tests.
 *
 * Why a token bucket with a queue rather than GCRA's reservations: a waiter that leaves (its caller
 * aborted, its deadline passed) simply leaves the queue, and the token it would have taken goes to
 * the next one. With reservations its slot is either lost or, given back, lets two requests share
 * one slot. The two admit the same traffic otherwise: `burst` at once, then one per interval.
 */

import { LinkedQueue, type QueueNode } from '../internal/linked-queue.js';

/** Something waiting for a token. `admit()` is called when it gets one. */
export interface RateWaiter extends QueueNode {
  admit(): void;
}

/** What `request()` decided. */
export type RateAdmission = 'admitted' | 'queued' | 'refused';

/** Rounding in the refill must not keep a due waiter waiting for a millionth of a token. */
const EPSILON = 1e-9;
/** A timer that fires this little before a waiter's turn (clocks round differently) still admits it. */
const EARLY_MS = 0.5;

export class RateLimiter {
  /** Milliseconds per token. */
  readonly interval: number;
  readonly burst: number;
  /** Tokens in the bucket at `#at`; never above `burst`. */
  #tokens: number;
  /** When `#tokens` was counted; in the future while paused (nothing refills before it). */
  #at = Number.NEGATIVE_INFINITY;
  readonly #queue = new LinkedQueue<RateWaiter>();
  /** When a token was last taken. */
  #lastTaken = Number.NEGATIVE_INFINITY;

  constructor(perSecond: number, burst: number) {
    this.interval = 1000 / perSecond;
    this.burst = burst;
    this.#tokens = burst;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /**
   * A token now (`'admitted'`), or a place in the queue when the wait is at most `maxWait` ms
   * (`'queued'`: `drain()` admits it), or `'refused'`. FIFO holds: nobody takes a token while
   * others wait for one.
   */
  request(now: number, maxWait: number, waiter: RateWaiter): RateAdmission {
    this.#refill(now);
    if (this.#queue.length === 0 && now >= this.#at && this.#tokens >= 1 - EPSILON) {
      this.#tokens -= 1;
      this.#lastTaken = now;
      return 'admitted';
    }
    if (this.#waitFor(this.#queue.length + 1, now) > maxWait) return 'refused';
    this.#queue.push(waiter);
    return 'queued';
  }

  /** Takes a token now if one is free and nobody waits for it; never queues. */
  tryTake(now: number): boolean {
    this.#refill(now);
    if (this.#queue.length === 0 && now >= this.#at && this.#tokens >= 1 - EPSILON) {
      this.#tokens -= 1;
      this.#lastTaken = now;
      return true;
    }
    return false;
  }

  /** Milliseconds a request arriving now would wait for its token (0: none). */
  waitNow(now: number): number {
    this.#refill(now);
    return this.#waitFor(this.#queue.length + 1, now);
  }

  /** Milliseconds until the head of the queue is due (0 when nobody waits). */
  headWait(now: number): number {
    if (this.#queue.length === 0) return 0;
    this.#refill(now);
    return this.#headWait(now);
  }

  /** Removes a waiter that no longer wants its token (its caller aborted or its deadline passed). */
  leave(waiter: RateWaiter): void {
    this.#queue.remove(waiter);
  }

  /**
   * Admits the waiter whose token has come. Returns the milliseconds until the next one is due, or
   * -1 when nobody waits.
   *
   * Waiters leave about one interval apart, even when the timer fired late and several tokens
   * accrued meanwhile: a stalled event loop must not turn into a burst on the wire. What a stall
   * delays is sent later, never in a bunch.
   */
  drain(now: number): number {
    this.#refill(now);
    const queue = this.#queue;
    if (queue.length > 0 && this.#headWait(now) <= EARLY_MS) {
      this.#tokens -= 1;
      // Its slot: one interval after the last when the timer was a little late, so lateness
      // costs no throughput; now when the loop stalled, so nothing catches up in a bunch.
      const slot = this.#lastTaken + this.interval;
      this.#lastTaken = now - slot > this.interval / 2 ? now : slot;
      // Out of the queue before it is admitted: admitting may start a request at once.
      queue.shift()!.admit();
    }
    return queue.length === 0 ? -1 : this.#headWait(now);
  }

  /**
   * The upstream asked for a pause of `ms` (Retry-After, or a quota that resets then): nothing is
   * admitted before `now + ms`, and the bucket is empty then, so requests resume at the steady
   * rate rather than in a burst. A shorter pause than one already in force changes nothing.
   */
  pause(now: number, ms: number): void {
    this.#refill(now);
    const until = now + ms;
    if (until <= this.#at) return;
    this.#at = until;
    this.#tokens = 0;
  }

  /** Empties the bucket without pausing: the upstream said no request is left in its quota now. */
  exhaust(now: number): void {
    this.#refill(now);
    if (now >= this.#at) this.#tokens = 0;
  }

  /** Milliseconds left of a pause the upstream asked for (0: none). */
  pausedFor(now: number): number {
    return this.#at > now ? this.#at - now : 0;
  }

  /** True when dropping this limiter loses nothing: nobody waits, the bucket is full, no pause. */
  isIdle(now: number): boolean {
    this.#refill(now);
    return this.#queue.length === 0 && now >= this.#at && this.#tokens >= this.burst - EPSILON;
  }

  /** The head's wait: its token, and one interval since the last token was taken. */
  #headWait(now: number): number {
    const token = this.#waitFor(1, now);
    const spacing = this.#lastTaken + this.interval - now;
    return Math.max(token, spacing);
  }

  /**
   * The wait for the `n`th token from now: the rest of a pause, then the tokens missing at one
   * per interval. Tokens are taken as they come while anyone waits, so the cap of `burst` never
   * applies to them.
   */
  #waitFor(n: number, now: number): number {
    const paused = this.#at > now ? this.#at - now : 0;
    const missing = n - this.#tokens;
    return paused + (missing > EPSILON ? missing * this.interval : 0);
  }

  #refill(now: number): void {
    const at = this.#at;
    if (now <= at) return;
    if (at !== Number.NEGATIVE_INFINITY) {
      const tokens = this.#tokens + (now - at) / this.interval;
      this.#tokens = Math.min(tokens, this.burst);
    }
    this.#at = now;
  }
}
