/**
 * A bulkhead with `maxConcurrent: 'adaptive'` as a gate. Admission and the queue are the static
 * bulkhead's; in addition each admitted attempt tells its key's adaptive limit how it went: its
 * latency to response headers, or a drop (429, 503, or a failure before headers: a timeout inside
 * the bulkhead, a refused or reset connection). The limit is copied into the key's slots whenever
 * it moves, so a higher one admits waiters at once.
 */

import { monotonicNow } from '../internal/clock.js';
import type { QueueNode } from '../internal/linked-queue.js';
import { unwatchStalls, watchStalls } from '../internal/loop-stalls.js';
import type { BulkheadStage, BulkheadState, BulkheadWaiter } from '../policies/bulkhead.js';
import { waitOrRefuse } from './bulkhead-gate.js';
import type { Gate } from './gate.js';
import type { Passage } from './passage.js';

export class AdaptiveBulkheadGate implements Gate<AdaptiveSlot> {
  readonly #stage: BulkheadStage;

  constructor(stage: BulkheadStage) {
    this.#stage = stage;
  }

  enter(ticket: Passage): void {
    const slots = this.#stage.states.get(ticket.key);
    if (slots.tryAcquire()) {
      const slot = new AdaptiveSlot(ticket, slots);
      slot.start(ticket.time);
      ticket.admit(slot);
      return;
    }
    waitOrRefuse(this.#stage, ticket, slots, ticket.hedge ? null : new AdaptiveSlot(ticket, slots));
  }

  response(ticket: Passage, slot: AdaptiveSlot): void {
    slot.heard = true;
    const limit = slot.slots.adaptive!;
    const status = ticket.statusCode;
    if (status === 429 || status === 503) limit.drop(slot.startedAt, ticket.time);
    else limit.sample(slot.startedAt, ticket.time);
    slot.slots.syncLimit();
  }

  cancel(_ticket: Passage, slot: AdaptiveSlot): void {
    slot.slots.leave(slot);
  }

  exit(ticket: Passage, slot: AdaptiveSlot): void {
    const slots = slot.slots;
    if (!slot.heard && ticket.outcome === 'failure') {
      slots.adaptive!.drop(slot.startedAt, monotonicNow());
      slots.syncLimit();
    }
    // Released first: a waiter it admits keeps the stall watch on without a restart.
    slots.release();
    unwatchStalls();
    const states = this.#stage.states;
    if (states.oversized && slots.isIdle()) states.trim();
  }
}

/** One attempt's place at an adaptive bulkhead: queued first, or admitted at once. */
class AdaptiveSlot implements BulkheadWaiter {
  queuePrev: QueueNode | null = null;
  queueNext: QueueNode | null = null;
  queued = false;
  readonly ticket: Passage;
  readonly slots: BulkheadState;
  /** Monotonic ms when it took its slot. */
  startedAt = 0;
  /** Response headers came and were counted. */
  heard = false;

  constructor(ticket: Passage, slots: BulkheadState) {
    this.ticket = ticket;
    this.slots = slots;
  }

  start(now: number): void {
    this.startedAt = now;
    watchStalls();
    const slots = this.slots;
    slots.adaptive!.admitted(slots.inFlight, now);
    // Admission may have begun a baseline measurement, which lowers the limit.
    slots.syncLimit();
  }

  /** Called by the bulkhead when a slot frees up for this waiter. */
  admit(): void {
    this.start(monotonicNow());
    this.ticket.admit();
  }
}
