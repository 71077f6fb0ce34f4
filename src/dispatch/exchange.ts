// One logical request as its caller sees it: the controller the caller is handed, the total
// deadline, the attempt policy (retries, hedges, backoff) and the one place the caller's handler
// is called from.

import {
  BulkheadRejectedError,
  CircuitOpenError,
  RateLimitedError,
  ResilienceError,
  TimeoutError,
} from '../errors.js';
import { isReplayableBody } from '../http/body.js';
import {
  errorStatus,
  isCallerAbort,
  isConnectFailure,
  isTransientNetworkError,
  statusClass,
} from '../http/classify.js';
import { isReplayableHeaders } from '../http/headers.js';
import { hasIdempotencyKey } from '../http/idempotency.js';
import { parseRetryAfter } from '../http/retry-after.js';
import { monotonicNow, policyNow, policyTime } from '../internal/clock.js';
import type { Deadline } from '../internal/deadline-queue.js';
import { duration, integer, MAX_TIMER_MS } from '../internal/validate.js';
import { sanitizeOrigin } from '../metrics/labels.js';
import type { BackoffStep } from '../policies/backoff.js';
import type { HedgeClock } from '../policies/hedge.js';
import type { GiveUpReason } from '../policies/retry.js';
import type { RetryBudget } from '../policies/retry-budget.js';
import {
  channels,
  type HedgeMessage,
  nextRequestId,
  type RequestEndMessage,
  type RequestStartMessage,
  type RetryMessage,
} from '../telemetry/channels.js';
import { type Attempt, newAttempt } from './attempt.js';
import type { CoreLink } from './core-link.js';
import { HEDGE_DECLINED, HedgeTimer } from './hedge-timer.js';
import { resolveHeaders, resolveTrailers } from './lazy-headers.js';
import { LegacyHandlerAdapter } from './legacy-handler.js';
import type { OriginObserver, RequestOutcome, RetryReason, StatusClass } from './observer.js';
import { readOption } from './own-option.js';
import type { TimeoutStep } from './passage.js';
import type { Plan } from './plan.js';
import { RequestGates } from './request-gates.js';
import type { Controller, DispatchOptions, Handler, Headers, RequestOverrides } from './types.js';

/** Where an exchange reports that it has settled (the pipeline runtime). */
export interface ExchangeOwner {
  /** The pipeline's compiled plan. */
  readonly plan: Plan;
  /** The dispatcher underneath. */
  readonly core: CoreLink;
  settled(ex: Exchange): void;
}

// How far the request has come to its end.
const LIVE = 0;
/** The answer or the error is decided: nothing more is sent. */
const DONE = 1;
/** The caller has heard it. */
const TOLD = 2;
/** The owner has forgotten it (no attempt drains any more). */
const SETTLED = 3;

const EMPTY_CONTEXT = Object.freeze({});

/**
 * One logical request: the one object that owns it from the caller's dispatch to its last
 * callback. It is
 * - the controller handed to the caller (abort, pause, resume, raw headers);
 * - the holder of the total deadline (a timeout listed first), and of the passage through the
 *   other stages before the retry stage (RequestGates), when the pipeline has any;
 * - the attempt policy: it launches attempts, decides at each response or failure whether it is
 *   the answer or worth another attempt (retryable outcome, safe to repeat, attempts, Retry-After,
 *   deadline, budget), and waits out the backoff;
 * - the one place the caller's handler is called from: exactly one onResponseStart and exactly
 *   one ending, whatever the attempts do.
 *
 * It keeps a list of its unfinished attempts (in flight, or draining a discarded response), so
 * several can be in flight at once and an ending aborts them all.
 */
export class Exchange implements Controller, Deadline {
  // Its place in the total timeout's deadlines (Deadline).
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  readonly key: string;
  readonly method: string;
  #requestId = 0;
  readonly overrides: RequestOverrides | undefined;
  readonly observer: OriginObserver | undefined;
  /** Monotonic ms (internal/clock.ts) when the caller dispatched. */
  readonly startedAt: number;
  /** Monotonic ms by which a total timeout fires; Infinity when none. */
  deadline = Number.POSITIVE_INFINITY;
  /** Attempts launched so far. */
  attempts = 0;
  /**
   * The dispatcher answered an attempt's dispatch() with false (busy: wait for its 'drain'), as
   * the caller's dispatch() returns it. Written by the attempts.
   */
  innerBusy = false;
  // Links of the owner's list of live exchanges, so close()/destroy() can find them.
  livePrev: Exchange | null = null;
  liveNext: Exchange | null = null;

  readonly #opts: DispatchOptions;
  readonly #handler: Handler;
  /** Our own legacy adapter reads the raw headers; any other handler gets them parsed. */
  readonly #wantsParsed: boolean;
  readonly #owner: ExchangeOwner;
  readonly #budget: RetryBudget | null;
  /** Unfinished attempts, newest first. */
  #attempts: Attempt | null = null;
  /** The attempt whose response goes to the caller. */
  #answer: Attempt | null = null;
  /** The attempt whose headers the caller is reading now (raw headers come from it). */
  #reporting: Attempt | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Monotonic ms at which the scheduled attempt is due. */
  #retryAt = 0;
  #step: BackoffStep | null = null;
  #end = LIVE;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;
  /** The final response's status, once the caller has its headers. */
  #status = 0;
  /** The total timeout's milliseconds for this request (0 without one). */
  #totalMs = 0;
  #gates: RequestGates | null = null;
  // Hedging, when the retry stage hedges and this request may be hedged; see #armHedge.
  #hedging = false;
  #hedgeTimer: HedgeTimer | null = null;
  #clock: HedgeClock | null = null;
  /** Monotonic ms when the attempt being hedged was sent. */
  #hedgeFrom = 0;

  constructor(
    owner: ExchangeOwner,
    opts: DispatchOptions,
    method: string,
    overrides: RequestOverrides | undefined,
    key: string,
    observer: OriginObserver | undefined,
    handler: Handler,
    startedAt: number,
  ) {
    const plan = owner.plan;
    this.#opts = opts;
    this.key = key;
    this.method = method;
    this.overrides = overrides;
    this.observer = observer;
    this.#handler = handler;
    this.#wantsParsed = !(handler instanceof LegacyHandlerAdapter);
    this.#owner = owner;
    this.startedAt = startedAt;
    const retry = plan.retry;
    this.#budget = retry === null || retry.budgets === null ? null : retry.budgets.get(key);
    // Checked before anything is armed: a bad override fails this request at once.
    if (retry !== null && overrides?.maxAttempts !== undefined) this.#maxAttempts();
  }

  /** The id the diagnostics channels know this request by, given when first published. */
  get requestId(): number {
    if (this.#requestId === 0) this.#requestId = nextRequestId();
    return this.#requestId;
  }

  /** The caller has its answer (or its error); attempts may still be draining. */
  get done(): boolean {
    return this.#end !== LIVE;
  }

  /** The dispatcher underneath, for the attempts. */
  get core(): CoreLink {
    return this.#owner.core;
  }

  get failureStatus(): readonly boolean[] {
    return this.#owner.plan.failureStatus;
  }

  /**
   * Tells the caller the request started (so its abort reaches us), then enters the gates. Returns
   * what dispatch() returns: false when the dispatcher said it is busy.
   */
  start(): boolean {
    if (channels.requestStart.hasSubscribers) {
      channels.requestStart.publish({
        requestId: this.requestId,
        key: this.key,
        origin: sanitizeOrigin(readOption(this.#opts, 'origin')),
        method: this.method,
      } satisfies RequestStartMessage);
    }
    this.#handler.onRequestStart?.(this, EMPTY_CONTEXT);
    if (this.#end !== LIVE) return !this.innerBusy;
    const plan = this.#owner.plan;
    if (plan.total !== null) {
      try {
        this.#armTotal(plan.total);
      } catch (err) {
        // A bad per-request totalTimeout: this request fails, naming it.
        this.#fail(err as Error, -1);
        return !this.innerBusy;
      }
    }
    if (plan.requestSteps.length === 0) {
      this.gatesPassed(this.startedAt);
    } else {
      this.#gates = new RequestGates(this, plan.requestSteps, this.#opts, this.startedAt);
      this.#gates.start();
    }
    return !this.innerBusy;
  }

  // --- Controller, used by the caller -----------------------------------------------------------

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
    return this.#reporting?.rawHeaders;
  }

  get rawTrailers(): Controller['rawTrailers'] {
    return this.#reporting?.rawTrailers;
  }

  abort(reason?: Error): void {
    if (this.#end !== LIVE) return;
    this.#aborted = true;
    this.#fail(reason ?? new Error('aborted'), -1);
  }

  pause(): void {
    this.#paused = true;
    this.#answer?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#answer?.resume();
  }

  // --- The total deadline and the gates before the retry stage ---------------------------------

  /** The total timeout passed (Deadline). */
  expire(): void {
    if (this.#end !== LIVE) return;
    this.observer?.timedOut('total');
    // Listed first, it is outside every gate: nobody's verdict on the upstream.
    this.#fail(new TimeoutError('total', this.#totalMs), -1);
  }

  /**
   * A timeout step's milliseconds for this request, armed at `now`: the stage's, or the request's
   * own override for its scope, checked when used (it comes per request: a bad value fails this
   * request, naming it). A `total` one also bounds the retries: none is scheduled past it.
   */
  timeoutMs(step: TimeoutStep, now: number): number {
    if (step.scope === 'attempt') {
      const override = this.overrides?.attemptTimeout;
      return override === undefined ? step.ms : duration('breakwater.attemptTimeout', override);
    }
    const override = this.overrides?.totalTimeout;
    const ms = override === undefined ? step.ms : duration('breakwater.totalTimeout', override);
    if (now + ms < this.deadline) this.deadline = now + ms;
    return ms;
  }

  /** Past the gates before the retry stage (at `now`): the first attempt goes. */
  gatesPassed(now: number): void {
    this.#budget?.recordRequest(policyTime(now));
    this.#launch(now, false);
  }

  /** A gate before the retry stage refused, or a timeout among them fired, at step `atStep`. */
  gatesFailed(error: Error, atStep: number): void {
    if (this.#end === LIVE) this.#fail(error, atStep);
  }

  // --- Reports from the attempts ------------------------------------------------------------------

  attemptInformed(attempt: Attempt, statusCode: number, headers: Headers, statusMessage: string): void {
    if (this.#end !== LIVE || this.#answer !== null) return;
    this.#reporting = attempt;
    this.#handler.onResponseStart?.(this, statusCode, this.#parsed(headers), statusMessage);
  }

  /** `waited`: ms from sending the attempt to its headers. */
  attemptResponded(
    attempt: Attempt,
    statusCode: number,
    headers: Headers,
    statusMessage: string,
    waited: number,
  ): void {
    if (this.#end !== LIVE) return;
    const retry = this.#owner.plan.retry;
    if (retry !== null && retry.retryableStatus[statusCode] === true) {
      // Another attempt still in flight decides instead: this one only drains.
      if (this.#hedging && this.#othersWaiting(attempt)) {
        if (attempt.hedge) this.observer?.hedgeFinished('lost');
        attempt.discard();
        return;
      }
      const retryAfter = resolveHeaders(attempt, headers)['retry-after'];
      const delay = this.#retryDelay(parseRetryAfter(retryAfter, Date.now()), 'status', statusCode);
      if (delay >= 0) {
        if (attempt.hedge) this.observer?.hedgeFinished('lost');
        attempt.discard();
        this.#schedule(delay, 'status', statusCode, undefined);
        return;
      }
    }
    this.#answer = attempt;
    this.#reporting = attempt;
    attempt.forward();
    if (this.#hedging) this.#settleHedges(attempt, statusCode, waited);
    this.#status = statusCode;
    if (this.#owner.plan.total?.untilHeaders === true) this.#owner.plan.total.queue.stop(this);
    this.#gates?.respond(attempt, statusCode, attempt.time);
    this.#handler.onResponseStart?.(this, statusCode, this.#parsed(headers), statusMessage);
  }

  attemptFailed(attempt: Attempt, error: Error): void {
    this.#unlink(attempt);
    if (this.#end !== LIVE) return;
    if (this.#hedging) {
      if (error === HEDGE_DECLINED) {
        // Never sent: it is not an attempt, and it costs the budget nothing.
        this.attempts--;
        this.#budget?.refund(policyTime(attempt.time));
        return;
      }
      if (attempt.hedge) this.observer?.hedgeFinished('lost');
      // A failure does not fail the request while another attempt may still answer.
      if (this.#othersWaiting(attempt)) return;
    }
    const reason =
      this.#owner.plan.retry === null ? null : failureKind(error, this.#owner.plan.retry.retryableStatus);
    if (reason !== null) {
      // A request that never left (refused, connect timeout) is safe to repeat whatever its method.
      const unsafe = this.#unsafeToRepeat(reason === 'network' && isConnectFailure(error));
      const delay =
        unsafe === null
          ? this.#retryDelay(undefined, reason, errorStatus(error), error)
          : this.#giveUp(unsafe, errorStatus(error), error);
      if (delay >= 0) {
        this.#schedule(delay, reason, errorStatus(error), error);
        return;
      }
    }
    this.#finish(error, Number.POSITIVE_INFINITY);
    this.#tellError(withAttempts(error, this.attempts));
  }

  /** A discarded attempt finished draining (or was cut short). */
  attemptFinished(attempt: Attempt): void {
    this.#unlink(attempt);
    this.#settleIfIdle();
  }

  forwardData(chunk: Buffer): void {
    if (this.#end === LIVE) this.#handler.onResponseData?.(this, chunk);
  }

  forwardEnd(trailers: Headers): void {
    const answer = this.#answer;
    if (answer !== null) this.#unlink(answer);
    if (this.#end !== LIVE) return;
    this.#finish(null, Number.POSITIVE_INFINITY);
    this.#recordOutcome(null);
    this.#end = TOLD;
    this.#handler.onResponseEnd?.(this, this.#wantsParsed ? resolveTrailers(this, trailers) : trailers);
    this.#settleIfIdle();
  }

  forwardError(error: Error): void {
    const answer = this.#answer;
    if (answer !== null) this.#unlink(answer);
    if (this.#end !== LIVE) return;
    this.#finish(error, Number.POSITIVE_INFINITY);
    this.#tellError(error);
  }

  /** Fired by the backoff timer. */
  retryNow(): void {
    this.#timer = null;
    if (this.#end !== LIVE) return;
    const now = monotonicNow();
    const remaining = this.#retryAt - now;
    if (remaining >= 1) {
      this.#timer = setTimeout(fireRetry, remaining, this);
      return;
    }
    this.#launch(now, false);
  }

  /** The hedge timer fired: another attempt goes if the request still waits and may be hedged. */
  hedgeDue(): void {
    if (this.#end !== LIVE || this.#answer !== null || this.#timer !== null) return;
    const hedge = this.#owner.plan.retry!.hedge!;
    let waiting = 0;
    for (let a = this.#attempts; a !== null; a = a.nextAttempt) if (a.waiting) waiting++;
    if (waiting === 0 || waiting > hedge.maxHedges || this.attempts >= this.#maxAttempts()) return;
    const now = monotonicNow();
    if (this.#budget !== null && !this.#budget.tryWithdraw(policyTime(now))) {
      this.observer?.retryBudgetExhausted();
      return;
    }
    const sent = this.attempts + 1;
    this.#launch(now, true);
    // A gate may have declined it (no free slot, a probe running): then nothing was sent.
    if (this.attempts < sent) return;
    const events = this.#owner.plan.retry!.hedgeEvents;
    if (events.hasListeners) events.emit({ key: this.key, attempt: sent, delay: now - this.#hedgeFrom });
    if (channels.hedge.hasSubscribers) {
      channels.hedge.publish({
        requestId: this.requestId,
        key: this.key,
        attempt: sent,
        delayMs: now - this.#hedgeFrom,
      } satisfies HedgeMessage);
    }
    if (this.#end === LIVE && this.#answer === null && waiting < hedge.maxHedges) this.#armHedge(now);
  }

  // --- Inside -------------------------------------------------------------------------------------

  #launch(now: number, hedge: boolean): void {
    const n = ++this.attempts;
    const factory = this.overrides?.body;
    const opts =
      factory !== undefined && (n > 1 || this.#opts.body == null)
        ? { ...this.#opts, body: factory() }
        : this.#opts;
    const attempt = newAttempt(this, n, this.#owner.plan.attemptSteps, opts, now, hedge);
    attempt.nextAttempt = this.#attempts;
    this.#attempts = attempt;
    attempt.start();
    // A first attempt (or a retry) may be hedged; a hedge re-arms the timer itself.
    if (!hedge && this.#owner.plan.retry?.hedge != null && attempt.waiting && this.#end === LIVE) {
      this.#hedgeFrom = now;
      this.#armHedge(now);
    }
  }

  /**
   * Starts the timer of the next hedge, if the request may be hedged at all: only requests that
   * may be retried (an idempotent method or an opt-in, a replayable body), and, with an adaptive
   * delay, only once the key has a delay.
   */
  #armHedge(now: number): void {
    const policy = this.#owner.plan.retry!.hedge!;
    if (!this.#hedging) {
      if (this.#unsafeToRepeat(false) !== null) return;
      this.#hedging = true;
    }
    const clock = policy.clocks.get(this.key);
    this.#clock = clock;
    const ms = policy.delayOf(clock);
    if (ms === undefined) return;
    this.#hedgeTimer ??= new HedgeTimer(this);
    this.#hedgeTimer.start(clock.queueFor(ms), now, ms);
  }

  #stopHedgeTimer(): void {
    this.#hedgeTimer?.stop();
  }

  /** Whether an attempt other than `attempt` still waits for its gates or its headers. */
  #othersWaiting(attempt: Attempt): boolean {
    for (let a = this.#attempts; a !== null; a = a.nextAttempt) if (a !== attempt && a.waiting) return true;
    return false;
  }

  /**
   * `answer` won: every other attempt still waiting loses and is aborted at once (its slot, timer
   * and socket released; on HTTP/1.1 the socket is closed). A successful answer's time to headers
   * feeds the key's adaptive delay.
   */
  #settleHedges(answer: Attempt, statusCode: number, waited: number): void {
    this.#stopHedgeTimer();
    const observer = this.observer;
    if (answer.hedge) observer?.hedgeFinished('won');
    for (let a = this.#attempts; a !== null; ) {
      const next = a.nextAttempt;
      if (a !== answer && a.waiting) {
        this.#unlink(a);
        a.abort(HEDGE_LOST);
        if (a.hedge) observer?.hedgeFinished('lost');
      }
      a = next;
    }
    if (this.#owner.plan.failureStatus[statusCode] !== true) this.#clock?.latencies?.record(waited);
  }

  /**
   * Ends the request with `error` decided here (the caller's abort, a total timeout, a refusal
   * before the retry stage): every attempt is aborted first, so sockets are already being released
   * when the caller hears.
   */
  #fail(error: Error, atStep: number): void {
    this.#reason = error;
    this.#finish(error, atStep);
    // Detached first: an aborted attempt that was draining reports back, which unlinks it.
    let attempt = this.#attempts;
    this.#attempts = null;
    while (attempt !== null) {
      const next = attempt.nextAttempt;
      attempt.nextAttempt = null;
      attempt.abort(error);
      attempt = next;
    }
    this.#tellError(error);
  }

  /** Marks the request done, clears the backoff timer and lets go of the gates and deadlines. */
  #finish(error: Error | null, atStep: number): void {
    this.#end = DONE;
    if (this.#hedging) this.#stopHedgeTimer();
    // Cancels a backoff at once: cockatiel's retry sleep would ignore the signal, ours is a timer we own.
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#owner.plan.total?.queue.stop(this);
    this.#gates?.release(error, atStep);
  }

  #tellError(error: Error): void {
    this.#recordOutcome(error);
    this.#end = TOLD;
    this.#handler.onResponseError?.(this, error);
    this.#settleIfIdle();
  }

  /** Reports how the request ended: to the metrics, and to `breakwater:request:end` subscribers. */
  #recordOutcome(error: Error | null): void {
    const observer = this.observer;
    const publish = channels.requestEnd.hasSubscribers;
    if (observer === undefined && !publish) return;
    const ms = monotonicNow() - this.startedAt;
    let outcome: RequestOutcome;
    let kind: StatusClass;
    if (error === null) {
      outcome = this.#owner.plan.failureStatus[this.#status] === true ? 'failure' : 'success';
      kind = statusClass(this.#status);
    } else {
      kind = this.#aborted && this.#reason === error ? 'aborted' : errorKind(error);
      outcome = outcomeOf(kind);
    }
    observer?.requestFinished(
      this.method,
      outcome,
      kind,
      ms / 1000,
      error === null ? this.#status : 0,
      error,
    );
    if (publish) {
      const message: RequestEndMessage = {
        requestId: this.requestId,
        key: this.key,
        method: this.method,
        outcome,
        attempts: this.attempts,
        durationMs: ms,
      };
      if (error === null) message.statusCode = this.#status;
      else message.error = error;
      channels.requestEnd.publish(message);
    }
  }

  /** The owner forgets the request once the caller heard its ending and no attempt still drains. */
  #settleIfIdle(): void {
    if (this.#end !== TOLD || this.#attempts !== null) return;
    this.#end = SETTLED;
    this.#owner.settled(this);
  }

  #unlink(attempt: Attempt): void {
    if (this.#attempts === attempt) {
      this.#attempts = attempt.nextAttempt;
    } else {
      for (let a = this.#attempts; a !== null; a = a.nextAttempt) {
        if (a.nextAttempt === attempt) {
          a.nextAttempt = attempt.nextAttempt;
          break;
        }
      }
    }
    attempt.nextAttempt = null;
  }

  /** Starts the total deadline: the stage's milliseconds, or the request's own override. */
  #armTotal(total: TimeoutStep): void {
    this.#totalMs = this.timeoutMs(total, this.startedAt);
    total.queue.start(this, this.startedAt, this.#totalMs);
  }

  /** Attempts in all for this request: the retry stage's, or the request's own override. */
  #maxAttempts(): number {
    const retry = this.#owner.plan.retry;
    if (retry === null) return 1;
    const override = this.overrides?.maxAttempts;
    return override === undefined ? retry.maxAttempts : integer('breakwater.maxAttempts', override, 1);
  }

  #parsed(headers: Headers): Headers {
    return this.#wantsParsed ? resolveHeaders(this, headers) : headers;
  }

  /**
   * Why repeating this request is unsafe, or null when it is safe. Worked out when a repeat is
   * considered rather than for every request: on Node 20 each read of `opts` misses V8's caches
   * (see own-option.ts), and most requests never fail.
   */
  #unsafeToRepeat(neverLeft: boolean): GiveUpReason | null {
    const overrides = this.overrides;
    // The body can be sent again: absent, bytes, or made afresh by a factory. So must the
    // headers be, even when the request never left: undici has read them already.
    if (overrides?.body === undefined && !isReplayableBody(this.#opts.body)) return 'not-replayable';
    if (!isReplayableHeaders(this.#opts.headers)) return 'not-replayable';
    if (neverLeft) return null;
    // The method, an Idempotency-Key header or the caller's opt-in makes a repeat safe.
    const idempotent =
      this.#owner.plan.retry!.methods.has(this.method) ||
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
    const retry = this.#owner.plan.retry!;
    if (reason === 'status') {
      const unsafe = this.#unsafeToRepeat(false);
      if (unsafe !== null) return this.#giveUp(unsafe, statusCode, error);
    }
    if (this.attempts >= this.#maxAttempts()) return this.#giveUp('attempts', statusCode, error);
    if (retryAfter !== undefined && retryAfter > retry.maxRetryAfter) {
      return this.#giveUp('retry-after', statusCode, error);
    }
    const step = this.#step === null ? retry.backoff.first() : this.#step.next();
    this.#step = step;
    const delay = Math.min(Math.max(step.delay, retryAfter ?? 0), MAX_TIMER_MS);
    if (monotonicNow() + delay >= this.deadline) return this.#giveUp('deadline', statusCode, error);
    if (this.#budget !== null && !this.#budget.tryWithdraw(policyNow())) {
      this.observer?.retryBudgetExhausted();
      return this.#giveUp('budget', statusCode, error);
    }
    return delay;
  }

  #giveUp(reason: GiveUpReason, statusCode: number | undefined, error: Error | undefined): -1 {
    const events = this.#owner.plan.retry!.giveUpEvents;
    if (events.hasListeners) {
      events.emit({ key: this.key, attempts: this.attempts, reason, statusCode, error });
    }
    return -1;
  }

  #schedule(
    delay: number,
    reason: RetryReason,
    statusCode: number | undefined,
    error: Error | undefined,
  ): void {
    this.observer?.retryScheduled(reason);
    if (channels.retry.hasSubscribers) {
      channels.retry.publish({
        requestId: this.requestId,
        key: this.key,
        attempt: this.attempts,
        delayMs: delay,
        reason,
      } satisfies RetryMessage);
    }
    const events = this.#owner.plan.retry!.retryEvents;
    if (events.hasListeners) {
      events.emit({ key: this.key, attempt: this.attempts, delay, reason, statusCode, error });
    }
    this.#retryAt = monotonicNow() + delay;
    // Not unref'd, unlike every other timer here: during a backoff nothing else may keep the
    // process alive (undici unrefs idle sockets), and a process that exits mid-retry loses the
    // request silently. The timer is cleared whenever the request settles, aborts or is destroyed.
    this.#timer = setTimeout(fireRetry, delay, this);
  }
}

/** Why a hedge's rival was aborted; never seen by the caller. */
const HEDGE_LOST = new Error('breakwater: another attempt answered first');

function fireRetry(ex: Exchange): void {
  ex.retryNow();
}

/**
 * The kind of failure if `error` is one a repeat can fix: a transient network error, an attempt
 * timeout, or an error that carries a retryable HTTP status (undici's responseError interceptor
 * composed inside). The library's own refusals (bulkhead full, circuit open, rate limited) are answers, not
 * accidents, and a caller's abort is the caller's decision.
 */
function failureKind(error: Error, retryableStatus: readonly boolean[]): RetryReason | null {
  if (error instanceof TimeoutError) return 'timeout';
  if (error instanceof ResilienceError || isCallerAbort(error)) return null;
  const status = errorStatus(error);
  if (status !== undefined) return retryableStatus[status] === true ? 'status' : null;
  return isTransientNetworkError(error) ? 'network' : null;
}

/** Adds the number of attempts made to the error the caller gets, keeping the error itself. */
function withAttempts(error: Error, attempts: number): Error {
  if (typeof error === 'object' && error !== null && Object.isExtensible(error)) {
    (error as Error & { attempts?: number }).attempts = attempts;
  }
  return error;
}

/** The `status_class` of an error: which kind of thing ended the attempt or request. */
export function errorKind(error: unknown): StatusClass {
  if (error instanceof TimeoutError) return 'timeout';
  if (error instanceof CircuitOpenError) return 'circuit_open';
  if (error instanceof BulkheadRejectedError) return 'bulkhead_rejected';
  if (error instanceof RateLimitedError) return 'rate_limited';
  if (isTransientNetworkError(error)) return 'network';
  if (isCallerAbort(error)) return 'aborted';
  return 'error';
}

function outcomeOf(kind: StatusClass): RequestOutcome {
  switch (kind) {
    case 'timeout':
    case 'circuit_open':
    case 'bulkhead_rejected':
    case 'rate_limited':
    case 'aborted':
      return kind;
    default:
      return 'failure';
  }
}
