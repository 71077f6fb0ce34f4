import { BulkheadRejectedError } from '../errors.js';
import type { QueueNode } from '../internal/linked-queue.js';
import type { BulkheadStage, BulkheadState, BulkheadWaiter } from '../policies/bulkhead.js';
import { channels, type RejectedMessage } from '../telemetry/channels.js';
import type { Gate } from './gate.js';
import { HEDGE_DECLINED } from './hedge-timer.js';
import type { Passage } from './passage.js';

/**
 * A bulkhead stage as a gate: per key, a slot is taken at once, or the passage waits in the FIFO
 * queue (leaving it the moment it is cancelled), or it is refused when the queue is full. The slot
 * is given back when the passage ends: body read, error, abort, timeout, or a response discarded
 * for a retry.
 */
export class BulkheadGate implements Gate<BulkheadState | QueuedTicket> {
  readonly #stage: BulkheadStage;

  constructor(stage: BulkheadStage) {
    this.#stage = stage;
  }

  enter(ticket: Passage): void {
    const stage = this.#stage;
    const slots = stage.states.get(ticket.key);
    if (slots.tryAcquire()) {
      ticket.admit(slots);
      return;
    }
    // A node of its own only for a ticket that waits: most never do.
    const waiter = ticket.hedge ? null : new QueuedTicket(ticket, slots);
    waitOrRefuse(stage, ticket, slots, waiter);
  }

  cancel(_ticket: Passage, waiter: BulkheadState | QueuedTicket): void {
    if (waiter instanceof QueuedTicket) waiter.slots.leave(waiter);
  }

  exit(_ticket: Passage, permit: BulkheadState | QueuedTicket): void {
    const slots = permit instanceof QueuedTicket ? permit.slots : permit;
    slots.release();
    const states = this.#stage.states;
    if (states.oversized && slots.isIdle()) states.trim();
  }
}

/**
 * A full bulkhead's answer, static or adaptive: a hedge is declined (it never queues behind real
 * traffic), anyone else waits in the queue, or is refused when the queue is full too.
 */
export function waitOrRefuse(
  stage: BulkheadStage,
  ticket: Passage,
  slots: BulkheadState,
  waiter: BulkheadWaiter | null,
): void {
  if (waiter === null) {
    ticket.refuse(HEDGE_DECLINED);
    return;
  }
  if (slots.enqueue(waiter)) {
    ticket.wait(waiter);
    return;
  }
  ticket.observer?.bulkheadRejected();
  if (channels.rejected.hasSubscribers) {
    channels.rejected.publish({ key: ticket.key, reason: 'bulkhead' } satisfies RejectedMessage);
  }
  ticket.refuse(new BulkheadRejectedError(ticket.key, slots.limit, stage.maxQueue));
}

/** A ticket waiting in a bulkhead's queue; the bulkhead admits it when a slot frees up. */
class QueuedTicket implements BulkheadWaiter {
  queuePrev: QueueNode | null = null;
  queueNext: QueueNode | null = null;
  queued = false;
  readonly ticket: Passage;
  readonly slots: BulkheadState;

  constructor(ticket: Passage, slots: BulkheadState) {
    this.ticket = ticket;
    this.slots = slots;
  }

  admit(): void {
    this.ticket.admit();
  }
}
