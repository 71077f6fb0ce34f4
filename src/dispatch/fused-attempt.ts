import { BulkheadRejectedError, CircuitOpenError, TimeoutError } from '../errors.js';
import { statusClass } from '../http/classify.js';
import { monotonicNow, policyNow, policyTime } from '../internal/clock.js';
import type { Deadline, DeadlineQueue } from '../internal/deadline-queue.js';
import { duration } from '../internal/validate.js';
import type { BreakerState } from '../policies/breaker-state.js';
import type { BulkheadStage, BulkheadState, BulkheadWaiter } from '../policies/bulkhead.js';
import type { CircuitBreakerStage } from '../policies/circuit-breaker.js';
import { isUpstreamFailure } from './breaker-handler.js';
import { type CoreLink, rejectsLegacyHandlers } from './core-link.js';
import { type Exchange, errorKind } from './exchange.js';
import { UNPARSED } from './lazy-headers.js';
import type { StatusClass } from './observer.js';
import {
  type AttemptPhase,
  DiscardedAttemptError,
  DRAIN_LIMIT,
  type RetryAttempt,
  type RetryHandler,
} from './retry-handler.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/**
 * What sits between a retry stage and the real dispatcher in the standard shape: at most a circuit
 * breaker, then a bulkhead, then an attempt timeout, in that order. One per runtime (each
 * dispatcher the pipeline wraps).
 */
export interface AttemptPlan {
  readonly core: CoreLink;
  readonly breaker: CircuitBreakerStage | null;
  /** Statuses the breaker counts as failures (the retry stage's retryable ones). */
  readonly failureStatus: readonly boolean[];
  readonly bulkhead: BulkheadStage | null;
  readonly timeout: AttemptTimeout | null;
}

/** A timeout inside a retry stage: its scope is always `attempt`. */
export interface AttemptTimeout {
  readonly ms: number;
  readonly untilHeaders: boolean;
  readonly queue: DeadlineQueue;
}

/**
 * One attempt of the standard shape, with the breaker, bulkhead and attempt timeout stages fused
 * into it, and the handler the real dispatcher calls. Built stage by stage, the same attempt costs
 * five handler objects, each forwarding every callback to the next (AttemptHandler, breaker,
 * bulkhead, timeout, core bridge); those objects and their calls were the largest part of what the
 * pipeline added per request (`npm run bench:isolated` on Node 20: the preset's five stages cost
 * 4,970 instructions per request fused, and 11,748 with breaker and bulkhead swapped, which is
 * built stage by stage). Here each stage's part is a few
 * fields and each callback runs once. The behaviour is that of the stages it replaces, in order:
 *
 * - start: the breaker admits or refuses (CircuitOpenError, no socket touched); the bulkhead takes
 *   a slot, queues the attempt or refuses it (BulkheadRejectedError); once it holds a slot, the
 *   attempt timeout starts and the request goes to the dispatcher.
 * - headers: the breaker records the status; an attempt timeout `until: 'headers'` stops.
 * - every ending (body done, error, timeout, abort from outside) releases the timer, the slot or
 *   the queue place, and the breaker's probe, exactly once, behind `done`.
 *
 * It is its own controller: the run pauses and resumes it and reads the raw headers from it. The
 * two subclasses speak the dispatcher's handler API: undici 7's legacy one or the current one.
 */
abstract class FusedAttempt implements RetryAttempt, Controller, Deadline, BulkheadWaiter {
  phase: AttemptPhase = 'waiting';
  // Its place in the attempt timeout's deadlines (Deadline) and in the bulkhead's queue (BulkheadWaiter).
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  queuePrev: BulkheadWaiter | null = null;
  queueNext: BulkheadWaiter | null = null;
  queued = false;
  rawHeaders: Buffer[] | null = null;
  rawTrailers: Buffer[] | null = null;
  protected readonly run: RetryHandler;
  protected readonly ex: Exchange;
  protected readonly plan: AttemptPlan;
  /** No further report goes to the run; what the attempt held is released. */
  protected done = false;
  protected isPaused: boolean;
  /** Why it ended early; the dispatcher's request is aborted with it. */
  protected endReason: Error | null = null;
  /** `abort()` was called (a controller's `aborted`); an ending decided here does not set it. */
  #aborted = false;
  #opts: DispatchOptions | null = null;
  #breaker: BreakerState | null = null;
  #probe = false;
  /** The breaker heard this attempt's outcome (or got its probe back). */
  #breakerSettled = true;
  #slots: BulkheadState | null = null;
  #holdsSlot = false;
  #timeoutMs = 0;
  #drained = 0;
  /** Monotonic ms when the request went to the dispatcher, for the attempt's duration. */
  #sentAt = 0;
  #attemptRecorded = false;

  constructor(run: RetryHandler, ex: Exchange, plan: AttemptPlan) {
    this.run = run;
    this.ex = ex;
    this.plan = plan;
    this.isPaused = run.paused;
  }

  // --- RetryAttempt and Controller ----------------------------------------------------------------

  get controller(): Controller {
    return this;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get reason(): Error | null {
    return this.endReason;
  }

  start(opts: DispatchOptions): void {
    this.#opts = opts;
    const { plan, ex } = this;
    if (plan.breaker !== null) {
      const breaker = plan.breaker.breakers.get(ex.key);
      const admission = breaker.admit(policyTime(ex.dispatchTime));
      if (!admission.admitted) {
        ex.observer?.circuitRejected();
        this.#fail(new CircuitOpenError(ex.key, admission.state, admission.retryAfterMs));
        return;
      }
      this.#breaker = breaker;
      this.#probe = admission.probe;
      this.#breakerSettled = false;
    }
    const bulkhead = plan.bulkhead;
    if (bulkhead !== null) {
      const slots = bulkhead.states.get(ex.key);
      this.#slots = slots;
      const verdict = slots.acquire(this);
      if (verdict === 'queued') return;
      if (verdict === 'rejected') {
        ex.observer?.bulkheadRejected();
        this.#fail(new BulkheadRejectedError(ex.key, bulkhead.maxConcurrent, bulkhead.maxQueue));
        return;
      }
      this.#holdsSlot = true;
    }
    this.#send();
  }

  /** Ended from outside by the run: the caller aborted, the total deadline passed, a drain was cut. */
  abort(reason: Error): void {
    this.phase = 'finished';
    this.#aborted = true;
    // Nobody's verdict on the upstream, unless it is one (an attempt timeout, a network error).
    this.#end(reason, false);
  }

  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    this.isPaused = false;
  }

  // --- Bulkhead and timeout callbacks ---------------------------------------------------------------

  /** A bulkhead slot freed up for this queued attempt. */
  admit(): void {
    this.#holdsSlot = true;
    const now = monotonicNow();
    const ex = this.ex;
    ex.observer?.queueWaited((now - ex.dispatchTime) / 1000);
    ex.dispatchTime = now;
    this.#send();
  }

  /** The attempt timeout passed (Deadline). */
  expire(): void {
    if (this.done) return;
    this.ex.observer?.timedOut('attempt');
    this.#fail(new TimeoutError('attempt', this.#timeoutMs));
  }

  // --- What the dispatcher reports, in either API ---------------------------------------------------

  protected headersArrived(statusCode: number, headers: Headers, statusMessage: string): void {
    // One clock reading serves the attempt's duration and the breaker's record (see
    // internal/clock.ts for what a reading costs).
    const now = monotonicNow();
    if (this.plan.core.record && !this.#attemptRecorded) this.#recordAttempt(statusClass(statusCode), now);
    if (this.done) return;
    if (!this.#breakerSettled) {
      this.#breakerSettled = true;
      const at = policyTime(now);
      if (this.plan.failureStatus[statusCode] === true) this.#breaker!.recordFailure(at, this.#probe);
      else this.#breaker!.recordSuccess(at, this.#probe);
    }
    if (this.plan.timeout?.untilHeaders === true) this.#clearTimer();
    if (this.phase === 'waiting') this.run.attemptResponded(this, statusCode, headers, statusMessage);
  }

  protected dataArrived(chunk: Buffer): void {
    if (this.done) return;
    if (this.phase === 'forwarded') {
      this.run.forwardData(chunk);
    } else if (this.phase === 'draining') {
      // Reading the rest of a small error body lets the connection be reused; a large one is
      // cheaper to drop with its socket.
      this.#drained += chunk.length;
      if (this.#drained > DRAIN_LIMIT) this.abort(new DiscardedAttemptError());
    }
  }

  protected completed(trailers: Headers): void {
    if (this.done) return;
    this.done = true;
    this.#release();
    const phase = this.phase;
    this.phase = 'finished';
    if (phase === 'forwarded') this.run.forwardEnd(trailers);
  }

  protected failed(error: Error): void {
    if (this.plan.core.record && !this.#attemptRecorded)
      this.#recordAttempt(errorKind(error), monotonicNow());
    if (this.done) return;
    this.done = true;
    this.#settleBreaker(error, true);
    this.#release();
    this.#report(error);
  }

  /** Aborts the dispatcher's request now, or as soon as it starts. */
  protected abstract abortRequest(reason: Error): void;

  /** Hands the request to the dispatcher. */
  protected abstract dispatch(opts: DispatchOptions): void;

  // --- Inside -------------------------------------------------------------------------------------

  /** Holds a slot (or needs none): starts the attempt timeout and sends the request. */
  #send(): void {
    try {
      const timeout = this.plan.timeout;
      if (timeout !== null) this.#armTimeout(timeout);
      this.#sentAt = this.ex.dispatchTime;
      this.dispatch(this.#opts!);
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  #armTimeout(timeout: AttemptTimeout): void {
    const override = this.ex.overrides?.attemptTimeout;
    // Checked per request, as it comes per request: a bad value fails this request, naming it.
    this.#timeoutMs = override === undefined ? timeout.ms : duration('breakwater.attemptTimeout', override);
    timeout.queue.start(this, this.ex.dispatchTime, this.#timeoutMs);
  }

  /** Ends the attempt with an error decided here (open circuit, full bulkhead, timeout, a throw). */
  #fail(error: Error): void {
    if (this.#end(error, true)) this.#report(error);
  }

  /**
   * Ends the attempt before the dispatcher did: the breaker hears, what it held is released, and
   * the dispatcher's request is aborted. False when it had ended already.
   */
  #end(reason: Error, fromInside: boolean): boolean {
    if (this.done) return false;
    this.done = true;
    this.endReason = reason;
    this.#settleBreaker(reason, fromInside);
    // Abort before the slot is freed, so the waiter it admits finds the socket already released.
    this.abortRequest(reason);
    this.#release();
    return true;
  }

  #report(error: Error): void {
    const phase = this.phase;
    this.phase = 'finished';
    if (phase === 'waiting') this.run.attemptFailed(error);
    else if (phase === 'forwarded') this.run.forwardError(error);
  }

  /**
   * Tells the breaker how an attempt that ended without headers went: a failure if the upstream
   * failed it, else its probe back. `fromInside`: the error came from the request (or a stage
   * after the breaker), so a timeout of any scope bounded this very attempt.
   */
  #settleBreaker(error: Error, fromInside: boolean): void {
    if (this.#breakerSettled) return;
    this.#breakerSettled = true;
    if (isUpstreamFailure(error, fromInside)) this.#breaker!.recordFailure(policyNow(), this.#probe);
    else this.#breaker!.releaseProbe(this.#probe);
  }

  /** Frees the timer, the slot or queue place, and a probe nobody reported on. Called once, behind `done`. */
  #release(): void {
    if (!this.#breakerSettled) {
      this.#breakerSettled = true;
      this.#breaker!.releaseProbe(this.#probe);
    }
    this.#clearTimer();
    if (this.#holdsSlot) {
      this.#holdsSlot = false;
      this.#slots!.release();
    } else if (this.queued) {
      // Aborted or timed out while waiting: leave the queue now, not when reaching its front.
      this.#slots!.leave(this);
    }
  }

  #clearTimer(): void {
    this.plan.timeout?.queue.stop(this);
  }

  #recordAttempt(kind: StatusClass, now: number): void {
    this.#attemptRecorded = true;
    const ex = this.ex;
    ex.observer?.attemptFinished(ex.method, kind, (now - this.#sentAt) / 1000);
  }
}

/**
 * The attempt as undici 7's core calls it: the legacy API (onConnect, onHeaders, …), so the core
 * needs no UnwrapHandler, with raw headers left unparsed until someone reads them (lazy-headers.ts).
 */
class LegacyCoreAttempt extends FusedAttempt {
  #abort: ((reason?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  /** The dispatcher's controller, when this attempt had to go through a CurrentApiPort. */
  #port: Controller | null = null;

  override pause(): void {
    this.isPaused = true;
    // The legacy core hears a pause from the next callback's return value; a port's at once.
    this.#port?.pause();
  }

  override resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    if (this.#port !== null) this.#port.resume();
    else this.#resume?.();
  }

  onConnect(abort: (reason?: Error) => void): void {
    this.#abort = abort;
    if (this.endReason !== null) abort(this.endReason);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.#resume = resume;
    this.rawHeaders = rawHeaders;
    this.headersArrived(statusCode, UNPARSED, statusText);
    return !this.isPaused;
  }

  onData(chunk: Buffer): boolean {
    this.dataArrived(chunk);
    return !this.isPaused;
  }

  onComplete(rawTrailers: Buffer[] | string[] | null): void {
    this.rawTrailers = (rawTrailers as Buffer[] | null) ?? null;
    this.completed(UNPARSED);
  }

  onError(error: Error): void {
    this.failed(error);
  }

  protected abortRequest(reason: Error): void {
    if (this.#port !== null) this.#port.abort(reason);
    else this.#abort?.(reason);
  }

  protected dispatch(opts: DispatchOptions): void {
    const core = this.plan.core;
    if (core.legacy) {
      try {
        core.dispatch(opts, this as unknown as Handler);
        return;
      } catch (err) {
        if (!rejectsLegacyHandlers(err)) throw err;
        core.legacy = false;
      }
    }
    // This dispatcher wants the current API; later attempts are CurrentCoreAttempts, this one
    // goes through a translation.
    core.dispatch(opts, new CurrentApiPort(this));
  }

  // For CurrentApiPort: the same callbacks in the current API's terms.
  portStarted(controller: Controller): void {
    this.#port = controller;
    if (this.endReason !== null) controller.abort(this.endReason);
    else if (this.isPaused) controller.pause();
  }

  portHeaders(controller: Controller, statusCode: number, headers: Headers, statusMessage: string): void {
    this.rawHeaders = (controller.rawHeaders as Buffer[] | null | undefined) ?? null;
    this.headersArrived(statusCode, headers, statusMessage);
  }

  portData(chunk: Buffer): void {
    this.dataArrived(chunk);
  }

  portEnd(controller: Controller, trailers: Headers): void {
    this.rawTrailers = (controller.rawTrailers as Buffer[] | null | undefined) ?? null;
    this.completed(trailers);
  }

  portError(error: Error): void {
    this.failed(error);
  }
}

/** Presents a LegacyCoreAttempt to a dispatcher that takes only the current API. */
class CurrentApiPort implements Handler {
  readonly #attempt: LegacyCoreAttempt;

  constructor(attempt: LegacyCoreAttempt) {
    this.#attempt = attempt;
  }

  onRequestStart(controller: Controller): void {
    this.#attempt.portStarted(controller);
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    this.#attempt.portHeaders(controller, statusCode, headers, statusMessage ?? '');
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    this.#attempt.portData(chunk);
  }

  onResponseEnd(controller: Controller, trailers: Headers): void {
    this.#attempt.portEnd(controller, trailers);
  }

  onResponseError(_controller: Controller, error: Error): void {
    this.#attempt.portError(error);
  }
}

/** The attempt as undici 8's core calls it: the current API, with undici's own controller. */
class CurrentCoreAttempt extends FusedAttempt implements Handler {
  #request: Controller | null = null;

  override pause(): void {
    this.isPaused = true;
    this.#request?.pause();
  }

  override resume(): void {
    this.isPaused = false;
    this.#request?.resume();
  }

  onRequestStart(controller: Controller): void {
    this.#request = controller;
    if (this.endReason !== null) controller.abort(this.endReason);
    else if (this.isPaused) controller.pause();
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    this.rawHeaders = (controller.rawHeaders as Buffer[] | null | undefined) ?? null;
    this.headersArrived(statusCode, headers, statusMessage ?? '');
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    this.dataArrived(chunk);
  }

  onResponseEnd(controller: Controller, trailers: Headers): void {
    this.rawTrailers = (controller.rawTrailers as Buffer[] | null | undefined) ?? null;
    this.completed(trailers);
  }

  onResponseError(_controller: Controller, error: Error): void {
    this.failed(error);
  }

  protected abortRequest(reason: Error): void {
    this.#request?.abort(reason);
  }

  protected dispatch(opts: DispatchOptions): void {
    this.plan.core.dispatch(opts, this);
  }
}

/** Makes the attempts of a run in the API its dispatcher speaks. */
export function newFusedAttempt(plan: AttemptPlan, run: RetryHandler, ex: Exchange): RetryAttempt {
  return plan.core.legacy ? new LegacyCoreAttempt(run, ex, plan) : new CurrentCoreAttempt(run, ex, plan);
}
