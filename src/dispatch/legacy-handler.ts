// undici's older handler API, as undici 7's `request()` and `stream()` hand it to a dispatcher,
// presented as the current one so the stages speak one API.

import type { Controller, Handler, Headers } from './types.js';

/** undici's older handler API, which undici 7's `request()` and `stream()` still hand to a dispatcher. */
export interface LegacyHandler {
  onConnect?(abort: (reason?: Error) => void, context?: unknown): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(rawTrailers: Buffer[] | string[] | null): void;
  onError?(error: Error): void;
  onResponseStarted?(): void;
  onBodySent?(chunkSize: number, totalBytesSent: number): void;
}

/**
 * Presents a legacy handler as a current one, so the stages speak one API. `compose()` does the
 * same with undici's WrapHandler at every layer; `resilient()` does it once, here. The raw header
 * buffers undici already has are reused when the controller exposes them, instead of rebuilding
 * them from the parsed object.
 */
export class LegacyHandlerAdapter implements Handler {
  readonly #handler: LegacyHandler;
  #controller: Controller | null = null;

  constructor(handler: LegacyHandler) {
    this.#handler = handler;
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#controller = controller;
    this.#handler.onConnect?.(this.#abort, context);
  }

  onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    const raw = (controller as { rawHeaders?: Buffer[] | null }).rawHeaders ?? toRawHeaders(headers);
    const more = this.#handler.onHeaders?.(statusCode, raw, this.#resume, statusMessage ?? '');
    // An informational response (103) asks for nothing: undici's fetch answers it with false, and
    // undici's core, like this adapter, ignores the value for a status below 200.
    if (more === false && statusCode >= 200) controller.pause();
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.#handler.onData?.(chunk) === false) controller.pause();
  }

  onResponseEnd(controller: Controller, trailers: Headers): void {
    const raw = (controller as { rawTrailers?: Buffer[] | null }).rawTrailers ?? toRawHeaders(trailers);
    this.#handler.onComplete?.(raw);
  }

  onResponseError(_controller: Controller, error: Error): void {
    this.#handler.onError?.(error);
  }

  // Arrow fields: the legacy API takes bare functions; made once per request, only on this path.
  readonly #abort = (reason?: Error): void => {
    this.#controller?.abort(reason ?? new Error('aborted'));
  };

  readonly #resume = (): void => {
    this.#controller?.resume();
  };
}

export function isLegacyHandler(handler: object): handler is LegacyHandler {
  return typeof (handler as Handler).onRequestStart !== 'function';
}

function toRawHeaders(headers: Headers | null | undefined): Buffer[] {
  const raw: Buffer[] = [];
  if (!headers) return raw;
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      for (const item of value) raw.push(Buffer.from(name, 'latin1'), Buffer.from(item, 'latin1'));
    } else {
      raw.push(Buffer.from(name, 'latin1'), Buffer.from(value, 'latin1'));
    }
  }
  return raw;
}
