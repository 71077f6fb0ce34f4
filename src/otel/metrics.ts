/*
 * `openTelemetryMetrics()`: a pipeline observer that records through an OpenTelemetry meter.
 * `http.client.request.duration` follows the HTTP client semantic conventions, one data point per
 * logical request (what the caller waited, retries included); Breakwater's own instruments are
 * named `breakwater.client.*`. Gauges are read from the attached pipelines when the SDK collects.
 */
import {
  type Attributes,
  type Counter,
  type Histogram,
  type MeterProvider,
  metrics,
  type ObservableResult,
  ValueType,
} from '@opentelemetry/api';
import type {
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
/** Handles kept per origin label; beyond this the map starts over (the meter bounds cardinality). */
const MAX_HANDLES = 1024;

interface Instruments {
  readonly requestDuration: Histogram;
  readonly attempts: Counter;
  readonly retries: Counter;
  readonly retryBudgetExhausted: Counter;
  readonly hedges: Counter;
  readonly rejections: Counter;
  readonly timeouts: Counter;
  readonly circuitTransitions: Counter;
  readonly queueWait: Histogram;
}

/** Reports a pipeline's events to an OpenTelemetry meter: pass it as `pipeline(stages, { metrics })`. */
export class OpenTelemetryMetrics implements PipelineObserver {
  readonly #instruments: Instruments;
  readonly #sources = new Set<StateSource>();
  readonly #handles = new Map<string, OriginMetrics>();

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
    const counter = (name: string, unit: string, description: string): Counter =>
      meter.createCounter(name, { unit, description, valueType: ValueType.INT });
    this.#instruments = {
      requestDuration: seconds(
        'http.client.request.duration',
        'Duration of HTTP client requests: the whole logical request as the caller saw it, queueing and retries included.',
      ),
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
      queueWait: seconds('breakwater.client.queue.wait.duration', 'Time spent waiting for a bulkhead slot.'),
    };

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
    queued.addCallback((result) => this.#observeTotals(result, 'queued'));
    active.addCallback((result) => this.#observeTotals(result, 'inFlight'));
    circuit.addCallback((result) => this.#observeCircuits(result));
    hedgeDelay.addCallback((result) => this.#observeHedgeDelays(result));
  }

  /** The observer for one origin label value; the same object every time for the same value. */
  origin(origin: string): OriginObserver {
    let handle = this.#handles.get(origin);
    if (handle === undefined) {
      if (this.#handles.size >= MAX_HANDLES) this.#handles.clear();
      handle = new OriginMetrics(serverAttributes(origin), this.#instruments);
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

  /** Per origin label, the attributes and every key's snapshot under it. */
  #byOrigin<T>(
    pick: (key: {
      queued: number;
      inFlight: number;
      circuit?: CircuitState;
      hedgeDelay?: number;
    }) => T | undefined,
    merge: (a: T, b: T) => T,
  ): Map<string, T> {
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

  #observeTotals(result: ObservableResult, field: 'queued' | 'inFlight'): void {
    const totals = this.#byOrigin(
      (k) => k[field],
      (a, b) => a + b,
    );
    for (const [origin, value] of totals) result.observe(value, serverAttributes(origin));
  }

  #observeCircuits(result: ObservableResult): void {
    const severity = { closed: 0, half_open: 1, open: 2 } as const;
    // Several keys under one origin: the worst state stands for them.
    const worst = this.#byOrigin(
      (k) => k.circuit,
      (a, b) => (severity[b] > severity[a] ? b : a),
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

/** One origin's events. Attribute sets are made once per distinct combination and kept. */
class OriginMetrics implements OriginObserver {
  readonly #server: Attributes;
  readonly #i: Instruments;
  /** `method status` → the attributes of a request (or attempt) that ended with that status. */
  readonly #byStatus = new Map<string, Attributes>();
  readonly #byLabel = new Map<string, Attributes>();

  constructor(server: Attributes, instruments: Instruments) {
    this.#server = server;
    this.#i = instruments;
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
    this.#i.requestDuration.record(seconds, this.#ended(method, statusCode, error));
  }

  attemptFinished(
    method: string,
    _statusClass: StatusClass,
    _seconds: number,
    statusCode?: number,
    error?: Error | null,
  ): void {
    this.#i.attempts.add(1, this.#ended(method, statusCode, error));
  }

  retryScheduled(reason: RetryReason): void {
    this.#i.retries.add(1, this.#labelled('breakwater.retry.reason', reason));
  }

  retryBudgetExhausted(): void {
    this.#i.retryBudgetExhausted.add(1, this.#server);
  }

  queueWaited(seconds: number): void {
    if (seconds >= 0) this.#i.queueWait.record(seconds, this.#server);
  }

  bulkheadRejected(): void {
    this.#i.rejections.add(1, this.#labelled('breakwater.rejection.reason', 'bulkhead'));
  }

  timedOut(scope: TimeoutScope): void {
    this.#i.timeouts.add(1, this.#labelled('breakwater.timeout.scope', scope));
  }

  circuitTransition(to: CircuitState): void {
    this.#i.circuitTransitions.add(1, this.#labelled('breakwater.circuit.state', to));
  }

  circuitRejected(): void {
    this.#i.rejections.add(1, this.#labelled('breakwater.rejection.reason', 'circuit_open'));
  }

  hedgeFinished(result: 'won' | 'lost'): void {
    this.#i.hedges.add(1, this.#labelled('breakwater.hedge.result', result));
  }

  /** The attributes of a request or attempt that ended with `statusCode` or `error`. */
  #ended(method: string, statusCode: number | undefined, error: Error | null | undefined): Attributes {
    const type = errorType(statusCode, error);
    // Errors are few and their types many: those attribute sets are not kept.
    if (error !== null && error !== undefined) {
      const a = methodAttributes(method, { ...this.#server });
      a['error.type'] = type;
      return a;
    }
    const id = `${method} ${statusCode}`;
    let a = this.#byStatus.get(id);
    if (a === undefined) {
      a = methodAttributes(method, { ...this.#server });
      if (statusCode !== undefined && statusCode > 0) a['http.response.status_code'] = statusCode;
      if (type !== undefined) a['error.type'] = type;
      if (this.#byStatus.size >= MAX_HANDLES) this.#byStatus.clear();
      this.#byStatus.set(id, a);
    }
    return a;
  }

  #labelled(name: string, value: string): Attributes {
    const id = `${name}=${value}`;
    let a = this.#byLabel.get(id);
    if (a === undefined) {
      a = { ...this.#server, [name]: value };
      this.#byLabel.set(id, a);
    }
    return a;
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
