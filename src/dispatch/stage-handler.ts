import type { Exchange, Layer } from './exchange.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/** What `onRequestStart` receives as `context`; undici's request() returns it to the caller. */
const EMPTY_CONTEXT = Object.freeze({});

/**
 * The shape every stage shares for one request passing through it. It is both the handler the
 * inner stage reports to and the controller the outer stage (or the caller) controls it with.
 *
 * The protocol, in both directions:
 * - `onRequestStart` goes to the outer handler at once, before anything is queued or sent, so a
 *   caller's abort reaches a request that is still waiting (undici's request handler aborts
 *   through the controller it was given).
 * - Exactly one terminal callback (`onResponseEnd` or `onResponseError`) goes out, guarded by
 *   `done`; whatever the inner stage reports after that is ignored.
 * - `abort()` settles at once: the outer handler gets the error now, and the inner request is
 *   aborted now or, if it has not started yet, as soon as it does.
 */
export abstract class StageHandler implements Handler, Controller {
  protected readonly outer: Handler;
  protected readonly ex: Exchange;
  protected readonly opts: DispatchOptions;
  protected readonly next: Layer;
  /** The controller of the request inside this stage, once it has started. */
  protected inner: Controller | null = null;
  protected done = false;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;

  constructor(outer: Handler, opts: DispatchOptions, ex: Exchange, next: Layer) {
    this.outer = outer;
    this.opts = opts;
    this.ex = ex;
    this.next = next;
  }

  // --- Controller, used by the outer stage or the caller --------------------------------------

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  /** undici's controller keeps the raw headers; exposing them lets the legacy adapter skip a conversion. */
  get rawHeaders(): Controller['rawHeaders'] {
    return this.inner?.rawHeaders;
  }

  get rawTrailers(): Controller['rawTrailers'] {
    return this.inner?.rawTrailers;
  }

  abort(reason?: Error): void {
    if (this.done || this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason ?? new Error('aborted');
    this.fail(this.#reason);
  }

  pause(): void {
    this.#paused = true;
    this.inner?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.inner?.resume();
  }

  // --- Handler, called by the inner stage -------------------------------------------------------

  onRequestStart(controller: Controller, _context: unknown): void {
    this.inner = controller;
    if (this.done) controller.abort(this.#reason ?? new Error('aborted'));
    else if (this.#paused) controller.pause();
  }

  onResponseStart(
    _controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    if (this.done) return;
    this.outer.onResponseStart?.(this, statusCode, headers, statusMessage);
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    if (this.done) return;
    this.outer.onResponseData?.(this, chunk);
  }

  onResponseEnd(_controller: Controller, trailers: Headers): void {
    if (this.done) return;
    this.done = true;
    this.release();
    this.outer.onResponseEnd?.(this, trailers);
  }

  onResponseError(_controller: Controller, error: Error): void {
    if (this.done) return;
    this.done = true;
    this.release();
    this.outer.onResponseError?.(this, error);
  }

  // --- For subclasses ---------------------------------------------------------------------------

  /**
   * Hands this stage's controller to the outer handler; false when the outer side aborted
   * during the call (a caller whose signal had already fired). Subclasses call it first thing in
   * their start step, after construction, so their fields exist when an abort comes back.
   */
  protected announce(): boolean {
    this.outer.onRequestStart?.(this, EMPTY_CONTEXT);
    return !this.done;
  }

  /** Sends the request on to the inner stage; a synchronous throw becomes this stage's error. */
  protected dispatchInner(): void {
    try {
      this.next(this.opts, this, this.ex);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /**
   * Ends this stage with `error` decided here (timeout, rejection, abort): the outer handler
   * hears it now and the inner request is aborted with the same error.
   */
  protected fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.#reason === null) this.#reason = error;
    this.release();
    // Abort inside before telling the caller, so the socket is already being released when the
    // caller's callback runs. Whatever the inner stage reports back is ignored (done is set).
    this.inner?.abort(error);
    this.outer.onResponseError?.(this, error);
  }

  /** Frees what this stage holds (timer, slot, probe). Called exactly once, on every path. */
  protected release(): void {}
}
