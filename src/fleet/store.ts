/**
 * What a pipeline needs from a store shared by a fleet of processes, so that its rate limits and
 * circuit breakers hold across the fleet: a few atomic operations and a broadcast. `redisStore()`
 * (`breakwater/redis`) implements it. The pipeline bounds every call by `timeoutMs` and falls back
 * to its local state when a call fails or is late (store-link.ts): an implementation may reject or
 * answer late, never needs to retry, and must not throw synchronously.
 */

import type { Disposable } from '../internal/event.js';

/** The fleet's answer to a rate limit admission. */
export interface RateGrant {
  /** Tokens granted, in order; 0 when even the first would wait longer than allowed. */
  granted: number;
  /**
   * Token i may be used `baseMs + i × interval` milliseconds from now (negative: it is free
   * already). For a refused request, how long it would have waited.
   */
  baseMs: number;
}

/** A circuit's change of state, as one process tells the others. */
export interface CircuitBroadcast {
  /** Who sent it: the others apply it, the sender ignores its own. */
  sender: string;
  key: string;
  state: 'open' | 'closed';
  /** Open: milliseconds until a probe may go. */
  retryAfterMs: number;
  /** Open: failed probes in a row so far, so every process grows the next wait alike. */
  reopenCount: number;
}

/** One store call that failed or was too late; the pipeline then used its local state. */
export interface StoreErrorEvent {
  operation: 'rate' | 'pause' | 'lock' | 'unlock' | 'publish' | 'read';
  reason: 'timeout' | 'error' | 'unavailable';
  error?: Error;
}

export interface FleetStore {
  /** The longest the pipeline waits for one call, in milliseconds. */
  readonly timeoutMs: number;
  /** Extra rate limit tokens taken per round trip when free, used later without one (0: none). */
  readonly lease: number;
  /** Connected and able to answer now; when false the pipeline does not ask. */
  readonly available: boolean;
  /**
   * Reserves tokens of `key`'s rate limit (one per `intervalMs`, `burst` at once) for `count`
   * requests that arrived together, each as long as its wait is at most `maxWaitMs`; when all
   * were granted, up to `lease` more that are free now, for later requests of this process.
   */
  acquireRate(
    key: string,
    intervalMs: number,
    burst: number,
    maxWaitMs: number,
    count: number,
    lease: number,
  ): Promise<RateGrant>;
  /** Nothing is admitted to `key` for `pauseMs`; then its bucket starts empty. */
  pauseRate(key: string, intervalMs: number, burst: number, pauseMs: number): Promise<void>;
  /** Takes `key`'s probe lock for `ms` as `owner`: -1 when taken, else the milliseconds it stays held. */
  lockProbe(key: string, owner: string, ms: number): Promise<number>;
  /** Gives back `key`'s probe lock if `owner` holds it. */
  unlockProbe(key: string, owner: string): Promise<void>;
  /**
   * Tells every process of a circuit's change, and keeps an opening readable (until its probe is
   * due) for processes that were not listening.
   */
  publishCircuit(message: CircuitBroadcast): Promise<void>;
  /** The opening in force for `key`, with `retryAfterMs` left, or null when none is. */
  readCircuit(key: string): Promise<CircuitBroadcast | null>;
  /** Hears every process's circuit changes (its own included). */
  subscribeCircuit(listener: (message: CircuitBroadcast) => void): Disposable;
  /** Called by the pipeline when a call failed, was late, or the store was unavailable. */
  reportError(event: StoreErrorEvent): void;
}
