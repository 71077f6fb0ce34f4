import { CircuitOpenError } from '../errors.js';
import type { StoreLink } from '../fleet/store-link.js';
import { monotonicNow, policyNow, policyTime } from '../internal/clock.js';
import type { Admitted, BreakerState } from '../policies/breaker-state.js';
import type { CircuitBreakerStage } from '../policies/circuit-breaker.js';
import { channels, type RejectedMessage } from '../telemetry/channels.js';
import type { Gate } from './gate.js';
import { HEDGE_DECLINED } from './hedge-timer.js';
import type { Passage } from './passage.js';

/**
 * A circuit breaker stage as a gate: per key, an attempt is refused at once while the circuit is
 * open (no socket touched) and admitted otherwise; its outcome is recorded exactly once, at the
 * response headers or at its ending. An ending that is nobody's verdict only gives back a probe.
 *
 * With a fleet store, what this process's counting decides is told to every process: an opening
 * (with the wait before a probe) and a probe's success. A half-open probe first takes the fleet's
 * probe lock, so one probe at a time goes to the upstream from the whole fleet; a process that
 * does not get it refuses, as it would with its own probe slot taken. When the store fails, the
 * probe goes on this process's word alone.
 */
/** Entries in the probe-lock map past which expired ones are swept. */
const SWEEP_AT = 64;

export class BreakerGate implements Gate<Admitted | HeldProbe> {
  readonly #stage: CircuitBreakerStage;
  readonly #store: StoreLink | null;
  /** Per key: monotonic ms until which another process holds the probe lock. */
  readonly #lockedElsewhere = new Map<string, number>();
  /** Breakers whose fleet state this gate has asked the store for (once each). */
  readonly #asked = new WeakSet<BreakerState>();

  constructor(stage: CircuitBreakerStage, store: StoreLink | null = null) {
    this.#stage = stage;
    this.#store = store;
  }

  enter(ticket: Passage): void {
    const breaker = this.#stage.breakers.get(ticket.key);
    if (this.#store !== null && !this.#asked.has(breaker)) this.#ask(ticket.key, breaker);
    const admission = breaker.admit(policyTime(ticket.time));
    if (ticket.hedge && (!admission.admitted || admission.probe)) {
      // A hedge never probes a half-open circuit, nor counts as refused by an open one.
      if (admission.admitted) admission.breaker.releaseProbe(true);
      ticket.refuse(HEDGE_DECLINED);
      return;
    }
    if (!admission.admitted) {
      rejected(ticket);
      ticket.refuse(new CircuitOpenError(ticket.key, admission.state, admission.retryAfterMs));
      return;
    }
    const store = this.#store;
    if (!admission.probe || store === null) {
      ticket.admit(admission);
      return;
    }
    const lockedUntil = this.#lockedElsewhere.get(ticket.key);
    if (lockedUntil !== undefined) {
      const busyFor = lockedUntil - ticket.time;
      if (busyFor > 0) {
        admission.breaker.releaseProbe(true);
        rejected(ticket);
        ticket.refuse(new CircuitOpenError(ticket.key, 'half_open', busyFor));
        return;
      }
      this.#lockedElsewhere.delete(ticket.key);
    }
    if (!store.usable('lock')) {
      ticket.admit(admission);
      return;
    }
    const held = new HeldProbe(admission);
    ticket.wait(held);
    const key = ticket.key;
    const lockMs = this.#stage.options.halfOpenAfter.initial;
    store.run(
      'lock',
      () => store.store.lockProbe(key, store.id, lockMs),
      (left) => this.#locked(ticket, held, left),
    );
  }

  /** Leaving a queue, a request meets the circuit as it is now, not as it was when it queued. */
  recheck(ticket: Passage, permit: Admitted | HeldProbe): Error | undefined {
    const admission = permit instanceof HeldProbe ? permit.admission : permit;
    const breaker = admission.breaker;
    if (admission.probe || breaker.state === 'closed') return undefined;
    rejected(ticket);
    const state = breaker.state === 'open' ? 'open' : 'half_open';
    return new CircuitOpenError(ticket.key, state, breaker.retryAfterMs(policyNow()));
  }

  cancel(_ticket: Passage, permit: Admitted | HeldProbe): void {
    if (!(permit instanceof HeldProbe)) return;
    // A lock taken for a probe that never went is given back when it arrives (#locked).
    permit.cancelled = true;
    permit.admission.breaker.releaseProbe(true);
  }

  response(ticket: Passage, permit: Admitted | HeldProbe): void {
    const admission = permit instanceof HeldProbe ? permit.admission : permit;
    const breaker = admission.breaker;
    const before = breaker.state;
    const now = policyTime(ticket.time);
    if (ticket.outcome === 'failure') breaker.recordFailure(now, admission.probe);
    else breaker.recordSuccess(now, admission.probe);
    this.#tell(ticket.key, breaker, before, now, permit);
  }

  exit(ticket: Passage, permit: Admitted | HeldProbe): void {
    const admission = permit instanceof HeldProbe ? permit.admission : permit;
    const breaker = admission.breaker;
    // A response was recorded when its headers came.
    if (ticket.statusCode < 200) {
      const before = breaker.state;
      const now = policyNow();
      if (ticket.outcome === 'failure') breaker.recordFailure(now, admission.probe);
      else breaker.releaseProbe(admission.probe);
      this.#tell(ticket.key, breaker, before, now, permit);
    }
    const breakers = this.#stage.breakers;
    if (breakers.oversized) breakers.trim();
  }

  /**
   * A key this process meets for the first time may be open in the fleet already (an opening
   * broadcast before this process listened): its breaker follows once the store answers. The
   * requests sent meanwhile, within one round trip, go on what this process knows.
   */
  #ask(key: string, breaker: BreakerState): void {
    this.#asked.add(breaker);
    const store = this.#store!;
    if (!store.usable('read')) return;
    store.run(
      'read',
      () => store.store.readCircuit(key),
      (message) => {
        if (message === undefined || message === null || message.sender === store.id) return;
        breaker.openFromFleet(
          policyNow(),
          Math.max(0, message.retryAfterMs),
          Math.max(0, message.reopenCount),
        );
      },
    );
  }

  /** The store's answer to a probe's lock: go, refuse (another process probes), or go alone. */
  #locked(ticket: Passage, held: HeldProbe, left: number | undefined): void {
    if (held.cancelled) {
      if (left === -1) this.#unlock(ticket.key);
      return;
    }
    if (left === undefined || left === -1) {
      held.locked = left === -1;
      ticket.admit();
      return;
    }
    const now = monotonicNow();
    // Entries outlive their lock only until the key's next probe; keys never probed again are
    // swept here, so the map holds no more than the keys locked elsewhere right now.
    if (this.#lockedElsewhere.size >= SWEEP_AT) {
      for (const [key, until] of this.#lockedElsewhere) if (until <= now) this.#lockedElsewhere.delete(key);
    }
    this.#lockedElsewhere.set(ticket.key, now + left);
    held.admission.breaker.releaseProbe(true);
    rejected(ticket);
    ticket.refuse(new CircuitOpenError(ticket.key, 'half_open', left));
  }

  /** Tells the fleet what this process's counting just decided, and gives back a probe's lock. */
  #tell(key: string, breaker: BreakerState, before: string, now: number, permit: Admitted | HeldProbe): void {
    const store = this.#store;
    if (store === null) return;
    if (permit instanceof HeldProbe && permit.locked) {
      permit.locked = false;
      this.#unlock(key);
    }
    const after = breaker.state;
    if (after === before || (after !== 'open' && after !== 'closed')) return;
    if (after === 'closed') this.#lockedElsewhere.delete(key);
    const message = {
      sender: store.id,
      key,
      state: after,
      retryAfterMs: after === 'open' ? breaker.retryAfterMs(now) : 0,
      reopenCount: breaker.reopenCount,
    } as const;
    store.send('publish', () => store.store.publishCircuit(message));
  }

  #unlock(key: string): void {
    const store = this.#store!;
    store.send('unlock', () => store.store.unlockProbe(key, store.id));
  }
}

/** A half-open probe waiting for the fleet's probe lock. */
class HeldProbe {
  readonly admission: Admitted;
  cancelled = false;
  /** This process holds the lock: it is given back when the probe reports. */
  locked = false;

  constructor(admission: Admitted) {
    this.admission = admission;
  }
}

/** Counts an attempt the circuit turned away, for the metrics and `breakwater:rejected`. */
function rejected(ticket: Passage): void {
  ticket.observer?.circuitRejected();
  if (channels.rejected.hasSubscribers) {
    channels.rejected.publish({ key: ticket.key, reason: 'circuit' } satisfies RejectedMessage);
  }
}
