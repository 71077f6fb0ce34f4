import { statusClass } from '../http/classify.js';
import { monotonicNow } from '../internal/clock.js';
import { type Exchange, errorKind } from './exchange.js';
import type { StatusClass } from './observer.js';
import type { Controller, Handler, Headers } from './types.js';

/**
 * Sits just above the real dispatcher when metrics are on: one attempt sent upstream, timed from
 * dispatch to its response headers (or to its failure). Passes everything through untouched.
 */
export class AttemptRecorder implements Handler {
  readonly #handler: Handler;
  readonly #ex: Exchange;
  readonly #startedAt: number;
  #recorded = false;

  constructor(handler: Handler, ex: Exchange) {
    this.#handler = handler;
    this.#ex = ex;
    this.#startedAt = ex.dispatchTime;
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#handler.onRequestStart?.(controller, context);
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    this.#record(statusClass(statusCode));
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.#handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: Controller, trailers: Headers): void {
    this.#handler.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: Controller, error: Error): void {
    if (!this.#recorded) this.#record(errorKind(error));
    this.#handler.onResponseError?.(controller, error);
  }

  #record(statusClass: StatusClass): void {
    this.#recorded = true;
    this.#ex.observer?.attemptFinished(
      this.#ex.method,
      statusClass,
      (monotonicNow() - this.#startedAt) / 1000,
    );
  }
}
