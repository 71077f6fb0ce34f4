// The bulkhead stage: its options and the per-key accounting of slots and waiters. The dispatch
// adapters are dispatch/bulkhead-gate.ts and, for an adaptive limit, dispatch/adaptive-bulkhead-gate.ts.

import { InvalidOptionError } from '../errors.js';
import { monotonicNow } from '../internal/clock.js';
import { KeyedMap } from '../internal/keyed-map.js';
import { LinkedQueue, type QueueNode } from '../internal/linked-queue.js';
import { stalledSince } from '../internal/loop-stalls.js';
import { integer, knownKeys, optionalObject } from '../internal/validate.js';
import {
  AdaptiveLimit,
  type AdaptiveLimitEnvironment,
  type AdaptiveLimitOptions,
  type AdaptiveLimitSettings,
  adaptiveLimitSettings,
} from './adaptive-limit.js';

export interface BulkheadOptions {
  /**
   * Attempts allowed in flight at once, per key; `'adaptive'` finds the number from the
   * upstream's latency and drops (see `adaptive`).
   */
  maxConcurrent: number | 'adaptive';
  /** Attempts allowed to wait for a slot, per key; beyond it they are rejected at once. */
  maxQueue: number;
  /** The adaptive limit's parameters; only with `maxConcurrent: 'adaptive'`. */
  adaptive?: AdaptiveLimitOptions;
  /**
   * Keys whose state is kept; the least recently used idle key is dropped beyond it.
   * @default 1000
   */
  maxKeys?: number;
}

/** Something waiting for a slot. `admit()` is called when it gets one. */
export interface BulkheadWaiter extends QueueNode {
  admit(): void;
}

/**
 * The accounting of one key's bulkhead: slots in use and a FIFO of waiters. It knows nothing of
 * undici; the dispatch adapter acquires on dispatch and releases when the attempt's response ends.
 *
 * cockatiel's bulkhead would fit the counting, but it keeps an aborted queued call until that call
 * reaches the front of the queue; here a waiter leaves the queue the moment it is removed.
 */
export class BulkheadState {
  inFlight = 0;
  readonly #queue = new LinkedQueue<BulkheadWaiter>();
  /** The limit now: the stage's, or a copy of the adaptive limit's, taken when it moves. */
  #limit: number;
  readonly #maxQueue: number;
  #draining = false;
  /** The key's adaptive limit, or null for a static one. */
  readonly adaptive: AdaptiveLimit | null;

  constructor(maxConcurrent: number, maxQueue: number, adaptive: AdaptiveLimit | null = null) {
    this.#limit = adaptive === null ? maxConcurrent : adaptive.current;
    this.#maxQueue = maxQueue;
    this.adaptive = adaptive;
  }

  /** Attempts allowed in flight now. */
  get limit(): number {
    return this.#limit;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Takes a slot at once (`'acquired'`), or queues the waiter (`'queued'`), or refuses
   * (`'rejected'`). FIFO holds because nobody acquires directly while others wait.
   */
  acquire(waiter: BulkheadWaiter): 'acquired' | 'queued' | 'rejected' {
    if (this.tryAcquire()) return 'acquired';
    return this.enqueue(waiter) ? 'queued' : 'rejected';
  }

  /** Takes a slot if one is free and nobody waits for it (FIFO). */
  tryAcquire(): boolean {
    if (this.inFlight < this.#limit && this.#queue.length === 0) {
      this.inFlight++;
      return true;
    }
    return false;
  }

  /** Queues `waiter` for the next free slot; false when the queue is full. */
  enqueue(waiter: BulkheadWaiter): boolean {
    if (this.#queue.length < this.#maxQueue) {
      this.#queue.push(waiter);
      return true;
    }
    return false;
  }

  /** Removes a waiter that no longer wants its slot (its caller aborted or its deadline passed). */
  leave(waiter: BulkheadWaiter): void {
    this.#queue.remove(waiter);
  }

  /** Frees a slot and hands free slots to waiters in order. */
  release(): void {
    this.inFlight--;
    this.#admitWaiters();
  }

  /** Takes the adaptive limit's new value; a higher one admits waiters at once. */
  syncLimit(): void {
    const limit = this.adaptive!.current;
    if (limit === this.#limit) return;
    this.#limit = limit;
    this.#admitWaiters();
  }

  #admitWaiters(): void {
    // A waiter admitted here may fail synchronously and release again; the guard turns that
    // recursion into iterations of this loop, so a long queue of failing requests cannot
    // overflow the stack.
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.inFlight < this.#limit) {
        const next = this.#queue.shift();
        if (next === null) break;
        this.inFlight++;
        next.admit();
      }
    } finally {
      this.#draining = false;
    }
  }

  isIdle(): boolean {
    return this.inFlight === 0 && this.#queue.length === 0;
  }
}

/** What an adaptive limit needs from this process: jitter and the event loop's stalls. */
const loopEnvironment: AdaptiveLimitEnvironment = { random: Math.random, stalled: stalledSince };

/**
 * A bulkhead stage: per key, at most `maxConcurrent` attempts in flight and `maxQueue` waiting.
 * With `maxConcurrent: 'adaptive'` each key's limit moves (`adaptive-limit.ts`), and
 * `maxConcurrent` here is the initial one.
 */
export class BulkheadStage {
  readonly kind = 'bulkhead';
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  /** The adaptive limit's settings, or null for a static limit. */
  readonly adaptive: AdaptiveLimitSettings | null;
  readonly states: KeyedMap<BulkheadState>;

  constructor(options: BulkheadOptions) {
    const o = optionalObject('bulkhead', options);
    if (o === undefined) throw new TypeError('bulkhead(options) needs { maxConcurrent, maxQueue }');
    knownKeys('bulkhead', o, ['maxConcurrent', 'maxQueue', 'maxKeys', 'adaptive']);
    if (o.maxConcurrent === 'adaptive') {
      this.adaptive = adaptiveLimitSettings('bulkhead.adaptive', o.adaptive);
      this.maxConcurrent = this.adaptive.initial;
    } else {
      if (o.adaptive !== undefined) {
        throw new InvalidOptionError(
          'bulkhead.adaptive',
          "absent unless maxConcurrent is 'adaptive'",
          o.adaptive,
        );
      }
      this.adaptive = null;
      const n = o.maxConcurrent;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
        throw new InvalidOptionError('bulkhead.maxConcurrent', "an integer >= 1 or 'adaptive'", n);
      }
      this.maxConcurrent = n;
    }
    this.maxQueue = integer('bulkhead.maxQueue', o.maxQueue, 0);
    const maxKeys = integer('bulkhead.maxKeys', o.maxKeys, 1, 1000);
    const settings = this.adaptive;
    this.states = new KeyedMap(
      maxKeys,
      settings === null
        ? () => new BulkheadState(this.maxConcurrent, this.maxQueue)
        : () =>
            new BulkheadState(
              this.maxConcurrent,
              this.maxQueue,
              new AdaptiveLimit(settings, loopEnvironment, monotonicNow()),
            ),
      (state) => state.isIdle(),
    );
  }
}

/**
 * Limits concurrent attempts per key. The slot is held from dispatch until the attempt's response
 * has ended (body read, error or abort), never while a retry waits out its backoff.
 */
export function bulkhead(options: BulkheadOptions): BulkheadStage {
  return new BulkheadStage(options);
}
