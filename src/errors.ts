/**
 * Errors the library raises for decisions it made itself. Anything else (undici's errors, network
 * errors) passes through untouched. Each class carries a stable `code` and a `Symbol.for` brand so
 * that `instanceof` and the `is…` guards work across two copies of the package.
 */

// One brand per class, registered globally with Symbol.for, as undici's errors do: `instanceof`
// and the guards then work across two copies of the package, and in a minified bundle, where
// class names are renamed and cannot be compared.
const kResilienceError = Symbol.for('breakwater.error');
const kBulkheadRejectedError = Symbol.for('breakwater.error.bulkhead-rejected');
const kCircuitOpenError = Symbol.for('breakwater.error.circuit-open');
const kTimeoutError = Symbol.for('breakwater.error.timeout');
const kRateLimitedError = Symbol.for('breakwater.error.rate-limited');
const kInvalidOptionError = Symbol.for('breakwater.error.invalid-option');

export type ResilienceErrorCode =
  | 'BREAKWATER_BULKHEAD_REJECTED'
  | 'BREAKWATER_CIRCUIT_OPEN'
  | 'BREAKWATER_TIMEOUT'
  | 'BREAKWATER_RATE_LIMITED'
  | 'BREAKWATER_INVALID_OPTION';

export class ResilienceError extends Error {
  readonly code: ResilienceErrorCode;

  constructor(code: ResilienceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ResilienceError';
    this.code = code;
  }

  get [kResilienceError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, kResilienceError);
  }
}

/** A bulkhead had every slot busy and its queue full. */
export class BulkheadRejectedError extends ResilienceError {
  readonly key: string;
  readonly maxConcurrent: number;
  readonly maxQueue: number;

  constructor(key: string, maxConcurrent: number, maxQueue: number) {
    super(
      'BREAKWATER_BULKHEAD_REJECTED',
      `bulkhead full for ${key}: ${maxConcurrent} in flight and ${maxQueue} queued`,
    );
    this.name = 'BulkheadRejectedError';
    this.key = key;
    this.maxConcurrent = maxConcurrent;
    this.maxQueue = maxQueue;
  }

  get [kBulkheadRejectedError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, kBulkheadRejectedError);
  }
}

export type CircuitState = 'closed' | 'open' | 'half_open';

/** The circuit for a key is open (or half-open with every probe taken): the attempt never left. */
export class CircuitOpenError extends ResilienceError {
  readonly key: string;
  readonly state: CircuitState;
  /** Milliseconds until the breaker admits a probe again (0 when half-open and busy probing). */
  readonly retryAfterMs: number;

  constructor(key: string, state: CircuitState, retryAfterMs: number) {
    super(
      'BREAKWATER_CIRCUIT_OPEN',
      state === 'half_open'
        ? `circuit half-open for ${key}: every probe slot is taken`
        : Number.isFinite(retryAfterMs)
          ? `circuit open for ${key}: next probe in ${Math.ceil(retryAfterMs)} ms`
          : `circuit isolated for ${key}: open until reset`,
    );
    this.name = 'CircuitOpenError';
    this.key = key;
    this.state = state;
    this.retryAfterMs = retryAfterMs;
  }

  get [kCircuitOpenError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, kCircuitOpenError);
  }
}

export type TimeoutScope = 'attempt' | 'total';

/** A timeout stage fired; the request under it was aborted. */
export class TimeoutError extends ResilienceError {
  readonly scope: TimeoutScope;
  readonly ms: number;

  constructor(scope: TimeoutScope, ms: number) {
    super('BREAKWATER_TIMEOUT', `${scope} timeout of ${ms} ms exceeded`);
    this.name = 'TimeoutError';
    this.scope = scope;
    this.ms = ms;
  }

  get [kTimeoutError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, kTimeoutError);
  }
}

/**
 * A rate limit stage would have made the request wait longer than its `maxWait` for its turn
 * (the key's quota, or a pause the upstream asked for): it was never sent.
 */
export class RateLimitedError extends ResilienceError {
  readonly key: string;
  /** Milliseconds until the key would let a request through without waiting. */
  readonly retryAfterMs: number;

  constructor(key: string, retryAfterMs: number) {
    super('BREAKWATER_RATE_LIMITED', `rate limit for ${key}: next turn in ${Math.ceil(retryAfterMs)} ms`);
    this.name = 'RateLimitedError';
    this.key = key;
    this.retryAfterMs = retryAfterMs;
  }

  get [kRateLimitedError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, kRateLimitedError);
  }
}

/** An option had the wrong type or range. Thrown by the factories, never per request. */
export class InvalidOptionError extends ResilienceError {
  readonly path: string;

  constructor(path: string, expected: string, got: unknown) {
    super('BREAKWATER_INVALID_OPTION', `expected ${path} to be ${expected}, got ${describe(got)}`);
    this.name = 'InvalidOptionError';
    this.path = path;
  }

  get [kInvalidOptionError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return hasBrand(value, kInvalidOptionError);
  }
}

function hasBrand(value: unknown, brand: symbol): boolean {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/**
 * Depth bound for walking `cause` chains: fetch wraps once, user code may wrap a few more, a cycle
 * must not loop forever.
 */
const MAX_CAUSE_DEPTH = 8;

/** Finds the first error in `err`'s `cause` chain (itself included) that satisfies `predicate`. */
export function findInCauseChain<T>(err: unknown, predicate: (e: unknown) => e is T): T | undefined {
  let current = err;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current != null; depth++) {
    if (predicate(current)) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

const isBulkhead = (e: unknown): e is BulkheadRejectedError => e instanceof BulkheadRejectedError;
const isCircuit = (e: unknown): e is CircuitOpenError => e instanceof CircuitOpenError;
const isTimeout = (e: unknown): e is TimeoutError => e instanceof TimeoutError;
const isRateLimited = (e: unknown): e is RateLimitedError => e instanceof RateLimitedError;
const isInvalid = (e: unknown): e is InvalidOptionError => e instanceof InvalidOptionError;
const isResilience = (e: unknown): e is ResilienceError => e instanceof ResilienceError;

/** True when `err`, or an error in its `cause` chain (as `fetch` wraps it), is a `BulkheadRejectedError`. */
export const isBulkheadRejectedError = (err: unknown): boolean =>
  findInCauseChain(err, isBulkhead) !== undefined;
/** True when `err`, or an error in its `cause` chain, is a `CircuitOpenError`. */
export const isCircuitOpenError = (err: unknown): boolean => findInCauseChain(err, isCircuit) !== undefined;
/** True when `err`, or an error in its `cause` chain, is a `TimeoutError`. */
export const isTimeoutError = (err: unknown): boolean => findInCauseChain(err, isTimeout) !== undefined;
/** True when `err`, or an error in its `cause` chain, is a `RateLimitedError`. */
export const isRateLimitedError = (err: unknown): boolean =>
  findInCauseChain(err, isRateLimited) !== undefined;
/** True when `err`, or an error in its `cause` chain, is an `InvalidOptionError`. */
export const isInvalidOptionError = (err: unknown): boolean => findInCauseChain(err, isInvalid) !== undefined;
/** True when `err`, or an error in its `cause` chain, is any error this library raised. */
export const isResilienceError = (err: unknown): boolean => findInCauseChain(err, isResilience) !== undefined;

/** The library's own error inside `err` (e.g. unwrapping `fetch`'s `TypeError`), if any. */
export const getResilienceError = (err: unknown): ResilienceError | undefined =>
  findInCauseChain(err, isResilience);
