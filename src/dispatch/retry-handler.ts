import { ResilienceError, TimeoutError } from '../errors.js';
import { isReplayableBody } from '../http/body.js';
import { isCallerAbort, isConnectFailure, isTransientNetworkError } from '../http/classify.js';
import { isReplayableHeaders } from '../http/headers.js';
import { hasIdempotencyKey } from '../http/idempotency.js';
import { parseRetryAfter } from '../http/retry-after.js';
import { monotonicNow, policyNow, policyTime } from '../internal/clock.js';
import type { Deadline, DeadlineQueue } from '../internal/deadline-queue.js';
import { duration, integer, MAX_TIMER_MS } from '../internal/validate.js';
import type { BackoffStep } from '../policies/backoff.js';
import type { GiveUpReason, RetryStage } from '../policies/retry.js';
import type { RetryBudget } from '../policies/retry-budget.js';
import type { Exchange, Layer } from './exchange.js';
import { resolveHeaders } from './lazy-headers.js';
import type { RetryReason } from './observer.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/** What a discarded response may cost us in bytes before we drop its socket instead of draining it. */
export const DRAIN_LIMIT = 64 * 1024;
/** …and in time: a discarded response still arriving after this long has its socket dropped. */
const DRAIN_TIME_LIMIT = 100;
const EMPTY_CONTEXT = Object.freeze({});

/** Why a discarded attempt's socket was dropped; never seen by the caller. */
export class DiscardedAttemptError extends Error {
  constructor() {
    super('breakwater: discarded a response that was being retried');
  }
}

export type AttemptPhase = 'waiting' | 'forwarded' | 'draining' | 'finished';

/**
 * One attempt as its run sees it, however it is built: a handler in front of the stages inside the
 * retry stage (AttemptHandler), or the fused attempt of the standard shape (fused-attempt.ts). It
 * decides nothing; it reports to its RetryHandler, which forwards the response to the caller or
 * keeps it and drains it.
 */
export interface RetryAttempt {
  phase: AttemptPhase;
  /** What the run pauses, resumes and reads raw headers from once the attempt has started. */
  readonly controller: Controller | null;
  /** Sends the attempt; a failure, even a synchronous one, is reported to the run. */
  start(opts: DispatchOptions): void;
  /** Ends the attempt from outside (caller, deadline, a drain cut short); nothing is reported back. */
  abort(reason: Error): void;
}

/** Makes each attempt of a run. */
export type AttemptFactory = (run: RetryHandler, ex: Exchange) => RetryAttempt;

/**
 * A total timeout that the run keeps itself instead of a timeout stage around it: the fused
 * standard shape saves a handler per request this way. One per runtime (each dispatcher the
 * pipeline wraps).
 */
export interface RunTimeout {
  ms: number;
  untilHeaders: boolean;
  /** The stage's shared deadlines (a request with its own duration gets a timer from it). */
  queue: DeadlineQueue;
}

/**
 * One attempt of a retried request, sent through the stages inside the retry stage. Only the
 * forwarded attempt ever reaches the caller's handler.
 */
class AttemptHandler implements Handler, RetryAttempt {
  readonly run: RetryHandler;
  readonly #ex: Exchange;
  readonly #next: Layer;
  controller: Controller | null = null;
  phase: AttemptPhase = 'waiting';
  drained = 0;
  /** Set when the attempt had to be aborted before its controller existed. */
  pendingAbort: Error | null = null;

  constructor(run: RetryHandler, ex: Exchange, next: Layer) {
    this.run = run;
    this.#ex = ex;
    this.#next = next;
  }

  start(opts: DispatchOptions): void {
    this.#next(opts, this, this.#ex);
  }

  abort(reason: Error): void {
    this.phase = 'finished';
    if (this.controller === null) this.pendingAbort = reason;
    else this.controller.abort(reason);
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.pendingAbort !== null) controller.abort(this.pendingAbort);
    else if (this.run.paused) controller.pause();
  }

  onResponseStart(
    _controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    if (this.phase === 'waiting') this.run.attemptResponded(this, statusCode, headers, statusMessage);
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    if (this.phase === 'forwarded') {
      this.run.forwardData(chunk);
    } else if (this.phase === 'draining') {
      // Reading the rest of a small error body lets the connection be reused; a large one is
      // cheaper to drop with its socket.
      this.drained += chunk.length;
      if (this.drained > DRAIN_LIMIT) this.abort(new DiscardedAttemptError());
    }
  }

  onResponseEnd(_controller: Controller, trailers: Headers): void {
    if (this.phase === 'forwarded') this.run.forwardEnd(trailers);
    this.phase = 'finished';
  }

  onResponseError(_controller: Controller, error: Error): void {
    const phase = this.phase;
    this.phase = 'finished';
    if (phase === 'waiting') this.run.attemptFailed(error);
    else if (phase === 'forwarded') this.run.forwardError(error);
  }
}

/**
 * Runs a request as a sequence of attempts. A retry is decided only before anything reached the
 * caller: on an error before response headers, or on headers with a retryable status. Once
 * headers went downstream that attempt is the answer (no retry after the first byte).
 *
 * With a RunTimeout it is also the total timeout around itself, with a timeout stage's behaviour:
 * the deadline bounds backoff and attempts, and when it passes the attempt is aborted and the
 * caller gets TimeoutError.
 */
export class RetryHandler implements Controller, Deadline {
  // The run's place in its RunTimeout's queue of deadlines (Deadline).
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  readonly #outer: Handler;
  readonly #opts: DispatchOptions;
  readonly #ex: Exchange;
  readonly #stage: RetryStage;
  readonly #newAttempt: AttemptFactory;
  readonly #budget: RetryBudget | null;
  readonly #maxAttempts: number;
  readonly #total: RunTimeout | null;
  /** The total timeout's milliseconds for this request (0 without one). */
  readonly #totalMs: number = 0;
  #attempt: RetryAttempt | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Monotonic ms (internal/clock.ts) at which the scheduled attempt is due. */
  #retryAt = 0;
  #step: BackoffStep | null = null;
  #done = false;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;

  constructor(
    outer: Handler,
    opts: DispatchOptions,
    ex: Exchange,
    stage: RetryStage,
    newAttempt: AttemptFactory,
    total: RunTimeout | null,
  ) {
    this.#outer = outer;
    this.#opts = opts;
    this.#ex = ex;
    this.#stage = stage;
    this.#newAttempt = newAttempt;
    this.#budget = stage.budgets === null ? null : stage.budgets.get(ex.key);
    const overrides = ex.overrides;
    // Per-request overrides are checked before anything is armed: a bad one fails this request.
    this.#maxAttempts =
      overrides?.maxAttempts === undefined
        ? stage.maxAttempts
        : integer('breakwater.maxAttempts', overrides.maxAttempts, 1);
    this.#total = total;
    if (total !== null) {
      const override = overrides?.totalTimeout;
      this.#totalMs = override === undefined ? total.ms : duration('breakwater.totalTimeout', override);
      const now = ex.dispatchTime;
      total.queue.start(this, now, this.#totalMs);
      const deadline = now + this.#totalMs;
      if (deadline < ex.deadline) ex.deadline = deadline;
    }
  }

  start(): void {
    this.#outer.onRequestStart?.(this, EMPTY_CONTEXT);
    if (this.#done) return;
    this.#budget?.recordRequest(policyTime(this.#ex.dispatchTime));
    this.#launch();
  }

  // --- Controller, used by the outer stage or the caller ------------------------------------------

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  get rawHeaders(): Controller['rawHeaders'] {
    return this.#attempt?.controller?.rawHeaders;
  }

  get rawTrailers(): Controller['rawTrailers'] {
    return this.#attempt?.controller?.rawTrailers;
  }

  abort(reason?: Error): void {
    if (this.#done) return;
    this.#aborted = true;
    this.#end(reason ?? new Error('aborted'));
  }

  pause(): void {
    this.#paused = true;
    this.#attempt?.controller?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#attempt?.controller?.resume();
  }

  /** The total timeout passed (Deadline). */
  expire(): void {
    if (this.#done) return;
    this.#ex.observer?.timedOut('total');
    this.#end(new TimeoutError('total', this.#totalMs));
  }

  // --- Reports from the current attempt -----------------------------------------------------------

  attemptResponded(
    attempt: RetryAttempt,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    if (this.#done || attempt !== this.#attempt) return;
    if (this.#stage.retryableStatus[statusCode] === true) {
      const retryAfter = resolveHeaders(attempt.controller ?? this, headers)['retry-after'];
      const delay = this.#retryDelay(parseRetryAfter(retryAfter, Date.now()), 'status', statusCode);
      if (delay >= 0) {
        attempt.phase = 'draining';
        this.#schedule(delay, 'status', statusCode, undefined);
        return;
      }
    }
    attempt.phase = 'forwarded';
    if (this.#total?.untilHeaders === true) this.#total.queue.stop(this);
    this.#outer.onResponseStart?.(this, statusCode, headers, statusMessage);
  }

  attemptFailed(error: Error): void {
    if (this.#done) return;
    const reason = failureKind(error);
    if (reason !== null) {
      // A request that never left (refused, connect timeout) is safe to repeat whatever its method.
      const unsafe = this.#unsafeToRepeat(reason === 'network' && isConnectFailure(error));
      const delay =
        unsafe === null
          ? this.#retryDelay(undefined, reason, undefined, error)
          : this.#giveUp(unsafe, undefined, error);
      if (delay >= 0) {
        this.#schedule(delay, reason, undefined, error);
        return;
      }
    }
    this.#finish();
    this.#outer.onResponseError?.(this, withAttempts(error, this.#ex.attempt));
  }

  forwardData(chunk: Buffer): void {
    if (!this.#done) this.#outer.onResponseData?.(this, chunk);
  }

  forwardEnd(trailers: Headers): void {
    if (this.#done) return;
    this.#finish();
    this.#outer.onResponseEnd?.(this, trailers);
  }

  forwardError(error: Error): void {
    if (this.#done) return;
    this.#finish();
    this.#outer.onResponseError?.(this, error);
  }

  /** Fired by the backoff timer. */
  retryNow(): void {
    this.#timer = null;
    if (this.#done) return;
    // A discarded response still draining by now is not worth waiting for.
    const previous = this.#attempt;
    if (previous !== null && previous.phase === 'draining') previous.abort(new DiscardedAttemptError());
    const now = monotonicNow();
    const remaining = this.#retryAt - now;
    if (remaining >= 1) {
      this.#timer = setTimeout(fireRetry, remaining, this);
      return;
    }
    this.#ex.dispatchTime = now;
    this.#launch();
  }

  // --- Decisions ----------------------------------------------------------------------------------

  #launch(): void {
    const ex = this.#ex;
    ex.attempt++;
    const attempt = this.#newAttempt(this, ex);
    this.#attempt = attempt;
    const factory = ex.overrides?.body;
    const opts =
      factory !== undefined && (ex.attempt > 1 || this.#opts.body == null)
        ? { ...this.#opts, body: factory() }
        : this.#opts;
    try {
      attempt.start(opts);
    } catch (err) {
      attempt.phase = 'finished';
      this.attemptFailed(err as Error);
    }
  }

  /**
   * Ends the run with `error` decided outside the attempt (the caller's abort, the total timeout):
   * the attempt is aborted first, so its socket is already being released when the caller hears.
   */
  #end(error: Error): void {
    this.#reason = error;
    this.#finish();
    this.#attempt?.abort(error);
    this.#outer.onResponseError?.(this, error);
  }

  /** Marks the run done and clears its timers: backoff and total timeout. Every ending comes here. */
  #finish(): void {
    this.#done = true;
    // Cancels a backoff at once: cockatiel's retry sleep would ignore the signal, ours is a timer we own.
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#total?.queue.stop(this);
  }

  /**
   * Why repeating this request is unsafe, or null when it is safe. Worked out when a repeat is
   * considered rather than for every request: on Node 20 each read of `opts` misses V8's caches
   * (see own-option.ts), and most requests never fail.
   */
  #unsafeToRepeat(neverLeft: boolean): GiveUpReason | null {
    const overrides = this.#ex.overrides;
    // The body can be sent again: absent, bytes, or made afresh by a factory. So must the
    // headers be, even when the request never left: undici has read them already.
    if (overrides?.body === undefined && !isReplayableBody(this.#opts.body)) return 'not-replayable';
    if (!isReplayableHeaders(this.#opts.headers)) return 'not-replayable';
    if (neverLeft) return null;
    // The method, an Idempotency-Key header or the caller's opt-in makes a repeat safe.
    const idempotent =
      this.#stage.methods.has(this.#ex.method) ||
      overrides?.idempotent === true ||
      hasIdempotencyKey(this.#opts.headers);
    return idempotent ? null : 'not-idempotent';
  }

  /**
   * The wait before the next attempt in ms, or -1 when the outcome goes to the caller instead:
   * attempts used up, unsafe to repeat, Retry-After beyond its cap or past the deadline, or
   * the budget spent.
   */
  #retryDelay(
    retryAfter: number | undefined,
    reason: RetryReason,
    statusCode?: number,
    error?: Error,
  ): number {
    const ex = this.#ex;
    if (reason === 'status') {
      const unsafe = this.#unsafeToRepeat(false);
      if (unsafe !== null) return this.#giveUp(unsafe, statusCode, error);
    }
    if (ex.attempt >= this.#maxAttempts) return this.#giveUp('attempts', statusCode, error);
    if (retryAfter !== undefined && retryAfter > this.#stage.maxRetryAfter) {
      return this.#giveUp('retry-after', statusCode, error);
    }
    const step = this.#step === null ? this.#stage.backoff.first() : this.#step.next();
    this.#step = step;
    const delay = Math.min(Math.max(step.delay, retryAfter ?? 0), MAX_TIMER_MS);
    if (monotonicNow() + delay >= ex.deadline) return this.#giveUp('deadline', statusCode, error);
    if (this.#budget !== null && !this.#budget.tryWithdraw(policyNow())) {
      ex.observer?.retryBudgetExhausted();
      return this.#giveUp('budget', statusCode, error);
    }
    return delay;
  }

  #giveUp(reason: GiveUpReason, statusCode: number | undefined, error: Error | undefined): -1 {
    const events = this.#stage.giveUpEvents;
    if (events.hasListeners) {
      events.emit({ key: this.#ex.key, attempts: this.#ex.attempt, reason, statusCode, error });
    }
    return -1;
  }

  #schedule(
    delay: number,
    reason: RetryReason,
    statusCode: number | undefined,
    error: Error | undefined,
  ): void {
    const ex = this.#ex;
    ex.observer?.retryScheduled(reason);
    const events = this.#stage.retryEvents;
    if (events.hasListeners)
      events.emit({ key: ex.key, attempt: ex.attempt, delay, reason, statusCode, error });
    this.#retryAt = monotonicNow() + delay;
    // A discarded response gets a short while to finish draining, so its connection can be
    // reused; past that its slot and socket are worth more than the connection.
    const draining = this.#attempt?.phase === 'draining';
    // Not unref'd, unlike every other timer here: during a backoff nothing else may keep the
    // process alive (undici unrefs idle sockets), and a process that exits mid-retry loses the
    // request silently. The timer is cleared whenever the request settles, aborts or is destroyed.
    this.#timer = setTimeout(fireRetry, draining ? Math.min(delay, DRAIN_TIME_LIMIT) : delay, this);
  }
}

/**
 * The kind of failure if `error` is one a repeat can fix: a transient network error or an attempt
 * timeout. The library's own refusals (bulkhead full, circuit open) are answers, not accidents,
 * and a caller's abort is the caller's decision.
 */
function failureKind(error: Error): RetryReason | null {
  if (error instanceof TimeoutError) return 'timeout';
  if (error instanceof ResilienceError || isCallerAbort(error)) return null;
  return isTransientNetworkError(error) ? 'network' : null;
}

function fireRetry(run: RetryHandler): void {
  run.retryNow();
}

/** Adds the number of attempts made to the error the caller gets, keeping the error itself. */
function withAttempts(error: Error, attempts: number): Error {
  if (typeof error === 'object' && error !== null && Object.isExtensible(error)) {
    (error as Error & { attempts?: number }).attempts = attempts;
  }
  return error;
}

/** The dispatch step of a retry stage whose attempts go through the stages inside it (`next`). */
export function retryLayer(stage: RetryStage, next: Layer): Layer {
  const newAttempt: AttemptFactory = (run, ex) => new AttemptHandler(run, ex, next);
  return function retryStep(opts, handler, ex) {
    new RetryHandler(handler, opts, ex, stage, newAttempt, null).start();
  };
}
