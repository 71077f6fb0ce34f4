import { statusClass } from '../http/classify.js';
import { monotonicNow } from '../internal/clock.js';
import { type Exchange, errorKind } from './exchange.js';
import { UNPARSED } from './lazy-headers.js';
import type { LegacyHandler } from './legacy-handler.js';
import type { StatusClass } from './observer.js';
import type { Controller, Handler } from './types.js';

/**
 * The innermost handler on undici 7: it speaks the legacy API that undici 7's core runs, so the
 * core calls it directly instead of through undici's UnwrapHandler, and it speaks the current API
 * to the stages. It is its own controller, and it leaves the raw headers unparsed (see
 * lazy-headers.ts). When metrics are on it also times the attempt to its response headers.
 */
export class CoreBridge implements LegacyHandler, Controller {
  readonly #handler: Handler;
  readonly #ex: Exchange | null;
  readonly #startedAt: number;
  #abort: ((reason?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;
  #recorded = false;
  rawHeaders: Buffer[] | null = null;
  rawTrailers: Buffer[] | null = null;

  /** `ex` is given only when the attempt is to be recorded (metrics on). */
  constructor(handler: Handler, ex: Exchange | null) {
    this.#handler = handler;
    this.#ex = ex;
    this.#startedAt = ex === null ? 0 : ex.dispatchTime;
  }

  // --- Controller -----------------------------------------------------------------------------

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  abort(reason: Error): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#abort?.(reason);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#resume?.();
  }

  // --- Legacy handler, called by undici's core --------------------------------------------------

  onConnect(abort: (reason?: Error) => void, context?: unknown): void {
    this.#abort = abort;
    this.#handler.onRequestStart?.(this, context ?? {});
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.#resume = resume;
    this.rawHeaders = rawHeaders;
    if (this.#ex !== null) this.#record(statusClass(statusCode));
    this.#handler.onResponseStart?.(this, statusCode, UNPARSED, statusText);
    return !this.#paused;
  }

  onData(chunk: Buffer): boolean {
    this.#handler.onResponseData?.(this, chunk);
    return !this.#paused;
  }

  onComplete(rawTrailers: Buffer[] | string[] | null): void {
    this.rawTrailers = (rawTrailers as Buffer[] | null) ?? null;
    this.#handler.onResponseEnd?.(this, UNPARSED);
  }

  onError(error: Error): void {
    if (this.#ex !== null && !this.#recorded) this.#record(errorKind(error));
    this.#handler.onResponseError?.(this, error);
  }

  #record(statusClass: StatusClass): void {
    this.#recorded = true;
    const ex = this.#ex!;
    ex.observer?.attemptFinished(ex.method, statusClass, (monotonicNow() - this.#startedAt) / 1000);
  }
}
