// The bulkhead stage: its options and the per-key accounting of slots and waiters. The dispatch
// adapter is dispatch/bulkhead-gate.ts.

import { KeyedMap } from '../internal/keyed-map.js';
import { LinkedQueue, type QueueNode } from '../internal/linked-queue.js';
import { integer, knownKeys, optionalObject } from '../internal/validate.js';

export interface BulkheadOptions {
  /** Attempts allowed in flight at once, per key. */
  maxConcurrent: number;
  /** Attempts allowed to wait for a slot, per key; beyond it they are rejected at once. */
  maxQueue: number;
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
  readonly #maxConcurrent: number;
  readonly #maxQueue: number;
  #draining = false;

  constructor(maxConcurrent: number, maxQueue: number) {
    this.#maxConcurrent = maxConcurrent;
    this.#maxQueue = maxQueue;
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
    if (this.inFlight < this.#maxConcurrent && this.#queue.length === 0) {
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
    // A waiter admitted here may fail synchronously and release again; the guard turns that
    // recursion into iterations of this loop, so a long queue of failing requests cannot
    // overflow the stack.
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.inFlight < this.#maxConcurrent) {
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

/** A bulkhead stage: per key, at most `maxConcurrent` attempts in flight and `maxQueue` waiting. */
export class BulkheadStage {
  readonly kind = 'bulkhead';
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly states: KeyedMap<BulkheadState>;

  constructor(options: BulkheadOptions) {
    const o = optionalObject('bulkhead', options);
    if (o === undefined) throw new TypeError('bulkhead(options) needs { maxConcurrent, maxQueue }');
    knownKeys('bulkhead', o, ['maxConcurrent', 'maxQueue', 'maxKeys']);
    this.maxConcurrent = integer('bulkhead.maxConcurrent', o.maxConcurrent, 1);
    this.maxQueue = integer('bulkhead.maxQueue', o.maxQueue, 0);
    const maxKeys = integer('bulkhead.maxKeys', o.maxKeys, 1, 1000);
    this.states = new KeyedMap(
      maxKeys,
      () => new BulkheadState(this.maxConcurrent, this.maxQueue),
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
