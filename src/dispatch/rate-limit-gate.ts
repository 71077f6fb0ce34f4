import { RateLimitedError } from '../errors.js';
import { quotaSignal } from '../http/quota-headers.js';
import { monotonicNow } from '../internal/clock.js';
import type { QueueNode } from '../internal/linked-queue.js';
import type { KeyLimit, RateLimitStage } from '../policies/rate-limit.js';
import type { RateWaiter } from '../policies/rate-limiter.js';
import { channels, type RejectedMessage } from '../telemetry/channels.js';
import type { Gate } from './gate.js';
import { HEDGE_DECLINED } from './hedge-timer.js';
import type { Passage } from './passage.js';

/**
 * A rate limit stage as a gate: per key, a passage takes a token at once, or waits in order for
 * one (leaving the moment it is cancelled), or is refused with RateLimitedError when its wait
 * would exceed `maxWait`. Each response it let through may pause the key (the upstream's quota
 * headers). A hedge never waits: it is declined instead.
 */
export class RateLimitGate implements Gate<KeyLimit | WaitingTicket> {
  readonly #stage: RateLimitStage;

  constructor(stage: RateLimitStage) {
    this.#stage = stage;
  }

  enter(ticket: Passage): void {
    const stage = this.#stage;
    const limit = stage.limits.get(ticket.key);
    const limiter = limit.limiter;
    const now = ticket.time;
    if (limiter.tryTake(now)) {
      ticket.admit(limit);
      return;
    }
    if (ticket.hedge) {
      ticket.refuse(HEDGE_DECLINED);
      return;
    }
    const waiter = new WaitingTicket(ticket, limit);
    if (limiter.request(now, stage.maxWait, waiter) === 'queued') {
      ticket.wait(waiter);
      // Never drained here: admitting inside enter() would re-enter the passage.
      if (limit.timer === null) arm(limit, limiter.headWait(now));
      return;
    }
    if (channels.rejected.hasSubscribers) {
      channels.rejected.publish({ key: ticket.key, reason: 'rate_limit' } satisfies RejectedMessage);
    }
    ticket.refuse(new RateLimitedError(ticket.key, limiter.waitNow(now)));
  }

  cancel(_ticket: Passage, waiter: KeyLimit | WaitingTicket): void {
    if (!(waiter instanceof WaitingTicket)) return;
    const limit = waiter.limit;
    limit.limiter.leave(waiter);
    if (limit.limiter.queued === 0 && limit.timer !== null) {
      clearTimeout(limit.timer);
      limit.timer = null;
    }
  }

  response(ticket: Passage, permit: KeyLimit | WaitingTicket): void {
    const stage = this.#stage;
    if (!stage.fromResponses) return;
    const status = ticket.statusCode;
    // Only a refusal or a response that carries quota fields says anything; most say nothing, and
    // a success is checked for the remaining count alone.
    const signal = quotaSignal(status, (name) => ticket.responseHeader(name), Date.now());
    if (signal === undefined) return;
    const limiter = (permit instanceof WaitingTicket ? permit.limit : permit).limiter;
    if (signal.pauseMs > 0) limiter.pause(ticket.time, Math.min(signal.pauseMs, stage.maxPause));
    else limiter.exhaust(ticket.time);
  }

  exit(_ticket: Passage, _permit: KeyLimit | WaitingTicket): void {
    const limits = this.#stage.limits;
    if (limits.oversized) limits.trim();
  }
}

/** Arms the key's timer for `ms` from now. Not unref'd: a request is waiting on it. */
function arm(limit: KeyLimit, ms: number): void {
  limit.timer = setTimeout(fire, ms < 1 ? 1 : Math.ceil(ms), limit);
}

/** The head of a key's queue is due: admit whoever's turn came, and wait for the next. */
function fire(limit: KeyLimit): void {
  limit.timer = null;
  const due = limit.limiter.drain(monotonicNow());
  if (due >= 0 && limit.timer === null) arm(limit, due);
}

/** A ticket waiting for a token; the limiter admits it when its turn comes. */
class WaitingTicket implements RateWaiter {
  queuePrev: QueueNode | null = null;
  queueNext: QueueNode | null = null;
  queued = false;
  readonly ticket: Passage;
  readonly limit: KeyLimit;

  constructor(ticket: Passage, limit: KeyLimit) {
    this.ticket = ticket;
    this.limit = limit;
  }

  admit(): void {
    this.ticket.admit();
  }
}
