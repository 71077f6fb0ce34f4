import { CircuitOpenError } from '../errors.js';
import { policyNow, policyTime } from '../internal/clock.js';
import type { Admitted } from '../policies/breaker-state.js';
import type { CircuitBreakerStage } from '../policies/circuit-breaker.js';
import { channels, type RejectedMessage } from '../telemetry/channels.js';
import type { Gate } from './gate.js';
import { HEDGE_DECLINED } from './hedge-timer.js';
import type { Passage } from './passage.js';

/**
 * A circuit breaker stage as a gate: per key, an attempt is refused at once while the circuit is
 * open (no socket touched) and admitted otherwise; its outcome is recorded exactly once, at the
 * response headers or at its ending. An ending that is nobody's verdict only gives back a probe.
 */
export class BreakerGate implements Gate<Admitted> {
  readonly #stage: CircuitBreakerStage;

  constructor(stage: CircuitBreakerStage) {
    this.#stage = stage;
  }

  enter(ticket: Passage): void {
    const admission = this.#stage.breakers.get(ticket.key).admit(policyTime(ticket.time));
    if (ticket.hedge && (!admission.admitted || admission.probe)) {
      // A hedge never probes a half-open circuit, nor counts as refused by an open one.
      if (admission.admitted) admission.breaker.releaseProbe(true);
      ticket.refuse(HEDGE_DECLINED);
      return;
    }
    if (admission.admitted) {
      ticket.admit(admission);
      return;
    }
    rejected(ticket);
    ticket.refuse(new CircuitOpenError(ticket.key, admission.state, admission.retryAfterMs));
  }

  /** Leaving a queue, a request meets the circuit as it is now, not as it was when it queued. */
  recheck(ticket: Passage, admission: Admitted): Error | undefined {
    const breaker = admission.breaker;
    if (admission.probe || breaker.state === 'closed') return undefined;
    rejected(ticket);
    const state = breaker.state === 'open' ? 'open' : 'half_open';
    return new CircuitOpenError(ticket.key, state, breaker.retryAfterMs(policyNow()));
  }

  response(ticket: Passage, admission: Admitted): void {
    const now = policyTime(ticket.time);
    if (ticket.outcome === 'failure') admission.breaker.recordFailure(now, admission.probe);
    else admission.breaker.recordSuccess(now, admission.probe);
  }

  exit(ticket: Passage, admission: Admitted): void {
    // A response was recorded when its headers came.
    if (ticket.statusCode < 200) {
      if (ticket.outcome === 'failure') admission.breaker.recordFailure(policyNow(), admission.probe);
      else admission.breaker.releaseProbe(admission.probe);
    }
    const breakers = this.#stage.breakers;
    if (breakers.oversized) breakers.trim();
  }
}

/** Counts an attempt the circuit turned away, for the metrics and `breakwater:rejected`. */
function rejected(ticket: Passage): void {
  ticket.observer?.circuitRejected();
  if (channels.rejected.hasSubscribers) {
    channels.rejected.publish({ key: ticket.key, reason: 'circuit' } satisfies RejectedMessage);
  }
}
