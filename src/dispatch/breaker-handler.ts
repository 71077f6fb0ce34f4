import { CircuitOpenError, TimeoutError } from '../errors.js';
import { isTransientNetworkError } from '../http/classify.js';
import { policyNow, policyTime } from '../internal/clock.js';
import type { BreakerState } from '../policies/breaker-state.js';
import type { CircuitBreakerStage } from '../policies/circuit-breaker.js';
import type { Exchange, Layer } from './exchange.js';
import { StageHandler } from './stage-handler.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/**
 * Runs one attempt past its key's breaker: refused at once while open (no socket is touched),
 * admitted otherwise, and its outcome recorded exactly once — at response headers, or at an error
 * before them. An attempt that ends with neither (the caller aborted) only gives back its probe.
 */
class BreakerHandler extends StageHandler {
  readonly #breaker: BreakerState;
  readonly #failureStatus: readonly boolean[];
  #admitted = false;
  #probe = false;
  #recorded = false;

  constructor(
    outer: Handler,
    opts: DispatchOptions,
    ex: Exchange,
    next: Layer,
    breaker: BreakerState,
    failureStatus: readonly boolean[],
  ) {
    super(outer, opts, ex, next);
    this.#breaker = breaker;
    this.#failureStatus = failureStatus;
  }

  start(): void {
    if (!this.announce()) return;
    const admission = this.#breaker.admit(policyTime(this.ex.dispatchTime));
    if (!admission.admitted) {
      this.ex.observer?.circuitRejected();
      this.fail(new CircuitOpenError(this.ex.key, admission.state, admission.retryAfterMs));
      return;
    }
    this.#admitted = true;
    this.#probe = admission.probe;
    this.dispatchInner();
  }

  override onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    if (!this.done) this.#record(this.#failureStatus[statusCode] === true);
    super.onResponseStart(controller, statusCode, headers, statusMessage);
  }

  override onResponseError(controller: Controller, error: Error): void {
    // A timeout from inside this stage bounded this very attempt, whatever its scope.
    if (!this.done) this.#recordError(error, true);
    super.onResponseError(controller, error);
  }

  protected override release(): void {
    // Ended from outside before any outcome: an attempt timeout placed outside this stage is
    // still the upstream's failure; a caller's abort or a total timeout is nobody's verdict.
    if (this.#admitted && !this.#recorded) this.#recordError(this.reason, false);
  }

  #recordError(error: Error | null, fromInside: boolean): void {
    if (isUpstreamFailure(error, fromInside)) this.#record(true);
    else if (this.#admitted && !this.#recorded) {
      this.#recorded = true;
      this.#breaker.releaseProbe(this.#probe);
    }
  }

  #record(failure: boolean): void {
    if (!this.#admitted || this.#recorded) return;
    this.#recorded = true;
    const now = policyNow();
    if (failure) this.#breaker.recordFailure(now, this.#probe);
    else this.#breaker.recordSuccess(now, this.#probe);
  }
}

/**
 * A network error or a timeout of this attempt is the upstream's failure. A timeout coming from
 * outside counts only when it is an attempt timeout; a total timeout, a caller's abort or the
 * library's own refusals are not the upstream's doing.
 */
export function isUpstreamFailure(error: Error | null, fromInside: boolean): boolean {
  if (error === null) return false;
  if (error instanceof TimeoutError) return fromInside || error.scope === 'attempt';
  return isTransientNetworkError(error);
}

export function breakerLayer(
  stage: CircuitBreakerStage,
  failureStatus: readonly boolean[],
  next: Layer,
): Layer {
  return function circuitBreakerStep(opts, handler, ex) {
    const breaker = stage.breakers.get(ex.key);
    new BreakerHandler(handler, opts, ex, next, breaker, failureStatus).start();
  };
}
