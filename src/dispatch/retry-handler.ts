import { ResilienceError, TimeoutError } from '../errors.js';
import { isReplayableBody } from '../http/body.js';
import { isCallerAbort, isConnectFailure, isTransientNetworkError } from '../http/classify.js';
import { isReplayableHeaders } from '../http/headers.js';
import { hasIdempotencyKey } from '../http/idempotency.js';
import { parseRetryAfter } from '../http/retry-after.js';
import { policyNow, policyTime } from '../internal/clock.js';
import { integer, MAX_TIMER_MS } from '../internal/validate.js';
import type { BackoffStep } from '../policies/backoff.js';
import type { GiveUpReason, RetryStage } from '../policies/retry.js';
import type { RetryBudget } from '../policies/retry-budget.js';
import type { Exchange, Layer } from './exchange.js';
import { resolveHeaders } from './lazy-headers.js';
import type { RetryReason } from './observer.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/** What a discarded response may cost us in bytes before we drop its socket instead of draining it. */
const DRAIN_LIMIT = 64 * 1024;
/** …and in time: a discarded response still arriving after this long has its socket dropped. */
const DRAIN_TIME_LIMIT = 100;
const EMPTY_CONTEXT = Object.freeze({});

/** Why a discarded attempt's socket was dropped; never seen by the caller. */
class DiscardedAttemptError extends Error {
  constructor() {
    super('breakwater: discarded a response that was being retried');
  }
}

type AttemptPhase = 'waiting' | 'forwarded' | 'draining' | 'finished';

/**
 * One attempt of a retried request. It decides nothing: it reports to its RetryHandler, which
 * either forwards the response to the caller or keeps it and drains it. Only the forwarded
 * attempt ever reaches the caller's handler.
 */
class AttemptHandler implements Handler {
  readonly run: RetryHandler;
  controller: Controller | null = null;
  phase: AttemptPhase = 'waiting';
  drained = 0;
  /** Set when the attempt had to be aborted before its controller existed. */
  pendingAbort: Error | null = null;

  constructor(run: RetryHandler) {
    this.run = run;
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
 */
class RetryHandler implements Controller {
  readonly #outer: Handler;
  readonly #opts: DispatchOptions;
  readonly #ex: Exchange;
  readonly #next: Layer;
  readonly #stage: RetryStage;
  readonly #budget: RetryBudget | null;
  readonly #maxAttempts: number;
  #attempt: AttemptHandler | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** performance.now() at which the scheduled attempt is due. */
  #retryAt = 0;
  #step: BackoffStep | null = null;
  #done = false;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;

  constructor(outer: Handler, opts: DispatchOptions, ex: Exchange, next: Layer, stage: RetryStage) {
    this.#outer = outer;
    this.#opts = opts;
    this.#ex = ex;
    this.#next = next;
    this.#stage = stage;
    this.#budget = stage.budgets === null ? null : stage.budgets.get(ex.key);
    const overrides = ex.overrides;
    this.#maxAttempts =
      overrides?.maxAttempts === undefined
        ? stage.maxAttempts
        : integer('breakwater.maxAttempts', overrides.maxAttempts, 1);
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
    const error = reason ?? new Error('aborted');
    this.#aborted = true;
    this.#reason = error;
    this.#done = true;
    // Cancels a backoff at once: cockatiel's retry sleep would ignore the signal, ours is a timer we own.
    this.#clearTimer();
    this.#attempt?.abort(error);
    this.#outer.onResponseError?.(this, error);
  }

  pause(): void {
    this.#paused = true;
    this.#attempt?.controller?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#attempt?.controller?.resume();
  }

  // --- Reports from the current attempt -----------------------------------------------------------

  attemptResponded(
    attempt: AttemptHandler,
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
    this.#done = true;
    this.#outer.onResponseError?.(this, withAttempts(error, this.#ex.attempt));
  }

  forwardData(chunk: Buffer): void {
    if (!this.#done) this.#outer.onResponseData?.(this, chunk);
  }

  forwardEnd(trailers: Headers): void {
    if (this.#done) return;
    this.#done = true;
    this.#outer.onResponseEnd?.(this, trailers);
  }

  forwardError(error: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#outer.onResponseError?.(this, error);
  }

  /** Fired by the backoff timer. */
  retryNow(): void {
    this.#timer = null;
    if (this.#done) return;
    // A discarded response still draining by now is not worth waiting for.
    const previous = this.#attempt;
    if (previous !== null && previous.phase === 'draining') previous.abort(new DiscardedAttemptError());
    const now = performance.now();
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
    const attempt = new AttemptHandler(this);
    this.#attempt = attempt;
    const factory = ex.overrides?.body;
    const opts =
      factory !== undefined && (ex.attempt > 1 || this.#opts.body == null)
        ? { ...this.#opts, body: factory() }
        : this.#opts;
    try {
      this.#next(opts, attempt, ex);
    } catch (err) {
      attempt.phase = 'finished';
      this.attemptFailed(err as Error);
    }
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
    if (performance.now() + delay >= ex.deadline) return this.#giveUp('deadline', statusCode, error);
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
    this.#retryAt = performance.now() + delay;
    // A discarded response gets a short while to finish draining, so its connection can be
    // reused; past that its slot and socket are worth more than the connection.
    const draining = this.#attempt?.phase === 'draining';
    // Not unref'd, unlike every other timer here: during a backoff nothing else may keep the
    // process alive (undici unrefs idle sockets), and a process that exits mid-retry loses the
    // request silently. The timer is cleared whenever the request settles, aborts or is destroyed.
    this.#timer = setTimeout(fireRetry, draining ? Math.min(delay, DRAIN_TIME_LIMIT) : delay, this);
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
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

export function retryLayer(stage: RetryStage, next: Layer): Layer {
  return function retryStep(opts, handler, ex) {
    new RetryHandler(handler, opts, ex, next, stage).start();
  };
}
