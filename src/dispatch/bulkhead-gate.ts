import { BulkheadRejectedError } from '../errors.js';
import type { BulkheadStage, BulkheadState } from '../policies/bulkhead.js';
import type { Gate } from './gate.js';
import type { Passage } from './passage.js';

/**
 * A bulkhead stage as a gate: per key, a slot is taken at once, or the passage waits in the FIFO
 * queue (leaving it the moment it is cancelled), or it is refused when the queue is full. The slot
 * is given back when the passage ends: body read, error, abort, timeout, or a response discarded
 * for a retry.
 */
export class BulkheadGate implements Gate<BulkheadState> {
  readonly #stage: BulkheadStage;

  constructor(stage: BulkheadStage) {
    this.#stage = stage;
  }

  enter(ticket: Passage): void {
    const stage = this.#stage;
    const slots = stage.states.get(ticket.key);
    // The passage is its own queue node; the bulkhead admits it through ticket.admit().
    const verdict = slots.acquire(ticket);
    if (verdict === 'acquired') {
      ticket.admit(slots);
    } else if (verdict === 'queued') {
      ticket.wait(slots);
    } else {
      ticket.observer?.bulkheadRejected();
      ticket.refuse(new BulkheadRejectedError(ticket.key, stage.maxConcurrent, stage.maxQueue));
    }
  }

  cancel(ticket: Passage, slots: BulkheadState): void {
    slots.leave(ticket);
  }

  exit(_ticket: Passage, slots: BulkheadState): void {
    slots.release();
    const states = this.#stage.states;
    if (states.oversized && slots.isIdle()) states.trim();
  }
}
