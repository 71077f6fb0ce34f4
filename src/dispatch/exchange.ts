import { BulkheadRejectedError, CircuitOpenError, TimeoutError } from '../errors.js';
import { isCallerAbort, isTransientNetworkError, statusClass } from '../http/classify.js';
import { monotonicNow } from '../internal/clock.js';
import { resolveHeaders, resolveTrailers } from './lazy-headers.js';
import { LegacyHandlerAdapter } from './legacy-handler.js';
import type { OriginObserver, RequestOutcome, StatusClass } from './observer.js';
import type { Controller, DispatchOptions, Handler, Headers, RequestOverrides } from './types.js';

/** Where an exchange reports that it has settled (the pipeline runtime). */
export interface ExchangeOwner {
  settled(ex: Exchange): void;
}

/**
 * One logical request as it travels through the stages: what every stage needs to know about it,
 * resolved once at the door. Attempts share it; a retry stage bumps `attempt`.
 *
 * It is also the outermost handler, between the stages and the caller's handler: it remembers the
 * controller given to the caller (so `destroy()` can abort the exchange), and when the exchange
 * settles it tells its owner and records the request's outcome. One object per request serves
 * all of that.
 */
export class Exchange implements Handler {
  readonly key: string;
  readonly method: string;
  readonly overrides: RequestOverrides | undefined;
  readonly observer: OriginObserver | undefined;
  /** Monotonic ms (internal/clock.ts) when the caller dispatched. */
  readonly startedAt: number;
  /**
   * Monotonic ms when the current dispatch step began: the caller's dispatch, a bulkhead
   * admission, or a retry's launch. Stages read it instead of the clock while they pass the request
   * inward (see internal/clock.ts); it is never a response's time.
   */
  dispatchTime: number;
  /** Monotonic ms by which an enclosing total timeout fires; Infinity when none. */
  deadline = Number.POSITIVE_INFINITY;
  /** Attempts started so far (1 for the first). */
  attempt = 0;

  // Links of the owner's list of live exchanges, so close()/destroy() can find them.
  livePrev: Exchange | null = null;
  liveNext: Exchange | null = null;
  /** The controller handed to the caller; destroy() aborts through it. */
  controller: Controller | null = null;
  /** Set by destroy() when it ran before the controller existed. */
  pendingAbort: Error | null = null;

  readonly #handler: Handler;
  /** Our own legacy adapter reads the raw headers; any other handler gets them parsed. */
  readonly #wantsParsed: boolean;
  readonly #owner: ExchangeOwner;
  #status = 0;
  #settled = false;

  constructor(
    method: string,
    overrides: RequestOverrides | undefined,
    key: string,
    observer: OriginObserver | undefined,
    handler: Handler,
    owner: ExchangeOwner,
    startedAt: number,
  ) {
    this.key = key;
    this.method = method;
    this.overrides = overrides;
    this.observer = observer;
    this.#handler = handler;
    this.#wantsParsed = !(handler instanceof LegacyHandlerAdapter);
    this.#owner = owner;
    this.startedAt = startedAt;
    this.dispatchTime = startedAt;
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.controller = controller;
    this.#handler.onRequestStart?.(controller, context);
    if (this.pendingAbort !== null) controller.abort(this.pendingAbort);
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    this.#status = statusCode;
    const parsed = this.#wantsParsed ? resolveHeaders(controller, headers) : headers;
    this.#handler.onResponseStart?.(controller, statusCode, parsed, statusMessage);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.#handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Controller, trailers: Headers): void {
    // The caller hears exactly one ending, whatever a stage does after a failure of the caller's own.
    if (!this.#settle()) return;
    {
      const observer = this.observer;
      if (observer !== undefined) {
        const status = this.#status;
        observer.requestFinished(
          this.method,
          isFailureStatus(status) ? 'failure' : 'success',
          statusClass(status),
          (monotonicNow() - this.startedAt) / 1000,
        );
      }
    }
    this.#handler.onResponseEnd?.(
      controller,
      this.#wantsParsed ? resolveTrailers(controller, trailers) : trailers,
    );
  }

  onResponseError(controller: Controller, error: Error): void {
    if (!this.#settle()) return;
    {
      const observer = this.observer;
      if (observer !== undefined) {
        const callerAborted = this.controller?.aborted === true && this.controller.reason === error;
        const kind = callerAborted ? 'aborted' : errorKind(error);
        observer.requestFinished(
          this.method,
          outcomeOf(kind),
          kind,
          (monotonicNow() - this.startedAt) / 1000,
        );
      }
    }
    this.#handler.onResponseError?.(controller, error);
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#owner.settled(this);
    return true;
  }
}

/** A stage's dispatch step: runs `opts` for `ex` and reports to `handler` (undici's current API). */
export type Layer = (opts: DispatchOptions, handler: Handler, ex: Exchange) => void;

/** Statuses that count as the upstream failing the request (the default retryable ones and 5xx). */
function isFailureStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** The `status_class` of an error: which kind of thing ended the attempt or request. */
export function errorKind(error: unknown): StatusClass {
  if (error instanceof TimeoutError) return 'timeout';
  if (error instanceof CircuitOpenError) return 'circuit_open';
  if (error instanceof BulkheadRejectedError) return 'bulkhead_rejected';
  if (isTransientNetworkError(error)) return 'network';
  if (isCallerAbort(error)) return 'aborted';
  return 'error';
}

function outcomeOf(kind: StatusClass): RequestOutcome {
  switch (kind) {
    case 'timeout':
    case 'circuit_open':
    case 'bulkhead_rejected':
    case 'aborted':
      return kind;
    default:
      return 'failure';
  }
}
