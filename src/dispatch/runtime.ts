import { errors } from 'undici';
import { monotonicNow } from '../internal/clock.js';
import { sanitizeOrigin } from '../metrics/labels.js';
import { CoreLink } from './core-link.js';
import { Exchange, type ExchangeOwner } from './exchange.js';
import type { OriginObserver, PipelineObserver } from './observer.js';
import { ownOption, readOption } from './own-option.js';
import type { Plan } from './plan.js';
import type { Controller, DispatchFn, DispatchOptions, Handler } from './types.js';

export type KeyFunction = (opts: DispatchOptions) => string;

/**
 * One pipeline bound to one downstream `dispatch`: the door every request comes through. It
 * resolves the request's key and metrics handle once, keeps the live exchanges in an intrusive
 * list (so `close()` can wait for them and `destroy()` can abort them), and starts each one.
 */
export class Runtime implements ExchangeOwner {
  readonly dispatch: DispatchFn;
  readonly #downstream: DispatchFn;
  readonly plan: Plan;
  readonly core: CoreLink;
  readonly #key: KeyFunction | undefined;
  readonly #observer: PipelineObserver | undefined;
  /** Tells the pipeline this runtime is done, so it stops holding it (and its dispatcher). */
  readonly #retire: (runtime: Runtime) => void;
  #head: Exchange | null = null;
  #live = 0;
  #closed = false;
  #destroyed: Error | null = null;
  #idleWaiters: Array<() => void> = [];
  // The last origin seen, as given and as resolved, with its metrics handle: most clients talk to
  // one upstream at a time. Reusing the resolved string also makes it the same string object on
  // every request, so the stages' per-key lookups compare it by pointer instead of by content.
  #lastGivenOrigin: string | undefined;
  #lastOrigin = '';
  #lastObserver: OriginObserver | undefined;
  #lastObserverOrigin = '';

  constructor(
    downstream: DispatchFn,
    plan: Plan,
    key: KeyFunction | undefined,
    observer: PipelineObserver | undefined,
    retire: (runtime: Runtime) => void,
  ) {
    this.#retire = retire;
    this.#downstream = downstream;
    this.#key = key;
    this.#observer = observer;
    this.plan = plan;
    this.core = new CoreLink(downstream, observer !== undefined);
    const runtime = this;
    // undici's compose() checks that an interceptor's dispatch declares exactly two parameters.
    this.dispatch = function breakwaterDispatch(opts: DispatchOptions, handler: Handler): boolean {
      return runtime.run(opts, handler);
    };
  }

  run(opts: DispatchOptions, handler: Handler): boolean {
    const method = readOption(opts, 'method');
    // Upgrades and CONNECT hand the socket to the caller: nothing to retry, time or count.
    if (ownOption(opts, 'upgrade') || method === 'CONNECT') return this.#downstream(opts, handler);
    return this.start(opts, handler, method);
  }

  /**
   * Runs a request through the stages, for a caller that has already sent upgrades and CONNECT
   * elsewhere and read the method. Each property of `opts` is read once, here or by one stage:
   * on Node 20 every plain read of it misses V8's caches (see own-option.ts).
   */
  start(opts: DispatchOptions, handler: Handler, method: string): boolean {
    if (this.#destroyed !== null || this.#closed) {
      failAtOnce(handler, this.#destroyed ?? new errors.ClientClosedError());
      return true;
    }
    const givenOrigin = readOption(opts, 'origin');
    // Only a string is taken as unchanged when equal: a URL object may have been edited since.
    if (typeof givenOrigin !== 'string' || givenOrigin !== this.#lastGivenOrigin) {
      const resolved = originOf(givenOrigin);
      if (resolved !== this.#lastOrigin) this.#lastOrigin = resolved;
      this.#lastGivenOrigin = typeof givenOrigin === 'string' ? givenOrigin : undefined;
    }
    const origin = this.#lastOrigin;
    let key: string;
    try {
      key = this.#key === undefined ? origin : this.#key(opts);
    } catch (err) {
      failAtOnce(handler, err as Error);
      // As undici's own dispatchers do: false would make a Pool wait for a 'drain' that never comes.
      return true;
    }
    const observer = this.#observer === undefined ? undefined : this.#observerFor(origin);
    let ex: Exchange;
    try {
      ex = new Exchange(
        this,
        opts,
        method,
        ownOption(opts, 'breakwater'),
        key,
        observer,
        handler,
        monotonicNow(),
      );
    } catch (err) {
      // A bad per-request override: this request fails, naming it.
      failAtOnce(handler, err as Error);
      // As undici's own dispatchers do: false would make a Pool wait for a 'drain' that never comes.
      return true;
    }
    this.#link(ex);
    try {
      return ex.start();
    } catch (err) {
      // A caller's handler that threw: end the exchange, aborting whatever it started.
      if (!ex.done) ex.abort(err as Error);
      return true;
    }
  }

  /**
   * The metrics handle for an origin; one remembered. Checked against `origin` itself, not assumed
   * to be the last origin's: a key function may dispatch to another origin in between.
   */
  #observerFor(origin: string): OriginObserver {
    if (origin !== this.#lastObserverOrigin || this.#lastObserver === undefined) {
      this.#lastObserver = this.#observer!.origin(sanitizeOrigin(origin));
      this.#lastObserverOrigin = origin;
    }
    return this.#lastObserver;
  }

  settled(ex: Exchange): void {
    this.#unlink(ex);
    if (this.#live === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Refuses new requests and resolves once every live one has settled. */
  close(): Promise<void> {
    this.#closed = true;
    const idle =
      this.#live === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    return idle.then(() => this.#retire(this));
  }

  /** Refuses new requests and aborts every live one (queued, backing off or in flight) with `error`. */
  destroy(error: Error = new errors.ClientDestroyedError()): void {
    this.#destroyed = error;
    // Copied first: aborting one exchange can settle others (a freed slot admits a queued request
    // that fails at once), which would cut a walk along the live links short.
    const live: Exchange[] = [];
    for (let ex = this.#head; ex !== null; ex = ex.liveNext) live.push(ex);
    for (const ex of live) ex.abort(error);
    this.#retire(this);
  }

  #link(ex: Exchange): void {
    ex.liveNext = this.#head;
    if (this.#head !== null) this.#head.livePrev = ex;
    this.#head = ex;
    this.#live++;
  }

  #unlink(ex: Exchange): void {
    if (ex.livePrev !== null) ex.livePrev.liveNext = ex.liveNext;
    else if (this.#head === ex) this.#head = ex.liveNext;
    else return;
    if (ex.liveNext !== null) ex.liveNext.livePrev = ex.livePrev;
    ex.livePrev = null;
    ex.liveNext = null;
    this.#live--;
  }
}

/** The request's origin as a string; undici passes a string or a URL. */
function originOf(origin: DispatchOptions['origin']): string {
  if (typeof origin !== 'string') return origin === undefined ? '' : origin.origin;
  // undici's own helpers pass `scheme://host:port`; a hand-written string may carry credentials
  // or a path, which must not become a key (keys appear in errors and health()).
  const afterScheme = origin.indexOf('//') + 2;
  if (origin.indexOf('@') === -1 && origin.indexOf('/', afterScheme) === -1) return origin;
  try {
    return new URL(origin).origin;
  } catch {
    return 'invalid-origin';
  }
}

/** A controller for a request that never started: aborting it does nothing. */
const DEAD_CONTROLLER: Controller = {
  aborted: true,
  paused: false,
  reason: null,
  abort() {},
  pause() {},
  resume() {},
};

/** Fails a request before any stage ran, the way undici's dispatchers do. */
function failAtOnce(handler: Handler, error: Error): void {
  handler.onRequestStart?.(DEAD_CONTROLLER, {});
  handler.onResponseError?.(DEAD_CONTROLLER, error);
}
