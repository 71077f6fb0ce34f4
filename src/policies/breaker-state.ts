/**
 * The circuit breaker's decisions for one key, apart from undici: when to open,
 * when to let a probe through, what a probe's outcome means. The adapter asks `admit()` before an
 * attempt and reports its outcome after; this class never sees a request, a timer or a clock —
 * `now` is passed in, so the state machine runs on a fake clock in tests.
 *
 * Why not cockatiel's `CircuitBreakerPolicy`: its half-open state makes other callers wait for the
 * probe instead of failing fast, it owns the call (`execute(fn)`) where an undici attempt is a
 * series of handler callbacks, and its breakers cannot report a probe that ended with no verdict
 * (the caller aborted). Its ideas — consecutive and sampling breakers, isolation, exponential
 * half-open — are kept.
 */

import type { CircuitState } from '../errors.js';
import { InvalidOptionError } from '../errors.js';
import { ExponentialDelay } from './backoff.js';

/** The breaker's settings, validated by the circuit-breaker stage. All times in milliseconds. */
export interface BreakerOptions {
  /** Opens after this many failures in a row; `false` turns the trigger off. */
  consecutiveFailures: number | false;
  /** Opens when failures / calls >= this over `window`; `false` turns the trigger off. */
  failureRatio: number | false;
  /** The sliding window of the ratio trigger. */
  window: number;
  /** Calls the window must hold before the ratio trigger may open the breaker. */
  minimumThroughput: number;
  /** Wait before a probe: `initial` after opening, doubled per consecutive re-opening, up to `max`. */
  halfOpenAfter: { initial: number; max: number };
  /** Probes allowed at once while half-open; every other call is rejected at once. */
  halfOpenProbes: number;
}

/**
 * The answer to "may this attempt go?". `probe` marks an attempt admitted to test a half-open
 * breaker: its outcome decides whether the breaker closes, and it must be reported (or released)
 * with the same flag.
 */
export type Admission =
  | { admitted: true; probe: boolean; breaker: BreakerState }
  | { admitted: false; state: 'open' | 'half_open'; retryAfterMs: number };

/** An admission that let the attempt go: it names its breaker, where the outcome is reported. */
export type Admitted = Extract<Admission, { admitted: true }>;

/**
 * A breaker as JSON, so a restarted process can start with what the last one knew. Times are
 * wall-clock epoch milliseconds. Counters of the closed state are not kept: they describe
 * traffic that a restart ends anyway.
 */
export interface BreakerSnapshot {
  state: CircuitState;
  /** When the breaker last opened; present unless closed. */
  openedAt?: number;
  /** Re-openings in a row since it last closed (a failed probe each); 0 after the first opening. */
  reopenCount: number;
  /** Forced open by `isolate()`: stays open until `reset()`. Absent reads as `false`. */
  isolated?: boolean;
}

/** The ratio window moves in this many steps; a call counts for 9/10 to 10/10 of `window`. */
const BUCKETS = 10;

/**
 * One key's breaker: closed → open (a trigger fired) → half-open (the wait elapsed; probes go
 * through) → closed (a probe succeeded) or open again with a longer wait (a probe failed).
 *
 * Outcomes are reported with the `probe` flag `admit()` gave, which keeps late results in their
 * place: a non-probe result is counted only while closed (a straggler admitted before the breaker
 * opened says nothing about a probe), and a probe's result is a verdict only while half-open.
 * Probe slots count real probe calls still running, across transitions: a probe outliving its
 * half-open period keeps its slot until it reports, so the upstream never sees more than
 * `halfOpenProbes` probes at once. Every call is O(1) amortised and allocation-free on the
 * admitted path.
 *
 * `now` is whatever clock the adapter uses for every call: policy time (internal/clock.ts), epoch
 * milliseconds read from the monotonic clock, so that snapshots carry epoch times and `fromJSON`
 * needs no second clock.
 */
export class BreakerState {
  readonly #consecutiveLimit: number;
  readonly #failureRatio: number;
  readonly #minimumThroughput: number;
  readonly #halfOpenProbes: number;
  readonly #wait: ExponentialDelay;
  readonly #bucketWidth: number;
  readonly #onTransition: ((to: CircuitState) => void) | undefined;
  // This breaker's answers when it admits: admitting is the hot path and allocates nothing. A
  // refusal allocates its answer, because it carries a time; the adapter builds a
  // CircuitOpenError from it at once, which costs far more than this small object.
  readonly #admitted: Admitted = Object.freeze({ admitted: true, probe: false, breaker: this });
  readonly #admittedAsProbe: Admitted = Object.freeze({ admitted: true, probe: true, breaker: this });

  #state: CircuitState = 'closed';
  #isolated = false;
  /** When the breaker last opened (meaningful unless closed). */
  #openedAt = 0;
  /** When an open breaker admits its next probe; `Infinity` while isolated. */
  #probeAt = 0;
  #reopenCount = 0;
  #probesInFlight = 0;
  #consecutiveFailures = 0;

  // The ratio window: a ring of time buckets with running totals, as in RetryBudget.
  readonly #calls = new Float64Array(BUCKETS);
  readonly #failures = new Float64Array(BUCKETS);
  #callTotal = 0;
  #failureTotal = 0;
  #head = Number.NEGATIVE_INFINITY;

  /**
   * @param options - validated by the circuit-breaker stage.
   * @param onTransition - called after every change of state, with the new one.
   */
  constructor(options: BreakerOptions, onTransition?: (to: CircuitState) => void) {
    // A disabled trigger becomes a threshold nothing reaches: one comparison on the hot path.
    this.#consecutiveLimit =
      options.consecutiveFailures === false ? Number.POSITIVE_INFINITY : options.consecutiveFailures;
    this.#failureRatio = options.failureRatio === false ? Number.POSITIVE_INFINITY : options.failureRatio;
    this.#minimumThroughput = options.minimumThroughput;
    this.#halfOpenProbes = options.halfOpenProbes;
    this.#wait = new ExponentialDelay(options.halfOpenAfter.initial, options.halfOpenAfter.max);
    this.#bucketWidth = options.window / BUCKETS;
    this.#onTransition = onTransition;
  }

  /**
   * The current state. An open breaker whose wait has elapsed still reads `open` until the next
   * `admit()`, which moves it to half-open as it lets the first probe through.
   */
  get state(): CircuitState {
    return this.#state;
  }

  /**
   * May an attempt go now? Closed: yes. Open: no, unless the wait has elapsed — then the breaker
   * turns half-open and this attempt is its first probe. Half-open: yes as a probe while a probe
   * slot is free, otherwise no. Never waits: a refusal is immediate.
   */
  admit(now: number): Admission {
    if (this.#state === 'closed') return this.#admitted;
    if (this.#state === 'open') {
      if (now < this.#probeAt) return { admitted: false, state: 'open', retryAfterMs: this.#probeAt - now };
      this.#transition('half_open');
    }
    if (this.#probesInFlight >= this.#halfOpenProbes)
      return { admitted: false, state: 'half_open', retryAfterMs: 0 };
    this.#probesInFlight++;
    return this.#admittedAsProbe;
  }

  /**
   * An admitted attempt succeeded. While closed it counts towards the ratio trigger; a probe's
   * success closes a half-open breaker and clears it.
   */
  recordSuccess(now: number, probe: boolean): void {
    if (probe) this.#freeProbeSlot();
    if (this.#state === 'closed') {
      this.#count(now, false);
      this.#consecutiveFailures = 0;
      // A success can be the call that brings the window to minimumThroughput with the ratio
      // already reached (Resilience4j checks after every call; Polly only after failures).
      if (this.#ratioExceeded()) this.#open(now);
    } else if (probe && this.#state === 'half_open') {
      this.#close();
    }
  }

  /**
   * An admitted attempt failed. While closed it counts towards both triggers; a probe's failure
   * re-opens a half-open breaker with a doubled wait (up to `halfOpenAfter.max`).
   */
  recordFailure(now: number, probe: boolean): void {
    if (probe) this.#freeProbeSlot();
    if (this.#state === 'closed') {
      this.#count(now, true);
      this.#consecutiveFailures++;
      if (this.#consecutiveFailures >= this.#consecutiveLimit || this.#ratioExceeded()) this.#open(now);
    } else if (probe && this.#state === 'half_open') {
      this.#reopenCount++;
      this.#open(now);
    }
  }

  /** An admitted attempt ended with no verdict (the caller aborted): frees its probe slot, if any. */
  releaseProbe(probe: boolean): void {
    if (probe) this.#freeProbeSlot();
  }

  /** Failed probes in a row since the breaker last closed. */
  get reopenCount(): number {
    return this.#reopenCount;
  }

  /**
   * Another process of the fleet opened this key's circuit: open it here too until its probe is
   * due in `retryAfterMs`, with that process's count of failed probes so the next wait grows alike.
   * An isolated breaker stays as it is. Local counting starts again afterwards.
   */
  openFromFleet(now: number, retryAfterMs: number, reopenCount: number): void {
    if (this.#isolated) return;
    this.#openedAt = now;
    this.#probeAt = now + retryAfterMs;
    this.#reopenCount = reopenCount;
    this.#clearCounters();
    if (this.#state !== 'open') this.#transition('open');
  }

  /**
   * Another process's probe succeeded: close here too. Probes still running here keep their slots
   * until they report; an isolated breaker stays open.
   */
  closeFromFleet(): void {
    if (this.#isolated || this.#state === 'closed') return;
    this.#reopenCount = 0;
    this.#clearCounters();
    this.#transition('closed');
  }

  /** Forces the breaker open, refusing every attempt and never probing, until `reset()`. */
  isolate(now: number): void {
    this.#isolated = true;
    this.#openedAt = now;
    this.#probeAt = Number.POSITIVE_INFINITY;
    if (this.#state !== 'open') this.#transition('open');
  }

  /**
   * Back to closed with every counter cleared, isolation lifted. Probes still running keep their
   * slots until they report: they are real calls in flight, not statistics.
   */
  reset(): void {
    this.#isolated = false;
    this.#reopenCount = 0;
    this.#clearCounters();
    if (this.#state !== 'closed') this.#transition('closed');
  }

  /**
   * Milliseconds until an open breaker admits a probe: 0 when closed, half-open or due,
   * `Infinity` while isolated.
   */
  retryAfterMs(now: number): number {
    if (this.#state !== 'open') return 0;
    return this.#probeAt > now ? this.#probeAt - now : 0;
  }

  /**
   * True when dropping this breaker loses nothing: closed, no call counted in the window, no probe
   * running. A consecutive-failure count older than the window is forgotten with it.
   */
  isIdle(now: number): boolean {
    if (this.#state !== 'closed' || this.#probesInFlight > 0) return false;
    this.#advance(now);
    return this.#callTotal === 0;
  }

  /** The breaker as JSON; see {@link BreakerSnapshot}. */
  toJSON(): BreakerSnapshot {
    if (this.#state === 'closed') return { state: 'closed', reopenCount: 0, isolated: false };
    return {
      state: this.#state,
      openedAt: this.#openedAt,
      reopenCount: this.#reopenCount,
      isolated: this.#isolated,
    };
  }

  /**
   * A breaker restored from `toJSON()`. An open breaker stays open for the rest of its wait,
   * counted from when it originally opened (with the wait `options` give for its re-open count);
   * an isolated one stays isolated; a half-open one resumes probing with no probe in flight.
   *
   * `now` is the current policy time (epoch milliseconds, internal/clock.ts); the adapter passes
   * the same clock everywhere, so no second clock is needed. An `openedAt` in the future (the clock
   * stepped back since) is read as now. A restored state other than closed is reported through
   * `onTransition`, so that whoever mirrors the state (metrics) learns of it like of any change.
   *
   * @throws InvalidOptionError when `snapshot` is not a breaker snapshot.
   */
  static fromJSON(
    snapshot: BreakerSnapshot,
    options: BreakerOptions,
    now: number,
    onTransition?: (to: CircuitState) => void,
  ): BreakerState {
    validateSnapshot(snapshot);
    const breaker = new BreakerState(options, onTransition);
    if (snapshot.state === 'closed') return breaker;
    breaker.#reopenCount = snapshot.reopenCount;
    breaker.#openedAt = Math.min(snapshot.openedAt ?? now, now);
    if (snapshot.isolated === true) {
      breaker.isolate(breaker.#openedAt);
    } else if (snapshot.state === 'open') {
      breaker.#probeAt = breaker.#openedAt + breaker.#wait.delay(breaker.#reopenCount + 1);
      breaker.#transition('open');
    } else {
      breaker.#transition('half_open');
    }
    return breaker;
  }

  #open(now: number): void {
    this.#openedAt = now;
    this.#probeAt = now + this.#wait.delay(this.#reopenCount + 1);
    this.#clearCounters();
    this.#transition('open');
  }

  #close(): void {
    this.#reopenCount = 0;
    this.#clearCounters();
    this.#transition('closed');
  }

  #transition(to: CircuitState): void {
    this.#state = to;
    this.#onTransition?.(to);
  }

  #freeProbeSlot(): void {
    if (this.#probesInFlight > 0) this.#probesInFlight--;
  }

  #ratioExceeded(): boolean {
    return (
      this.#callTotal >= this.#minimumThroughput && this.#failureTotal >= this.#failureRatio * this.#callTotal
    );
  }

  #count(now: number, failure: boolean): void {
    const slot = this.#advance(now);
    this.#calls[slot]! += 1;
    this.#callTotal += 1;
    if (failure) {
      this.#failures[slot]! += 1;
      this.#failureTotal += 1;
    }
  }

  #clearCounters(): void {
    this.#consecutiveFailures = 0;
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#callTotal = 0;
    this.#failureTotal = 0;
  }

  /**
   * Moves the ring forward to `now`, emptying buckets that left the window; returns the current
   * slot. A clock stepping back counts into the newest bucket.
   */
  #advance(now: number): number {
    const index = Math.floor(now / this.#bucketWidth);
    const head = this.#head;
    if (index > head) {
      const expired = Math.min(index - head, BUCKETS);
      for (let i = 1; i <= expired; i++) {
        const slot = slotOf(index - expired + i);
        this.#callTotal -= this.#calls[slot]!;
        this.#failureTotal -= this.#failures[slot]!;
        this.#calls[slot] = 0;
        this.#failures[slot] = 0;
      }
      this.#head = index;
    }
    return slotOf(this.#head);
  }
}

function slotOf(index: number): number {
  const slot = index % BUCKETS;
  return slot < 0 ? slot + BUCKETS : slot;
}

const STATES: readonly CircuitState[] = ['closed', 'open', 'half_open'];

function validateSnapshot(snapshot: BreakerSnapshot): void {
  if (typeof snapshot !== 'object' || snapshot === null) {
    throw new InvalidOptionError('snapshot', 'a breaker snapshot object', snapshot);
  }
  if (!STATES.includes(snapshot.state)) {
    throw new InvalidOptionError('snapshot.state', "one of 'closed', 'open', 'half_open'", snapshot.state);
  }
  if (!Number.isInteger(snapshot.reopenCount) || snapshot.reopenCount < 0) {
    throw new InvalidOptionError('snapshot.reopenCount', 'an integer >= 0', snapshot.reopenCount);
  }
  if (snapshot.isolated !== undefined && typeof snapshot.isolated !== 'boolean') {
    throw new InvalidOptionError('snapshot.isolated', 'a boolean', snapshot.isolated);
  }
  const needsOpenedAt = snapshot.state === 'open';
  if ((needsOpenedAt || snapshot.openedAt !== undefined) && !Number.isFinite(snapshot.openedAt)) {
    throw new InvalidOptionError(
      'snapshot.openedAt',
      'a finite number of epoch milliseconds',
      snapshot.openedAt,
    );
  }
}
