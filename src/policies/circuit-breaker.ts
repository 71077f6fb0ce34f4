// The circuit breaker stage: its options, one breaker per key, its controls (`isolate`, `reset`,
// snapshots) and state-change events. The decisions are in breaker-state.ts, the dispatch adapter
// in dispatch/breaker-gate.ts.

import type { CircuitState } from '../errors.js';
import { InvalidOptionError } from '../errors.js';
import { policyNow } from '../internal/clock.js';
import { type Disposable, Event } from '../internal/event.js';
import { KeyedMap } from '../internal/keyed-map.js';
import { duration, integer, knownKeys, optionalObject, ratio } from '../internal/validate.js';
import { channels } from '../telemetry/channels.js';
import { type BreakerOptions, type BreakerSnapshot, BreakerState } from './breaker-state.js';

export interface CircuitBreakerOptions {
  /**
   * Opens after this many failed attempts in a row; `false` turns the trigger off.
   * @default 10
   */
  consecutiveFailures?: number | false;
  /**
   * Opens when at least this share of attempts failed over `window`; `false` turns it off.
   * @default 0.5
   */
  failureRatio?: number | false;
  /**
   * The sliding window of the ratio trigger, in milliseconds.
   * @default 30_000
   */
  window?: number;
  /**
   * Attempts the window must hold before the ratio trigger may open it.
   * @default 20
   */
  minimumThroughput?: number;
  /**
   * Milliseconds open before a probe is let through; `{ initial, max }` doubles the wait each time
   * a probe fails, up to `max`.
   * @default 5_000
   */
  halfOpenAfter?: number | { initial: number; max: number };
  /**
   * Probes allowed at once while half-open; every other attempt fails fast.
   * @default 1
   */
  halfOpenProbes?: number;
  /**
   * Keys whose breakers are kept; the least recently used closed, idle one is dropped beyond it.
   * An open breaker is never dropped.
   * @default 1000
   */
  maxKeys?: number;
}

/** Emitted when one key's breaker changes state. */
export interface CircuitStateChange {
  key: string;
  from: CircuitState;
  to: CircuitState;
}

/** What `toJSON()` returns and `restore()` takes: every key's breaker, in wall-clock time. */
export interface CircuitBreakerSnapshot {
  version: 1;
  keys: Record<string, BreakerSnapshot>;
}

/** A circuit breaker stage: one breaker per key, manual control, snapshots and events. */
export class CircuitBreakerStage {
  readonly kind = 'circuitBreaker';
  readonly options: BreakerOptions;
  readonly breakers: KeyedMap<BreakerState>;
  readonly #onStateChange = new Event<CircuitStateChange>();

  constructor(options: CircuitBreakerOptions = {}) {
    const o = optionalObject('circuitBreaker', options);
    knownKeys('circuitBreaker', o, [
      'consecutiveFailures',
      'failureRatio',
      'window',
      'minimumThroughput',
      'halfOpenAfter',
      'halfOpenProbes',
      'maxKeys',
    ]);
    const consecutiveFailures =
      o?.consecutiveFailures === false
        ? false
        : integer('circuitBreaker.consecutiveFailures', o?.consecutiveFailures, 1, 10);
    const failureRatio =
      o?.failureRatio === false ? false : ratio('circuitBreaker.failureRatio', o?.failureRatio, 0.5);
    if (failureRatio === 0) {
      throw new InvalidOptionError('circuitBreaker.failureRatio', 'a number > 0 and <= 1, or false', 0);
    }
    if (consecutiveFailures === false && failureRatio === false) {
      throw new InvalidOptionError(
        'circuitBreaker',
        'at least one trigger (consecutiveFailures or failureRatio)',
        'both false',
      );
    }
    this.options = {
      consecutiveFailures,
      failureRatio,
      window: duration('circuitBreaker.window', o?.window, 30_000),
      minimumThroughput: integer('circuitBreaker.minimumThroughput', o?.minimumThroughput, 1, 20),
      halfOpenAfter: halfOpenAfter(o?.halfOpenAfter),
      halfOpenProbes: integer('circuitBreaker.halfOpenProbes', o?.halfOpenProbes, 1, 1),
    };
    const maxKeys = integer('circuitBreaker.maxKeys', o?.maxKeys, 1, 1000);
    this.breakers = new KeyedMap(
      maxKeys,
      (key) => this.#create(key),
      // Any closed breaker may go (it forgets a few recent outcomes); an open or half-open one
      // must stay, or the upstream it protects would be hit again at once.
      (breaker) => breaker.state === 'closed',
    );
  }

  /** Subscribes to state changes of every key's breaker. */
  onStateChange(listener: (event: CircuitStateChange) => void): Disposable {
    return this.#onStateChange.subscribe(listener);
  }

  /** The state of `key`'s breaker (`closed` for a key never seen). */
  state(key: string): CircuitState {
    return this.breakers.peek(key)?.state ?? 'closed';
  }

  /** Forces `key`'s circuit open until `reset(key)`: for maintenance windows and kill switches. */
  isolate(key: string): void {
    this.breakers.get(key).isolate(policyNow());
  }

  /** Closes `key`'s circuit and clears what it counted. */
  reset(key: string): void {
    this.breakers.peek(key)?.reset();
  }

  /** Every key's breaker, serialisable, so a restarted process can start with what it knew. */
  toJSON(): CircuitBreakerSnapshot {
    const keys: Record<string, BreakerSnapshot> = {};
    for (const [key, breaker] of this.breakers.entries()) keys[key] = breaker.toJSON();
    return { version: 1, keys };
  }

  /**
   * Restores breakers from `toJSON()`. An open breaker stays open for the rest of its wait,
   * counted from when it opened, not from now.
   */
  restore(snapshot: CircuitBreakerSnapshot): void {
    if (typeof snapshot !== 'object' || snapshot === null || snapshot.version !== 1) {
      throw new InvalidOptionError('snapshot', 'a CircuitBreakerSnapshot with version 1', snapshot);
    }
    const now = policyNow();
    for (const [key, value] of Object.entries(snapshot.keys)) {
      this.breakers.set(
        key,
        BreakerState.fromJSON(value, this.options, now, (to) => this.#emit(key, to)),
      );
    }
  }

  #create(key: string): BreakerState {
    return new BreakerState(this.options, (to) => this.#emit(key, to));
  }

  #lastState = new Map<string, CircuitState>();

  #emit(key: string, to: CircuitState): void {
    const listening = this.#onStateChange.hasListeners;
    const publishing = channels.circuitState.hasSubscribers;
    if (!listening && !publishing) return;
    const from = this.#lastState.get(key) ?? 'closed';
    if (to === 'closed') this.#lastState.delete(key);
    else this.#lastState.set(key, to);
    const change: CircuitStateChange = { key, from, to };
    if (listening) this.#onStateChange.emit(change);
    if (publishing) channels.circuitState.publish(change);
  }
}

function halfOpenAfter(value: unknown): { initial: number; max: number } {
  if (value === undefined || typeof value === 'number') {
    const ms = duration('circuitBreaker.halfOpenAfter', value, 5_000);
    return { initial: ms, max: ms };
  }
  const o = optionalObject('circuitBreaker.halfOpenAfter', value);
  knownKeys('circuitBreaker.halfOpenAfter', o, ['initial', 'max']);
  const initial = duration('circuitBreaker.halfOpenAfter.initial', o?.initial);
  const max = duration('circuitBreaker.halfOpenAfter.max', o?.max);
  if (max < initial) {
    throw new InvalidOptionError(
      'circuitBreaker.halfOpenAfter.max',
      `>= halfOpenAfter.initial (${initial})`,
      max,
    );
  }
  return { initial, max };
}

/**
 * Fails fast while an upstream is down: per key, it opens on consecutive failures or a failure
 * ratio, rejects attempts with `CircuitOpenError` without touching the network, then lets
 * `halfOpenProbes` probes through to find out whether the upstream is back.
 */
export function circuitBreaker(options?: CircuitBreakerOptions): CircuitBreakerStage {
  return new CircuitBreakerStage(options);
}
