import type { EventEmitter } from 'node:events';
import { Dispatcher } from 'undici';
import { isLegacyHandler, LegacyHandlerAdapter } from './dispatch/legacy-handler.js';
import { ownOption, readOption } from './dispatch/own-option.js';
import type { Runtime } from './dispatch/runtime.js';
import type { DispatchFn, DispatchOptions, Handler } from './dispatch/types.js';
import { InvalidOptionError } from './errors.js';
import { type ResilienceInterceptor, runtimeOf } from './pipeline.js';

/**
 * A Dispatcher that runs a pipeline around a dispatcher you were handed, without `compose()`.
 *
 * On undici 7, `compose()` converts between the legacy and the current handler API at every
 * layer, a cost paid on every request. Here the caller's handler is converted at most once and the
 * wrapped dispatcher is called directly.
 */
export class ResilientDispatcher extends Dispatcher {
  readonly #inner: Dispatcher;
  readonly #dispatch: DispatchFn;
  readonly #runtime: Runtime | undefined;
  #closing: Promise<void> | null = null;

  /**
   * @param inner - the dispatcher to wrap; its events, `stats`, `closed`, `destroyed` and the
   *   options undici's WebSocket and EventSource read from it are this dispatcher's own.
   */
  constructor(
    inner: Dispatcher,
    interceptor: ResilienceInterceptor | Dispatcher.DispatcherComposeInterceptor,
  ) {
    super();
    if (inner === null || typeof inner !== 'object' || typeof inner.dispatch !== 'function') {
      throw new InvalidOptionError('dispatcher', 'an undici Dispatcher (Agent, Pool, Client, …)', inner);
    }
    if (typeof interceptor !== 'function') {
      throw new InvalidOptionError(
        'interceptor',
        'an interceptor made by pipeline() or standardPipeline()',
        interceptor,
      );
    }
    this.#inner = inner;
    const innerDispatch = (opts: DispatchOptions, handler: Handler): boolean => inner.dispatch(opts, handler);
    this.#dispatch = interceptor(innerDispatch as Dispatcher['dispatch']) as DispatchFn;
    this.#runtime = runtimeOf(this.#dispatch);
    // A wrapper is faithful: code listening for the pool's events on the wrapper hears them.
    const source = inner as unknown as EventEmitter;
    const target = this as unknown as EventEmitter;
    for (const event of FORWARDED_EVENTS)
      source.on(event, (...args: unknown[]) => target.emit(event, ...args));
  }

  /** The wrapped dispatcher's connection statistics (an Agent's per origin, a Pool's, …). */
  get stats(): unknown {
    return (this.#inner as { stats?: unknown }).stats;
  }

  /** Whether the wrapped dispatcher was closed. */
  get closed(): boolean {
    return (this.#inner as { closed?: boolean }).closed === true;
  }

  /** Whether the wrapped dispatcher was destroyed. */
  get destroyed(): boolean {
    return (this.#inner as { destroyed?: boolean }).destroyed === true;
  }

  /**
   * The WebSocket limits of the wrapped dispatcher (`maxPayloadSize`, …): undici's WebSocket reads
   * them from the dispatcher it is given, so a wrapper that hid them would lift every limit.
   */
  get webSocketOptions(): unknown {
    return (this.#inner as { webSocketOptions?: unknown }).webSocketOptions;
  }

  /** The EventSource settings of the wrapped dispatcher, read by undici's EventSource. */
  get eventSourceOptions(): unknown {
    return (this.#inner as { eventSourceOptions?: unknown }).eventSourceOptions;
  }

  /** The dispatcher underneath. */
  get dispatcher(): Dispatcher {
    return this.#inner;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    // Upgrades and CONNECT hand the socket to the caller: straight through, in the caller's own API.
    const method = readOption(opts, 'method');
    if (ownOption(opts, 'upgrade') || method === 'CONNECT') return this.#inner.dispatch(opts, handler);
    const current = isLegacyHandler(handler) ? new LegacyHandlerAdapter(handler) : handler;
    // A Breakwater pipeline is entered past its own upgrade check: see Runtime.start for why
    // each read of `opts` counts.
    const runtime = this.#runtime;
    return runtime === undefined
      ? this.#dispatch(opts, current)
      : runtime.start(opts as DispatchOptions, current, method);
  }

  /** Lets requests in progress finish (queued ones included), then closes the wrapped dispatcher. */
  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    // Idempotent, as a second close() of an undici dispatcher would reject.
    this.#closing ??= (async () => {
      await this.#runtime?.close();
      await this.#inner.close();
    })();
    const done = this.#closing;
    if (callback === undefined) return done;
    done.then(callback, callback);
  }

  /** Rejects queued requests and aborts those in flight, then destroys the wrapped dispatcher. */
  override destroy(): Promise<void>;
  override destroy(error: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(error: Error | null, callback: () => void): void;
  override destroy(
    errorOrCallback?: Error | null | (() => void),
    callback?: () => void,
  ): Promise<void> | void {
    const error = typeof errorOrCallback === 'function' ? null : (errorOrCallback ?? null);
    const cb = typeof errorOrCallback === 'function' ? errorOrCallback : callback;
    this.#runtime?.destroy(error ?? undefined);
    const done = this.#inner.destroy(error);
    if (cb === undefined) return done;
    done.then(cb, cb);
  }
}

/** The events a Dispatcher emits about its connections; re-emitted by the wrapper. */
const FORWARDED_EVENTS = ['connect', 'disconnect', 'connectionError', 'drain'] as const;

/** Wraps `dispatcher` in `interceptor` (a pipeline) and returns a Dispatcher to use in its place. */
export function resilient(
  dispatcher: Dispatcher,
  interceptor: ResilienceInterceptor | Dispatcher.DispatcherComposeInterceptor,
): ResilientDispatcher {
  return new ResilientDispatcher(dispatcher, interceptor);
}
