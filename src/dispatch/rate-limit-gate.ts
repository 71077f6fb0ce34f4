// The rate limit stage as a gate, with or without a fleet store.

import { RateLimitedError } from '../errors.js';
import type { RateGrant } from '../fleet/store.js';
import type { StoreLink } from '../fleet/store-link.js';
import { quotaSignal } from '../http/quota-headers.js';
import { monotonicNow } from '../internal/clock.js';
import type { QueueNode } from '../internal/linked-queue.js';
import type { KeyLimit, RateLimitStage, ScheduledWaiter } from '../policies/rate-limit.js';
import type { RateWaiter } from '../policies/rate-limiter.js';
import { channels, type RejectedMessage } from '../telemetry/channels.js';
import type { Gate } from './gate.js';
import { HEDGE_DECLINED } from './hedge-timer.js';
import type { Passage } from './passage.js';

/** How long tokens leased from a fleet store stay usable. */
const LEASE_MS = 1_000;

/**
 * A rate limit stage as a gate: per key, a passage takes a token at once, or waits in order for
 * one (leaving the moment it is cancelled), or is refused with RateLimitedError when its wait
 * would exceed `maxWait`. Each response it let through may pause the key (the upstream's quota
 * headers). A hedge never waits: it is declined instead.
 *
 * With a fleet store the store decides instead of the local bucket: one round trip per admission
 * (or per lease of several tokens), whose answer is a wait or a refusal. When the store fails or
 * is late, the local bucket decides, as it does without a store.
 */
export class RateLimitGate implements Gate<KeyLimit | WaitingTicket> {
  readonly #stage: RateLimitStage;
  readonly #store: StoreLink | null;

  constructor(stage: RateLimitStage, store: StoreLink | null = null) {
    this.#stage = stage;
    this.#store = store;
  }

  enter(ticket: Passage): void {
    const limit = this.#stage.limits.get(ticket.key);
    const store = this.#store;
    if (store !== null) {
      if (limit.leased > 0) {
        if (ticket.time < limit.leaseUntil) {
          limit.leased--;
          ticket.admit(limit);
          return;
        }
        limit.leased = 0;
      }
      if (store.usable('rate')) {
        if (ticket.hedge) {
          // A hedge never waits, not even for a round trip.
          ticket.refuse(HEDGE_DECLINED);
          return;
        }
        const waiter = new WaitingTicket(ticket, limit);
        ticket.wait(waiter);
        // Requests that arrive together (one tick) share one round trip.
        if (limit.batch === null) {
          limit.batch = [waiter];
          queueMicrotask(() => this.#ask(store, limit));
        } else {
          limit.batch.push(waiter);
        }
        return;
      }
    }
    this.#local(ticket, limit, null);
  }

  cancel(_ticket: Passage, waiter: KeyLimit | WaitingTicket): void {
    if (!(waiter instanceof WaitingTicket)) return;
    waiter.cancelled = true;
    const limit = waiter.limit;
    if (waiter.scheduled) {
      waiter.scheduled = false;
      limit.scheduled.remove(waiter);
      if (limit.scheduled.length === 0) unschedule(limit);
      return;
    }
    limit.limiter.leave(waiter);
    if (limit.limiter.queued === 0 && limit.timer !== null) {
      clearTimeout(limit.timer);
      limit.timer = null;
    }
  }

  response(ticket: Passage, permit: KeyLimit | WaitingTicket): void {
    const stage = this.#stage;
    if (!stage.fromResponses) return;
    const signal = quotaSignal(ticket.statusCode, (name) => ticket.responseHeader(name), Date.now());
    if (signal === undefined) return;
    const limit = permit instanceof WaitingTicket ? permit.limit : permit;
    const limiter = limit.limiter;
    limit.leased = 0;
    if (signal.pauseMs > 0) {
      const ms = Math.min(signal.pauseMs, stage.maxPause);
      limiter.pause(ticket.time, ms);
      const store = this.#store;
      if (store !== null) {
        const key = ticket.key;
        store.send('pause', () => store.store.pauseRate(key, limiter.interval, limiter.burst, ms));
      }
    } else {
      limiter.exhaust(ticket.time);
    }
  }

  exit(_ticket: Passage, _permit: KeyLimit | WaitingTicket): void {
    const limits = this.#stage.limits;
    if (limits.oversized) limits.trim();
  }

  /** Asks the store for the tokens of the requests that arrived together. */
  #ask(store: StoreLink, limit: KeyLimit): void {
    const batch = limit.batch as WaitingTicket[];
    limit.batch = null;
    const limiter = limit.limiter;
    const key = batch[0]!.ticket.key;
    const lease = store.store.lease;
    store.run(
      'rate',
      () =>
        store.store.acquireRate(
          key,
          limiter.interval,
          limiter.burst,
          this.#stage.maxWait,
          batch.length,
          lease,
        ),
      (grant) => this.#granted(batch, limit, grant),
    );
  }

  /**
   * The store's answer for a batch: token i goes to the i-th waiter, after its wait; those beyond
   * the tokens are refused. Without an answer the local bucket decides for each, in order.
   */
  #granted(batch: WaitingTicket[], limit: KeyLimit, grant: RateGrant | undefined): void {
    if (grant === undefined) {
      for (const waiter of batch) if (!waiter.cancelled) this.#local(waiter.ticket, limit, waiter);
      return;
    }
    const interval = limit.limiter.interval;
    if (grant.granted > batch.length) {
      // A lease: the extra tokens are free now. Used later they add to the fleet's burst, so they
      // are dropped after a second.
      limit.leased = grant.granted - batch.length;
      limit.leaseUntil = monotonicNow() + LEASE_MS;
    }
    const now = monotonicNow();
    for (let i = 0; i < batch.length; i++) {
      const waiter = batch[i]!;
      // A waiter that left wastes its token: it was reserved for it in the store.
      if (waiter.cancelled) continue;
      const wait = grant.baseMs + i * interval;
      if (i >= grant.granted) {
        refuse(waiter.ticket, grant.baseMs + grant.granted * interval);
      } else if (wait < 1 && limit.scheduled.length === 0) {
        waiter.ticket.admit();
      } else {
        // Tokens of later batches come after those of earlier ones, so the queue stays in order.
        waiter.dueAt = now + wait;
        waiter.scheduled = true;
        limit.scheduled.push(waiter);
      }
    }
    if (limit.scheduled.length > 0 && limit.scheduleTimer === null) schedule(limit, now);
  }

  /**
   * The local bucket decides: a token now, a place in its queue, or a refusal. `held` is the
   * ticket's waiter when it already waits (for a store that failed it).
   */
  #local(ticket: Passage, limit: KeyLimit, held: WaitingTicket | null): void {
    const limiter = limit.limiter;
    const now = held === null ? ticket.time : monotonicNow();
    if (limiter.tryTake(now)) {
      if (held === null) ticket.admit(limit);
      else ticket.admit();
      return;
    }
    if (ticket.hedge) {
      ticket.refuse(HEDGE_DECLINED);
      return;
    }
    const waiter = held ?? new WaitingTicket(ticket, limit);
    if (limiter.request(now, this.#stage.maxWait, waiter) === 'queued') {
      if (held === null) ticket.wait(waiter);
      // Never drained here: admitting inside enter() would re-enter the passage.
      if (limit.timer === null) arm(limit, limiter.headWait(now));
      return;
    }
    refuse(ticket, limiter.waitNow(now));
  }
}

function refuse(ticket: Passage, retryAfterMs: number): void {
  if (channels.rejected.hasSubscribers) {
    channels.rejected.publish({ key: ticket.key, reason: 'rate_limit' } satisfies RejectedMessage);
  }
  ticket.refuse(new RateLimitedError(ticket.key, retryAfterMs));
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

/** Arms the key's timer for the head of its scheduled waiters. Not unref'd: a request waits on it. */
function schedule(limit: KeyLimit, now: number): void {
  const head = limit.scheduled.peek();
  if (head === null) return;
  const ms = head.dueAt + limit.scheduleShift - now;
  limit.scheduleTimer = setTimeout(fireScheduled, ms < 1 ? 1 : Math.ceil(ms), limit);
}

function unschedule(limit: KeyLimit): void {
  if (limit.scheduleTimer !== null) clearTimeout(limit.scheduleTimer);
  limit.scheduleTimer = null;
  limit.scheduleShift = 0;
}

/**
 * The head of a key's scheduled waiters is due: it goes, alone. When the timer fired well after
 * its time (a stalled event loop), every later token of this process moves back by as much, so
 * the spacing the store gave is kept and nothing catches up in a bunch.
 */
function fireScheduled(limit: KeyLimit): void {
  limit.scheduleTimer = null;
  const now = monotonicNow();
  const head = limit.scheduled.peek();
  if (head === null) return;
  const late = now - (head.dueAt + limit.scheduleShift);
  if (late < -0.5) {
    schedule(limit, now);
    return;
  }
  if (late > limit.limiter.interval / 2) limit.scheduleShift += late;
  limit.scheduled.shift();
  head.scheduled = false;
  if (limit.scheduled.length === 0) unschedule(limit);
  else schedule(limit, now);
  head.admit();
}

/** A ticket waiting for a token: in the key's queue, or for the store's answer and the wait it gave. */
class WaitingTicket implements RateWaiter, ScheduledWaiter {
  queuePrev: QueueNode | null = null;
  queueNext: QueueNode | null = null;
  queued = false;
  readonly ticket: Passage;
  readonly limit: KeyLimit;
  /** When the token a fleet store granted it is due (monotonic ms). */
  dueAt = 0;
  /** In its key's scheduled waiters (not the local bucket's queue). */
  scheduled = false;
  cancelled = false;

  constructor(ticket: Passage, limit: KeyLimit) {
    this.ticket = ticket;
    this.limit = limit;
  }

  admit(): void {
    this.ticket.admit();
  }
}
