// One attempt of a request: it passes the gates after the retry stage, is sent to the dispatcher
// as the handler undici calls, and reports its response or failure to its exchange. Also how a
// discarded response is drained.

import { statusClass } from '../http/classify.js';
import { requestHeader } from '../http/headers.js';
import { monotonicNow } from '../internal/clock.js';
import { DeadlineQueue } from '../internal/deadline-queue.js';
import { type AttemptEndMessage, type AttemptStartMessage, channels } from '../telemetry/channels.js';
import type { CoreLink } from './core-link.js';
import { type Exchange, errorKind } from './exchange.js';
import { headerValue, UNPARSED } from './lazy-headers.js';
import type { OriginObserver, StatusClass } from './observer.js';
import { Passage, type Step, type TimeoutStep } from './passage.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/**
 * How much of a discarded response (one the retry stage will repeat) is read so that its
 * connection can be reused: at most this many bytes, for at most DRAIN_TIME ms. Reading a small
 * error body costs less than the TCP (and TLS) handshake a dropped socket costs the next request;
 * a large or slow one costs more, and its socket is dropped instead. The drain runs apart from the
 * request: it holds no bulkhead slot and delays no retry.
 */
export const DRAIN_LIMIT = 256 * 1024;
export const DRAIN_TIME = 1_000;
const drainDeadlines = new DeadlineQueue(DRAIN_TIME);

/** Why a discarded attempt's socket was dropped; never seen by the caller. */
export class DiscardedAttemptError extends Error {
  constructor() {
    super('breakwater: dropped a discarded response that was too large or too slow to drain');
  }
}

/**
 * - `gating`: passing the gates after the retry stage (breaker, bulkhead, attempt timeout).
 * - `sent`: with the dispatcher, no final response headers yet.
 * - `forwarded`: chosen as the answer; its response goes to the caller.
 * - `discarded`: its response will not be used; the body drains in the background.
 * - `finished`: nothing more to do.
 */
export type AttemptPhase = 'gating' | 'sent' | 'forwarded' | 'discarded' | 'finished';

/**
 * One attempt of a request: the ticket its gates see and the handler the dispatcher calls. It
 * passes the gates after the retry stage, is sent, and reports to its Exchange, which decides
 * whether its response is the answer. It is the controller the Exchange pauses, resumes and reads
 * raw headers from. The two subclasses speak the dispatcher's handler API: undici 7's legacy one
 * or the current one.
 */
abstract class Attempt extends Passage implements Controller {
  readonly exchange: Exchange;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** Sent while an earlier attempt still waited for headers. */
  readonly hedge: boolean;
  phase: AttemptPhase = 'gating';
  /** The next in the exchange's list of unfinished attempts. */
  nextAttempt: Attempt | null = null;
  rawHeaders: Buffer[] | null = null;
  rawTrailers: Buffer[] | null = null;
  protected isPaused: boolean;
  /** Why it ended early; the dispatcher's request is aborted with it. */
  protected endReason: Error | null = null;
  readonly #opts: DispatchOptions;
  /** The final response's headers, as the dispatcher gave them (maybe the UNPARSED marker). */
  #responseHeaders: Headers | null = null;
  #recorded = false;
  #drained = 0;

  constructor(
    exchange: Exchange,
    number: number,
    steps: readonly Step[],
    opts: DispatchOptions,
    now: number,
    hedge: boolean,
  ) {
    super(steps);
    this.exchange = exchange;
    this.attempt = number;
    this.hedge = hedge;
    this.#opts = opts;
    this.time = now;
    this.isPaused = exchange.paused;
  }

  get key(): string {
    return this.exchange.key;
  }

  get method(): string {
    return this.exchange.method;
  }

  get requestId(): number {
    return this.exchange.requestId;
  }

  get observer(): OriginObserver | undefined {
    return this.exchange.observer;
  }

  protected get core(): CoreLink {
    return this.exchange.core;
  }

  protected get failureStatus(): readonly boolean[] {
    return this.exchange.failureStatus;
  }

  header(name: string): string | undefined {
    return requestHeader(this.#opts.headers, name);
  }

  responseHeader(name: string): string | undefined {
    const headers = this.#responseHeaders;
    return headers === null ? undefined : headerValue(this, headers, name);
  }

  // --- Controller ---------------------------------------------------------------------------------

  get aborted(): boolean {
    return this.endReason !== null;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get reason(): Error | null {
    return this.endReason;
  }

  /** Still waiting for its gates or its response headers. */
  get waiting(): boolean {
    return this.phase === 'gating' || this.phase === 'sent';
  }

  /** Ended from outside: the caller aborted, the total deadline passed, another attempt won. Nothing is reported back. */
  abort(reason: Error): void {
    if (this.phase === 'discarded') {
      this.#endDrain(reason);
      return;
    }
    this.phase = 'finished';
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    // Abort before the gates let go, so a queued request admitted by the freed slot finds the
    // socket already released.
    this.abortRequest(reason);
    this.releaseSteps(reason, -1);
  }

  abstract pause(): void;
  abstract resume(): void;

  // --- Passage ------------------------------------------------------------------------------------

  start(): void {
    this.proceed();
  }

  protected timeoutMs(step: TimeoutStep): number {
    return this.exchange.timeoutMs(step, this.time);
  }

  /** Past its gates: hand the request to the dispatcher. `time` stays the send time until headers. */
  protected passed(): void {
    this.phase = 'sent';
    if (channels.attemptStart.hasSubscribers) {
      const message: AttemptStartMessage = {
        requestId: this.requestId,
        key: this.key,
        method: this.method,
        attempt: this.attempt,
        hedge: this.hedge,
      };
      channels.attemptStart.publish(message);
    }
    try {
      if (!this.dispatch(this.#opts)) this.exchange.innerBusy = true;
    } catch (err) {
      this.failed(err as Error);
    }
  }

  /** A gate refused it or a timeout after the retry stage fired. */
  protected fail(error: Error, atStep: number): void {
    if (this.ended) return;
    this.ended = true;
    this.endReason = error;
    this.abortRequest(error);
    this.releaseSteps(error, atStep);
    this.#report(error);
  }

  // --- Decided by the exchange ----------------------------------------------------------------------

  /** This response is the answer: from now on it flows to the caller. */
  forward(): void {
    this.phase = 'forwarded';
  }

  /**
   * This response will not be used. The gates let go now (the slot is free for others at once);
   * the body drains in the background, bounded in bytes and time, so the connection can be reused.
   */
  discard(): void {
    this.phase = 'discarded';
    this.ended = true;
    this.releaseSteps(null, Number.POSITIVE_INFINITY);
    drainDeadlines.add(this, monotonicNow());
  }

  override expire(): void {
    if (this.phase === 'discarded') this.#endDrain(new DiscardedAttemptError());
    else super.expire();
  }

  // --- What the dispatcher reports, in either API ---------------------------------------------------

  protected headersArrived(statusCode: number, headers: Headers, statusMessage: string): void {
    // An informational response (103 Early Hints, 100 Continue) is not the answer: it goes to the
    // caller as information, as undici passes it, and is neither classified nor counted.
    if (statusCode < 200 && statusCode !== 101) {
      if (this.phase === 'sent') this.exchange.attemptInformed(this, statusCode, headers, statusMessage);
      return;
    }
    // One clock reading serves the attempt's duration and the gates (internal/clock.ts says what
    // a reading costs).
    const now = monotonicNow();
    if (!this.#recorded) this.#record(statusClass(statusCode), now, statusCode, undefined);
    if (this.ended || this.phase !== 'sent') return;
    const waited = now - this.time;
    this.#responseHeaders = headers;
    this.responded(statusCode, now);
    this.exchange.attemptResponded(this, statusCode, headers, statusMessage, waited);
  }

  protected dataArrived(chunk: Buffer): void {
    if (this.phase === 'forwarded') {
      this.exchange.forwardData(chunk);
    } else if (this.phase === 'discarded') {
      this.#drained += chunk.length;
      if (this.#drained > DRAIN_LIMIT) this.#endDrain(new DiscardedAttemptError());
    }
  }

  protected completed(trailers: Headers): void {
    const phase = this.phase;
    if (phase === 'discarded') {
      this.#endDrain(null);
      return;
    }
    if (this.ended) return;
    this.ended = true;
    this.phase = 'finished';
    this.releaseSteps(null, Number.POSITIVE_INFINITY);
    if (phase === 'forwarded') this.exchange.forwardEnd(trailers);
  }

  protected failed(error: Error): void {
    if (!this.#recorded) this.#record(errorKind(error), -1, 0, error);
    if (this.phase === 'discarded') {
      this.#endDrain(null);
      return;
    }
    if (this.ended) return;
    this.ended = true;
    this.releaseSteps(error, Number.POSITIVE_INFINITY);
    this.#report(error);
  }

  /** Aborts the dispatcher's request now, or as soon as it starts. */
  protected abstract abortRequest(reason: Error): void;

  /** Hands the request to the dispatcher; false when it asks for a pause until its 'drain'. */
  protected abstract dispatch(opts: DispatchOptions): boolean;

  // --- Inside -------------------------------------------------------------------------------------

  #report(error: Error): void {
    const phase = this.phase;
    this.phase = 'finished';
    if (phase === 'forwarded') this.exchange.forwardError(error);
    else this.exchange.attemptFailed(this, error);
  }

  /** The drain is over: finished (`reason` null) or cut short (its socket is dropped). */
  #endDrain(reason: Error | null): void {
    if (this.phase !== 'discarded') return;
    this.phase = 'finished';
    drainDeadlines.stop(this);
    if (reason !== null) {
      this.endReason = reason;
      this.abortRequest(reason);
    }
    this.exchange.attemptFinished(this);
  }

  /**
   * Reports the attempt's end once, to the metrics and to `breakwater:attempt:end` subscribers:
   * its headers (`statusCode`) or its failure (`error`). `now` is -1 when not read yet.
   */
  #record(kind: StatusClass, now: number, statusCode: number, error: Error | undefined): void {
    const record = this.core.record;
    const publish = channels.attemptEnd.hasSubscribers;
    if (!record && !publish) return;
    this.#recorded = true;
    const ms = (now < 0 ? monotonicNow() : now) - this.time;
    if (record) {
      this.observer?.attemptFinished(this.method, kind, ms / 1000, statusCode, error ?? null);
    }
    if (publish) {
      const message: AttemptEndMessage = {
        requestId: this.requestId,
        key: this.key,
        method: this.method,
        attempt: this.attempt,
        hedge: this.hedge,
        durationMs: ms,
      };
      if (error === undefined) message.statusCode = statusCode;
      else message.error = error;
      channels.attemptEnd.publish(message);
    }
  }
}

/**
 * The attempt as undici 7's core calls it: the legacy API (onConnect, onHeaders, …), so the core
 * needs no UnwrapHandler, with raw headers left unparsed until someone reads them (lazy-headers.ts).
 */
class LegacyCoreAttempt extends Attempt {
  #abort: ((reason?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  /** The dispatcher's controller, when this attempt had to go through a CurrentApiPort. */
  #port: Controller | null = null;

  pause(): void {
    this.isPaused = true;
    // The legacy core hears a pause from the next callback's return value; a port's at once.
    this.#port?.pause();
  }

  resume(): void {
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

  protected dispatch(opts: DispatchOptions): boolean {
    const core = this.core;
    if (core.legacy) {
      try {
        return core.dispatch(opts, this as unknown as Handler);
      } catch (err) {
        if (!core.refusedLegacy(err, this.#abort !== null)) throw err;
      }
    }
    // This dispatcher wants the current API: later attempts are CurrentCoreAttempts, this one
    // goes through a translation.
    return core.dispatch(opts, new CurrentApiPort(this));
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
class CurrentCoreAttempt extends Attempt implements Handler {
  #request: Controller | null = null;

  pause(): void {
    this.isPaused = true;
    this.#request?.pause();
  }

  resume(): void {
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

  protected dispatch(opts: DispatchOptions): boolean {
    return this.core.dispatch(opts, this);
  }
}

export type { Attempt };

/** Makes an attempt in the handler API its dispatcher speaks. */
export function newAttempt(
  exchange: Exchange,
  number: number,
  steps: readonly Step[],
  opts: DispatchOptions,
  now: number,
  hedge: boolean,
): Attempt {
  return exchange.core.legacy
    ? new LegacyCoreAttempt(exchange, number, steps, opts, now, hedge)
    : new CurrentCoreAttempt(exchange, number, steps, opts, now, hedge);
}
