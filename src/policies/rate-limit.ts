// The rate limit stage: its options and the per-key state (the token bucket, and what the dispatch
// adapter keeps beside it for a fleet store). The adapter is dispatch/rate-limit-gate.ts; the
// bucket itself is rate-limiter.ts.

import { InvalidOptionError } from '../errors.js';
import { monotonicNow } from '../internal/clock.js';
import { KeyedMap } from '../internal/keyed-map.js';
import { LinkedQueue, type QueueNode } from '../internal/linked-queue.js';
import { duration, knownKeys, optionalObject } from '../internal/validate.js';
import { RateLimiter } from './rate-limiter.js';

export interface RateLimitOptions {
  /** Requests let through per second, per key, in the long run. */
  perSecond: number;
  /**
   * Requests let through at once after a quiet spell (the bucket's size): any one second sees
   * at most `perSecond + burst`.
   * @default a tenth of `perSecond`, at least 1
   */
  burst?: number;
  /**
   * The longest a request waits for its turn, in milliseconds; one that would wait longer fails
   * at once with `RateLimitedError`. `0` never waits.
   * @default 1_000
   */
  maxWait?: number;
  /**
   * Pause a key when a response says its quota is spent (429 or 503 with Retry-After,
   * RateLimit-Remaining / X-RateLimit-Remaining of 0 with their Reset), so the next requests wait
   * instead of meeting another refusal.
   * @default true
   */
  fromResponses?: boolean;
  /**
   * The longest pause a response can ask for, in milliseconds; a longer one is cut to it.
   * @default 30_000
   */
  maxPause?: number;
  /**
   * Keys whose state is kept; the least recently used idle one is dropped beyond it.
   * @default 1000
   */
  maxKeys?: number;
}

/** A waiter whose token a fleet store granted for later: `dueAt` in monotonic ms. */
export interface ScheduledWaiter extends QueueNode {
  dueAt: number;
  /** In `KeyLimit.scheduled`. */
  scheduled: boolean;
  admit(): void;
}

/** One key's limiter and the one timer that admits its waiters (the dispatch adapter's). */
export class KeyLimit {
  readonly limiter: RateLimiter;
  /** Armed while anyone waits, for when the head of the queue is due. */
  timer: NodeJS.Timeout | null = null;
  /** Tokens a fleet store granted beyond those asked for, used without a round trip. */
  leased = 0;
  /** Monotonic ms after which leased tokens are stale and dropped. */
  leaseUntil = 0;
  /** Waiters that arrived in this tick, to ask a fleet store for together; null when none. */
  batch: unknown[] | null = null;
  /** Waiters a fleet store granted a token later, in the order of their tokens (the adapter's). */
  readonly scheduled = new LinkedQueue<ScheduledWaiter>();
  /** Armed while `scheduled` holds anyone, for when its head is due. */
  scheduleTimer: NodeJS.Timeout | null = null;
  /** Milliseconds every scheduled token is moved back by, after the event loop stalled. */
  scheduleShift = 0;

  constructor(limiter: RateLimiter) {
    this.limiter = limiter;
  }

  /** True when nothing waits here for a token: the key's state may be dropped. */
  isIdle(now: number): boolean {
    return this.scheduled.length === 0 && this.batch === null && this.limiter.isIdle(now);
  }
}

/** A rate limit stage: per key, a token bucket that requests wait at, in order, up to `maxWait`. */
export class RateLimitStage {
  readonly kind = 'rateLimit';
  readonly perSecond: number;
  readonly burst: number;
  readonly maxWait: number;
  readonly fromResponses: boolean;
  readonly maxPause: number;
  readonly limits: KeyedMap<KeyLimit>;

  constructor(options: RateLimitOptions) {
    const o = optionalObject('rateLimit', options);
    if (o === undefined) throw new TypeError('rateLimit(options) needs { perSecond }');
    knownKeys('rateLimit', o, ['perSecond', 'burst', 'maxWait', 'fromResponses', 'maxPause', 'maxKeys']);
    const perSecond = o.perSecond;
    if (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0 || perSecond > 1e6) {
      throw new InvalidOptionError('rateLimit.perSecond', 'a number > 0 and <= 1000000', perSecond);
    }
    this.perSecond = perSecond;
    const burst = o.burst ?? Math.max(1, Math.floor(perSecond / 10));
    if (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 1) {
      throw new InvalidOptionError('rateLimit.burst', 'an integer >= 1', burst);
    }
    this.burst = burst;
    this.maxWait = duration('rateLimit.maxWait', o.maxWait, 1_000, true);
    if (o.fromResponses !== undefined && typeof o.fromResponses !== 'boolean') {
      throw new InvalidOptionError('rateLimit.fromResponses', 'a boolean', o.fromResponses);
    }
    this.fromResponses = o.fromResponses ?? true;
    this.maxPause = duration('rateLimit.maxPause', o.maxPause, 30_000, true);
    const maxKeys = o.maxKeys ?? 1000;
    if (typeof maxKeys !== 'number' || !Number.isInteger(maxKeys) || maxKeys < 1) {
      throw new InvalidOptionError('rateLimit.maxKeys', 'an integer >= 1', maxKeys);
    }
    this.limits = new KeyedMap(
      maxKeys,
      () => new KeyLimit(new RateLimiter(this.perSecond, this.burst)),
      (limit) => limit.isIdle(monotonicNow()),
    );
  }
}

/**
 * Limits the rate of requests (or attempts, after a retry stage) per key: `burst` at once, then
 * `perSecond`, each waiting its turn up to `maxWait`. It also pauses a key when a response says
 * the upstream's quota is spent. Placed after the retry stage it counts every attempt, as the
 * upstream's quota does.
 */
export function rateLimit(options: RateLimitOptions): RateLimitStage {
  return new RateLimitStage(options);
}
