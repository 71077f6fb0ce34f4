/*
 * `openTelemetryMetrics()`: a pipeline observer that records through an OpenTelemetry meter.
 * `http.client.request.duration` follows the HTTP client semantic conventions, one data point per
 * logical request (what the caller waited, retries included); Breakwater's own instruments are
 * named `breakwater.client.*`. Gauges are read from the attached pipelines when the SDK collects.
 */
import {
  type Attributes,
  type Histogram,
  type MeterProvider,
  metrics,
  type ObservableResult,
  ValueType,
} from '@opentelemetry/api';
import type {
  KeySnapshot,
  OriginObserver,
  PipelineObserver,
  RequestOutcome,
  RetryReason,
  StateSource,
  StatusClass,
} from '../dispatch/observer.js';
import { type CircuitState, InvalidOptionError, type TimeoutScope } from '../errors.js';
import { knownKeys, optionalObject } from '../internal/validate.js';
import { errorType, methodAttributes, serverAttributes } from './attributes.js';

export interface OpenTelemetryMetricsOptions {
  /**
   * Where the instruments are created.
   * @default the global meter provider (`metrics.getMeterProvider()` when this is called)
   */
  meterProvider?: MeterProvider;
}

/** The HTTP client semantic conventions' advised bounds for `http.client.request.duration`, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
const SCOPE = 'breakwater';
const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half_open'];
/** Distinct origins given `server.*` attributes; further ones share a handle without them. */
const MAX_ORIGINS = 100;
/** Distinct ways requests to one origin ended (method and status or error type) that are kept. */
const MAX_ENDINGS = 256;
// When several keys share an origin, the worst state wins.
const CIRCUIT_SEVERITY: Readonly<Record<CircuitState, number>> = { closed: 0, half_open: 1, open: 2 };

/*
 * Counters are asynchronous (observable) counters fed by tallies of our own: an event is one
 * increment, and the SDK reads each tally's cumulative total when it collects. A synchronous
 * counter's `add()` would hash its attribute set on every event, as `record()` does for the one
 * histogram a request updates.
 */

/** A count kept here for one attribute set, reported as a cumulative total at collection. */
class Tally {
  readonly attributes: Attributes;
  n = 0;

  constructor(attributes: Attributes) {
    this.attributes = attributes;
  }
}

/** The tallies of one observable counter. */
class Tallies {
  readonly #all: Tally[] = [];

  make(attributes: Attributes): Tally {
    const tally = new Tally(attributes);
    this.#all.push(tally);
    return tally;
  }

  observe(result: ObservableResult): void {
    for (const t of this.#all) if (t.n > 0) result.observe(t.n, t.attributes);
  }
}

interface Instruments {
  readonly requestDuration: Histogram;
  readonly queueWait: Histogram;
  readonly attempts: Tallies;
  readonly retries: Tallies;
  readonly retryBudgetExhausted: Tallies;
  readonly hedges: Tallies;
  readonly rejections: Tallies;
  readonly timeouts: Tallies;
  readonly circuitTransitions: Tallies;
}

/** Reports a pipeline's events to an OpenTelemetry meter: pass it as `pipeline(stages, { metrics })`. */
export class OpenTelemetryMetrics implements PipelineObserver {
  readonly #instruments: Instruments;
  readonly #sources = new Set<StateSource>();
  readonly #handles = new Map<string, OriginMetrics>();
  readonly #other: OriginMetrics;

  /** Use `openTelemetryMetrics(options)`. */
  constructor(options: OpenTelemetryMetricsOptions = {}) {
    const o = optionalObject('openTelemetryMetrics', options);
    knownKeys('openTelemetryMetrics', o, ['meterProvider']);
    const provider = (o?.meterProvider ?? metrics.getMeterProvider()) as MeterProvider;
    if (typeof provider?.getMeter !== 'function') {
      throw new InvalidOptionError(
        'openTelemetryMetrics.meterProvider',
        'an OpenTelemetry MeterProvider',
        provider,
      );
    }
    const meter = provider.getMeter(SCOPE);
    const seconds = (name: string, description: string): Histogram =>
      meter.createHistogram(name, {
        unit: 's',
        description,
        valueType: ValueType.DOUBLE,
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      });
    const counter = (name: string, unit: string, description: string): Tallies => {
      const tallies = new Tallies();
      meter
        .createObservableCounter(name, { unit, description, valueType: ValueType.INT })
        .addCallback((result) => tallies.observe(result));
      return tallies;
    };
    this.#instruments = {
      requestDuration: seconds(
        'http.client.request.duration',
        'Duration of HTTP client requests: the whole logical request as the caller saw it, queueing and retries included.',
      ),
      queueWait: seconds('breakwater.client.queue.wait.duration', 'Time spent waiting for a bulkhead slot.'),
      attempts: counter(
        'breakwater.client.attempts',
        '{attempt}',
        'Attempts sent upstream (retries and hedges included).',
      ),
      retries: counter('breakwater.client.retries', '{retry}', 'Retries scheduled, by reason.'),
      retryBudgetExhausted: counter(
        'breakwater.client.retry_budget.exhausted',
        '{retry}',
        'Retries refused because the retry budget was exhausted.',
      ),
      hedges: counter(
        'breakwater.client.hedges',
        '{hedge}',
        'Hedged attempts sent, by result (won or lost).',
      ),
      rejections: counter(
        'breakwater.client.rejections',
        '{attempt}',
        'Requests or attempts the library turned away itself: a full bulkhead or an open circuit.',
      ),
      timeouts: counter(
        'breakwater.client.timeouts',
        '{timeout}',
        'Timeouts that fired, by scope (attempt or total).',
      ),
      circuitTransitions: counter(
        'breakwater.client.circuit.transitions',
        '{transition}',
        'Circuit breaker state changes, by the state entered.',
      ),
    };
    this.#other = new OriginMetrics({}, this.#instruments);

    const queued = meter.createObservableUpDownCounter('breakwater.client.queued_requests', {
      unit: '{request}',
      description: 'Requests waiting for a bulkhead slot.',
      valueType: ValueType.INT,
    });
    const active = meter.createObservableUpDownCounter('breakwater.client.active_attempts', {
      unit: '{attempt}',
      description: 'Attempts holding a bulkhead slot.',
      valueType: ValueType.INT,
    });
    const circuit = meter.createObservableGauge('breakwater.client.circuit.state', {
      unit: '{state}',
      description:
        'Circuit breaker state: 1 for the current state (closed, open, half_open), 0 for the others.',
      valueType: ValueType.INT,
    });
    const hedgeDelay = meter.createObservableGauge('breakwater.client.hedge.delay', {
      unit: 's',
      description: 'How long a request waits for response headers before a hedge is sent.',
      valueType: ValueType.DOUBLE,
    });
    const limit = meter.createObservableUpDownCounter('breakwater.client.concurrency_limit', {
      unit: '{attempt}',
      description: "The adaptive bulkhead's concurrency limit now.",
      valueType: ValueType.INT,
    });
    queued.addCallback((result) => this.#observeTotals(result, 'queued'));
    limit.addCallback((result) => this.#observeTotals(result, 'concurrencyLimit'));
    active.addCallback((result) => this.#observeTotals(result, 'inFlight'));
    circuit.addCallback((result) => this.#observeCircuits(result));
    hedgeDelay.addCallback((result) => this.#observeHedgeDelays(result));
  }

  /**
   * The observer for one origin label value; the same object every time for the same value. Past
   * `MAX_ORIGINS` distinct values, further origins share one handle without `server.*`.
   */
  origin(origin: string): OriginObserver {
    let handle = this.#handles.get(origin);
    if (handle === undefined) {
      const server = serverAttributes(origin);
      if (this.#handles.size >= MAX_ORIGINS || server['server.address'] === undefined) return this.#other;
      handle = new OriginMetrics(server, this.#instruments);
      this.#handles.set(origin, handle);
    }
    return handle;
  }

  /** Reports `source`'s queue, in-flight attempts, circuit states and hedge delays when the SDK collects. */
  attach(source: StateSource): void {
    if (typeof source?.snapshot !== 'function') {
      throw new InvalidOptionError('metrics.attach(source)', 'an object with a snapshot() method', source);
    }
    this.#sources.add(source);
  }

  /** Per origin label, one value merged from every key's snapshot under it. */
  #byOrigin<T>(pick: (key: KeySnapshot) => T | undefined, merge: (a: T, b: T) => T): Map<string, T> {
    const out = new Map<string, T>();
    for (const source of this.#sources) {
      for (const key of source.snapshot()) {
        const value = pick(key);
        if (value === undefined) continue;
        const current = out.get(key.origin);
        out.set(key.origin, current === undefined ? value : merge(current, value));
      }
    }
    return out;
  }

  #observeTotals(result: ObservableResult, field: 'queued' | 'inFlight' | 'concurrencyLimit'): void {
    const totals = this.#byOrigin(
      (k) => k[field],
      (a, b) => a + b,
    );
    for (const [origin, value] of totals) result.observe(value, serverAttributes(origin));
  }

  #observeCircuits(result: ObservableResult): void {
    // Several keys under one origin: the worst state stands for them.
    const worst = this.#byOrigin(
      (k) => k.circuit,
      (a, b) => (CIRCUIT_SEVERITY[b] > CIRCUIT_SEVERITY[a] ? b : a),
    );
    for (const [origin, state] of worst) {
      const server = serverAttributes(origin);
      for (const s of CIRCUIT_STATES) {
        result.observe(s === state ? 1 : 0, { ...server, 'breakwater.circuit.state': s });
      }
    }
  }

  #observeHedgeDelays(result: ObservableResult): void {
    const delays = this.#byOrigin((k) => k.hedgeDelay, Math.max);
    for (const [origin, seconds] of delays) result.observe(seconds, serverAttributes(origin));
  }
}

/** How requests and attempts to one origin ended one way: their attributes and attempts so far. */
interface Ending {
  readonly attributes: Attributes;
  readonly attempts: Tally;
}

/** One origin's events. Attribute sets and tallies are made once per distinct combination. */
class OriginMetrics implements OriginObserver {
  readonly #server: Attributes;
  readonly #i: Instruments;
  /** `method status` or `method error.type` → how a request or an attempt ended. */
  readonly #endings = new Map<string, Ending>();
  #lastMethod: string | undefined;
  #lastStatus = -1;
  #lastEnding: Ending | undefined;
  readonly #labelled = new Map<string, Tally>();
  readonly #budgetExhausted: Tally;

  constructor(server: Attributes, instruments: Instruments) {
    this.#server = server;
    this.#i = instruments;
    this.#budgetExhausted = instruments.retryBudgetExhausted.make(server);
  }

  requestFinished(
    method: string,
    _outcome: RequestOutcome,
    _statusClass: StatusClass,
    seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void {
    if (!(seconds >= 0)) return;
    this.#i.requestDuration.record(seconds, this.#ending(method, statusCode, error).attributes);
  }

  attemptFinished(
    method: string,
    _statusClass: StatusClass,
    _seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void {
    this.#ending(method, statusCode, error).attempts.n++;
  }

  retryScheduled(reason: RetryReason): void {
    this.#tally(this.#i.retries, 'breakwater.retry.reason', reason).n++;
  }

  retryBudgetExhausted(): void {
    this.#budgetExhausted.n++;
  }

  queueWaited(seconds: number): void {
    if (seconds >= 0) this.#i.queueWait.record(seconds, this.#server);
  }

  bulkheadRejected(): void {
    this.#tally(this.#i.rejections, 'breakwater.rejection.reason', 'bulkhead').n++;
  }

  timedOut(scope: TimeoutScope): void {
    this.#tally(this.#i.timeouts, 'breakwater.timeout.scope', scope).n++;
  }

  circuitTransition(to: CircuitState): void {
    this.#tally(this.#i.circuitTransitions, 'breakwater.circuit.state', to).n++;
  }

  circuitRejected(): void {
    this.#tally(this.#i.rejections, 'breakwater.rejection.reason', 'circuit_open').n++;
  }

  hedgeFinished(result: 'won' | 'lost'): void {
    this.#tally(this.#i.hedges, 'breakwater.hedge.result', result).n++;
  }

  /** How a request or attempt that ended with `statusCode` or `error` is recorded. */
  #ending(method: string, statusCode: number | undefined, error: Error | null | undefined): Ending {
    const failed = error !== null && error !== undefined;
    // A client mostly sends one method and gets one status: compare with the last first.
    if (!failed && method === this.#lastMethod && statusCode === this.#lastStatus) return this.#lastEnding!;
    const type = errorType(statusCode, error);
    let id = failed ? `${method} ${type}` : `${method} ${statusCode}`;
    let ending = this.#endings.get(id);
    if (ending === undefined) {
      // Error codes are open-ended: past the bound, further ones are counted as `_OTHER`.
      if (failed && this.#endings.size >= MAX_ENDINGS) {
        id = `${method} _OTHER`;
        ending = this.#endings.get(id);
      }
    }
    if (ending === undefined) {
      const attributes = methodAttributes(method, { ...this.#server });
      if (!failed && statusCode !== undefined && statusCode > 0) {
        attributes['http.response.status_code'] = statusCode;
      }
      if (type !== undefined) attributes['error.type'] = id.endsWith(' _OTHER') ? '_OTHER' : type;
      ending = { attributes, attempts: this.#i.attempts.make(attributes) };
      this.#endings.set(id, ending);
    }
    if (!failed) {
      this.#lastMethod = method;
      this.#lastStatus = statusCode ?? -1;
      this.#lastEnding = ending;
    }
    return ending;
  }

  #tally(tallies: Tallies, name: string, value: string): Tally {
    const id = `${name}=${value}`;
    let tally = this.#labelled.get(id);
    if (tally === undefined) {
      tally = tallies.make({ ...this.#server, [name]: value });
      this.#labelled.set(id, tally);
    }
    return tally;
  }
}

/**
 * Creates Breakwater's OpenTelemetry instruments in `options.meterProvider` (the global one when
 * omitted) and returns the observer to pass as `pipeline(stages, { metrics })`, alone or beside
 * `prometheusMetrics()`.
 */
export function openTelemetryMetrics(options: OpenTelemetryMetricsOptions = {}): OpenTelemetryMetrics {
  return new OpenTelemetryMetrics(options);
}
