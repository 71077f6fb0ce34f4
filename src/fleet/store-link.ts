// A pipeline's side of a fleet store: every call bounded by the store's timeout, and every fault
// turned into "use the local state".

import type { PipelineObserver } from '../dispatch/observer.js';
import { monotonicNow } from '../internal/clock.js';
import type { FleetStore, StoreErrorEvent } from './store.js';

/** After a failed call the store is left alone this long: requests meanwhile go local at once. */
const REST_MS = 1_000;

/**
 * A pipeline's side of a fleet store: every call bounded by the store's timeout, every failure
 * counted, reported and turned into "use your local state". After a failure the store rests for a
 * second, so that while it is down requests do not each pay the timeout; the client reconnects
 * by itself meanwhile, and the next call after the rest finds it back.
 */
export class StoreLink {
  readonly store: FleetStore;
  /** This pipeline's name in broadcasts, so it ignores its own. */
  readonly id: string;
  readonly #metrics: PipelineObserver | undefined;
  #restUntil = 0;

  constructor(store: FleetStore, metrics: PipelineObserver | undefined) {
    this.store = store;
    this.#metrics = metrics;
    this.id = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  }

  /**
   * Whether to ask the store now. When not, the operation is counted as fallen back and the caller
   * uses its local state at once.
   */
  usable(operation: StoreErrorEvent['operation']): boolean {
    if (this.store.available && monotonicNow() >= this.#restUntil) return true;
    this.#failed({ operation, reason: 'unavailable' });
    return false;
  }

  /**
   * Runs one store call: `done` gets its value, or `undefined` when it failed or took longer than
   * the timeout. Always asynchronous; a late answer or a late rejection is dropped (never unhandled).
   */
  run<T>(
    operation: StoreErrorEvent['operation'],
    call: () => Promise<T>,
    done: (value: T | undefined) => void,
  ): void {
    const pending = new PendingCall(this, operation, done);
    let promise: Promise<T>;
    try {
      promise = call();
    } catch (err) {
      promise = Promise.reject(err);
    }
    pending.timer = setTimeout(timedOut, this.store.timeoutMs, pending);
    promise.then(
      (value) => pending.settle(value),
      (err: unknown) => pending.fail(err),
    );
  }

  /**
   * Fire and forget: a call whose outcome changes nothing here (a pause, a broadcast, an unlock).
   * It is sent during a rest too, as long as the store is connected: no request waits for it, and
   * a broadcast lost to another call's slowness would leave the fleet uninformed.
   */
  send(operation: StoreErrorEvent['operation'], call: () => Promise<unknown>): void {
    if (this.store.available) this.run(operation, call, ignore);
    else this.#failed({ operation, reason: 'unavailable' });
  }

  /** @internal */
  failed(event: StoreErrorEvent): void {
    this.#restUntil = monotonicNow() + REST_MS;
    this.#failed(event);
  }

  #failed(event: StoreErrorEvent): void {
    this.#metrics?.storeError?.(event.operation, event.reason);
    try {
      this.store.reportError(event);
    } catch {
      // A listener's mistake must not become the request's.
    }
  }
}

function ignore(): void {}

/** One call in flight to the store. */
class PendingCall<T> {
  readonly link: StoreLink;
  readonly operation: StoreErrorEvent['operation'];
  readonly done: (value: T | undefined) => void;
  timer: NodeJS.Timeout | null = null;
  settled = false;

  constructor(
    link: StoreLink,
    operation: StoreErrorEvent['operation'],
    done: (value: T | undefined) => void,
  ) {
    this.link = link;
    this.operation = operation;
    this.done = done;
  }

  settle(value: T): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.done(value);
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.link.failed({ operation: this.operation, reason: 'error', error: toError(err) });
    this.done(undefined);
  }

  expire(): void {
    if (this.settled) return;
    this.settled = true;
    this.link.failed({ operation: this.operation, reason: 'timeout' });
    this.done(undefined);
  }
}

function timedOut<T>(pending: PendingCall<T>): void {
  pending.timer = null;
  pending.expire();
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
