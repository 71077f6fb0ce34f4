// `prometheusMetrics()`: Breakwater's Prometheus metrics, counted in cells of our own as requests
// run and added into a prom-client registry when it is scraped.

import { createRequire } from 'node:module';
import type {
  Counter,
  Gauge,
  Histogram,
  OpenMetricsContentType,
  PrometheusContentType,
  Registry,
} from 'prom-client';
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
import { integer, knownKeys, optionalObject } from '../internal/validate.js';
import { normalizeMethod, sanitizeOrigin } from './labels.js';
import { SeriesTable } from './series-table.js';

/** A prom-client registry, Prometheus text or OpenMetrics. */
export type MetricsRegistry = Registry<PrometheusContentType> | Registry<OpenMetricsContentType>;

/** The counts undici reports per origin in `agent.stats` (a Pool's or a Client's stats). */
export interface PoolStatsLike {
  /** Open connections (a Client reports a boolean). */
  readonly connected?: number | boolean;
  /** Open connections without an active request. */
  readonly free?: number;
  /** Requests waiting to be sent. */
  readonly pending?: number;
  /** Requests queued in the pool. */
  readonly queued?: number;
  /** Requests in flight. */
  readonly running?: number;
}

/** A dispatcher whose `stats` are keyed by origin, such as undici's `Agent`. */
export interface PoolStatsSource {
  readonly stats: Readonly<Record<string, PoolStatsLike>>;
}

export interface PrometheusMetricsOptions {
  /**
   * The registry the metrics are registered in. Required: the library never uses prom-client's
   * global registry. Two `prometheusMetrics()` calls on one registry share the metrics.
   */
  registry: MetricsRegistry;
  /**
   * Prepended to every metric name.
   * @default 'breakwater_'
   */
  prefix?: string;
  /**
   * Upper bounds, in seconds, of the duration histograms.
   * @default [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] (OpenTelemetry's HTTP client buckets)
   */
  buckets?: readonly number[];
  /**
   * Distinct `origin` label values this object hands out; requests to further origins are
   * counted under `origin="other"`.
   * @default 100
   */
  maxOrigins?: number;
  /**
   * Dispatchers (undici `Agent`s) whose connection pools are reported as
   * `breakwater_pool_connections{origin,state}`, read from `agent.stats` at scrape time.
   * @default []
   */
  dispatchers?: readonly PoolStatsSource[];
}

/** OpenTelemetry's recommended buckets for `http.client.request.duration`, in seconds. */
const DEFAULT_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];
const DEFAULT_PREFIX = 'breakwater_';
const DEFAULT_MAX_ORIGINS = 100;
/** The `origin` label value beyond `maxOrigins`, and of keys that are not origins. */
const OTHER_ORIGIN = 'other';
/** Raw `origin()` arguments remembered; cleared when full (the label mapping itself stays). */
const INPUT_CACHE_LIMIT = 1024;
// A prefix that yields valid metric names. Colons are allowed by the data model but reserved for
// recording rules, so an exporter must not use them.
const PREFIX_PATTERN = /^(?:[a-zA-Z_][a-zA-Z0-9_]*)?$/;

const POOL_STATES = ['connected', 'free', 'pending', 'queued', 'running'] as const;
type PoolState = (typeof POOL_STATES)[number];
const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half_open'];
// When several keys share an origin label, the worst state wins.
const CIRCUIT_SEVERITY: Readonly<Record<CircuitState, number>> = { closed: 0, half_open: 1, open: 2 };

type MetricType = 'counter' | 'histogram' | 'gauge';

interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly labels: readonly string[];
  readonly help: string;
}

const SPECS = {
  requests: {
    name: 'requests_total',
    type: 'counter',
    labels: ['origin', 'method', 'outcome'],
    help: 'Logical requests finished, by outcome (success, failure, bulkhead_rejected, circuit_open, rate_limited, timeout, aborted).',
  },
  requestDuration: {
    name: 'request_duration_seconds',
    type: 'histogram',
    labels: ['origin', 'method', 'status_class'],
    help: 'Duration of whole requests as the caller saw them, queueing and retries included.',
  },
  attempts: {
    name: 'attempts_total',
    type: 'counter',
    labels: ['origin', 'method', 'status_class'],
    help: 'Attempts sent upstream, by status class or error kind.',
  },
  attemptDuration: {
    name: 'attempt_duration_seconds',
    type: 'histogram',
    labels: ['origin', 'method', 'status_class'],
    help: 'Duration of one attempt, from dispatch to its response headers or its failure.',
  },
  retries: {
    name: 'retries_total',
    type: 'counter',
    labels: ['origin', 'reason'],
    help: 'Retries scheduled, by reason (status, network, timeout).',
  },
  retryBudgetExhausted: {
    name: 'retry_budget_exhausted_total',
    type: 'counter',
    labels: ['origin'],
    help: 'Retries refused because the retry budget was exhausted.',
  },
  queueDepth: {
    name: 'queue_depth',
    type: 'gauge',
    labels: ['origin'],
    help: 'Requests waiting for a bulkhead slot.',
  },
  inFlight: {
    name: 'in_flight',
    type: 'gauge',
    labels: ['origin'],
    help: 'Attempts holding a bulkhead slot.',
  },
  queueWait: {
    name: 'queue_wait_seconds',
    type: 'histogram',
    labels: ['origin'],
    help: 'Time requests spent waiting for a bulkhead slot.',
  },
  bulkheadRejections: {
    name: 'bulkhead_rejections_total',
    type: 'counter',
    labels: ['origin'],
    help: 'Requests rejected because every bulkhead slot was busy and the queue was full.',
  },
  timeouts: {
    name: 'timeouts_total',
    type: 'counter',
    labels: ['origin', 'scope'],
    help: 'Timeouts that fired, by scope (attempt, total).',
  },
  circuitState: {
    name: 'circuit_state',
    type: 'gauge',
    labels: ['origin', 'state'],
    help: 'Circuit breaker state: 1 for the current state (closed, open, half_open), 0 for the others.',
  },
  circuitTransitions: {
    name: 'circuit_transitions_total',
    type: 'counter',
    labels: ['origin', 'to'],
    help: 'Circuit breaker state changes, by the state entered.',
  },
  circuitRejections: {
    name: 'circuit_rejections_total',
    type: 'counter',
    labels: ['origin'],
    help: 'Attempts refused while the circuit was open.',
  },
  hedges: {
    name: 'hedges_total',
    type: 'counter',
    labels: ['origin', 'result'],
    help: 'Hedged attempts sent, by result: won (its response was the answer) or lost.',
  },
  hedgeDelay: {
    name: 'hedge_delay_seconds',
    type: 'gauge',
    labels: ['origin'],
    help: 'How long a request waits for response headers before a hedge is sent.',
  },
  storeErrors: {
    name: 'store_errors_total',
    type: 'counter',
    labels: ['operation', 'reason'],
    help: 'Fleet store calls that failed, were late or found the store unavailable; the pipeline used its local state.',
  },
  poolConnections: {
    name: 'pool_connections',
    type: 'gauge',
    labels: ['origin', 'state'],
    help: 'Connection pool of the undici dispatcher (connections connected and free; requests pending, queued and running).',
  },
} as const satisfies Record<string, MetricSpec>;

type PromClient = typeof import('prom-client');
type Labels = Record<string, string>;

// prom-client is an optional peer dependency: it is loaded when metrics are asked for, so the rest
// of the library works without it installed.
const requireFromHere = createRequire(import.meta.url);
let promClient: PromClient | undefined;

function loadPromClient(): PromClient {
  if (promClient === undefined) {
    try {
      promClient = requireFromHere('prom-client') as PromClient;
    } catch (err) {
      throw new Error('prometheusMetrics() needs prom-client 15: npm install prom-client', { cause: err });
    }
  }
  return promClient;
}

/*
 * The hot path. prom-client's own children cost too much to update per request: even a cached
 * `counter.labels(...).inc()` or `histogram.labels(...).observe(v)` hashes the label object and
 * allocates, and a request and its attempt update two counters and two histograms. So series of
 * metrics this module created are cells of our own (an increment, a bucket search, no
 * allocation) that are added into prom-client when it collects, at scrape time. Metrics
 * registered by someone else get cached prom-client children.
 */

interface CounterSeries {
  inc(): void;
}

interface HistogramSeries {
  observe(seconds: number): void;
}

/** Makes (once per label set) the series the hot path keeps. */
interface SeriesFactory<S> {
  series(values: readonly string[]): S;
}

class CounterCell implements CounterSeries {
  readonly labels: Labels;
  /** Increments not yet added to the prom-client counter. */
  pending = 0;

  constructor(labels: Labels) {
    this.labels = labels;
  }

  inc(): void {
    this.pending++;
  }
}

/** The series of one counter we created, shared by every metrics object on its registry. */
class CounterCells implements SeriesFactory<CounterCell> {
  readonly #names: readonly string[];
  readonly #cells = new Map<string, CounterCell>();

  constructor(names: readonly string[]) {
    this.#names = names;
  }

  series(values: readonly string[]): CounterCell {
    const id = values.join('\u0000');
    let cell = this.#cells.get(id);
    if (cell === undefined) {
      cell = new CounterCell(labelObject(this.#names, values));
      this.#cells.set(id, cell);
    }
    return cell;
  }

  flush(counter: Counter<string>): void {
    for (const cell of this.#cells.values()) {
      if (cell.pending === 0) continue;
      const n = cell.pending;
      cell.pending = 0;
      counter.inc(cell.labels, n);
    }
  }
}

/** What a prom-client 15 histogram keeps per label set (`lib/histogram.js`). */
interface HistogramEntry {
  labels: Labels;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/** The state of a prom-client 15 histogram our cells are added into at collect time. */
interface HistogramInternals {
  hashMap: Record<string, HistogramEntry>;
  upperBounds: readonly number[];
  bucketValues: Readonly<Record<number, number>>;
  sortedLabelNames: readonly string[];
  enableExemplars?: boolean;
}

class HistogramCell implements HistogramSeries {
  readonly labels: Labels;
  /** The key prom-client files this label set under (its `hashObject`), so both write one entry. */
  readonly hash: string;
  readonly bounds: readonly number[];
  /** Observations not yet added, per bucket (not cumulative); the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(labels: Labels, hash: string, bounds: readonly number[]) {
    this.labels = labels;
    this.hash = hash;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    if (!(seconds >= 0) || seconds === Number.POSITIVE_INFINITY) return;
    const bounds = this.bounds;
    const n = bounds.length;
    let i = 0;
    while (i < n && seconds > (bounds[i] as number)) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

class HistogramCells implements SeriesFactory<HistogramCell> {
  readonly #names: readonly string[];
  readonly #sortedNames: readonly string[];
  readonly #bounds: readonly number[];
  readonly #cells = new Map<string, HistogramCell>();

  constructor(names: readonly string[], sortedNames: readonly string[], bounds: readonly number[]) {
    this.#names = names;
    this.#sortedNames = sortedNames;
    this.#bounds = bounds;
  }

  series(values: readonly string[]): HistogramCell {
    const id = values.join('\u0000');
    let cell = this.#cells.get(id);
    if (cell === undefined) {
      const labels = labelObject(this.#names, values);
      let hash = '';
      for (const name of this.#sortedNames) hash += `${name}:${labels[name]},`;
      cell = new HistogramCell(labels, hash, this.#bounds);
      this.#cells.set(id, cell);
    }
    return cell;
  }

  flush(histogram: HistogramInternals): void {
    const map = histogram.hashMap;
    const bounds = this.#bounds;
    for (const cell of this.#cells.values()) {
      if (cell.count === 0) continue;
      let entry = map[cell.hash];
      if (entry === undefined) {
        entry = { labels: cell.labels, bucketValues: { ...histogram.bucketValues }, sum: 0, count: 0 };
        map[cell.hash] = entry;
      }
      const counts = cell.counts;
      for (let i = 0; i < bounds.length; i++) {
        const n = counts[i] as number;
        if (n === 0) continue;
        const bound = bounds[i] as number;
        entry.bucketValues[bound] = (entry.bucketValues[bound] ?? 0) + n;
        counts[i] = 0;
      }
      // Above the last bound prom-client counts only in `count` (the +Inf bucket).
      counts[bounds.length] = 0;
      entry.sum += cell.sum;
      entry.count += cell.count;
      cell.sum = 0;
      cell.count = 0;
    }
  }
}

/** Series of a metric someone else registered: cached prom-client children. */
class CounterChildren implements SeriesFactory<CounterSeries> {
  readonly #counter: Counter<string>;
  readonly #names: readonly string[];

  constructor(counter: Counter<string>, names: readonly string[]) {
    this.#counter = counter;
    this.#names = names;
  }

  series(values: readonly string[]): CounterSeries {
    return this.#counter.labels(labelObject(this.#names, values));
  }
}

class HistogramChildren implements SeriesFactory<HistogramSeries> {
  readonly #histogram: Histogram<string>;
  readonly #names: readonly string[];

  constructor(histogram: Histogram<string>, names: readonly string[]) {
    this.#histogram = histogram;
    this.#names = names;
  }

  series(values: readonly string[]): HistogramSeries {
    return this.#histogram.labels(labelObject(this.#names, values));
  }
}

function labelObject(names: readonly string[], values: readonly string[]): Labels {
  const labels: Labels = {};
  names.forEach((name, i) => {
    labels[name] = values[i] as string;
  });
  return labels;
}

/*
 * What a metric this module created carries, under a registry-wide symbol, so that a second
 * `prometheusMetrics()` on the same registry (or another copy of the package) finds and shares it.
 */
const kCells = Symbol.for('breakwater.prometheus.cells.v1');
const kStateSources = Symbol.for('breakwater.prometheus.state-sources.v1');
const kPoolSources = Symbol.for('breakwater.prometheus.pool-sources.v1');

type SourcesKey = typeof kStateSources | typeof kPoolSources;

interface StateBinding {
  readonly source: StateSource;
  /** Maps a snapshot's origin to the label value of the metrics object it was attached to. */
  readonly label: (origin: string) => string;
}

interface PoolBinding {
  readonly dispatcher: PoolStatsSource;
  readonly label: (origin: string) => string;
}

interface Tagged {
  [kCells]?: CounterCells | HistogramCells;
  [kStateSources]?: Set<StateBinding>;
  [kPoolSources]?: Set<PoolBinding>;
}

/** What every prom-client metric has at runtime, though its type declarations omit it. */
interface MetricShape extends Tagged {
  readonly type?: unknown;
  readonly labelNames?: unknown;
  readonly upperBounds?: unknown;
}

/** The series factories of every metric, as one metrics object uses them. */
interface MetricSet {
  readonly requests: SeriesFactory<CounterSeries>;
  readonly requestDuration: SeriesFactory<HistogramSeries>;
  readonly attempts: SeriesFactory<CounterSeries>;
  readonly attemptDuration: SeriesFactory<HistogramSeries>;
  readonly retries: SeriesFactory<CounterSeries>;
  readonly retryBudgetExhausted: SeriesFactory<CounterSeries>;
  readonly queueWait: SeriesFactory<HistogramSeries>;
  readonly bulkheadRejections: SeriesFactory<CounterSeries>;
  readonly timeouts: SeriesFactory<CounterSeries>;
  readonly circuitTransitions: SeriesFactory<CounterSeries>;
  readonly circuitRejections: SeriesFactory<CounterSeries>;
  readonly hedges: SeriesFactory<CounterSeries>;
  readonly storeErrors: SeriesFactory<CounterSeries>;
  /** The sets the scrape-time gauges read; `attach()` adds to each. */
  readonly stateSources: ReadonlyArray<Set<StateBinding>>;
}

/**
 * Prometheus metrics for one or more pipelines: pass it as `pipeline(stages, { metrics })`.
 * Counters and histograms are updated as requests run; queue depth, in-flight and circuit state
 * are read from the attached pipelines when the registry is scraped.
 */
export class PrometheusMetrics implements PipelineObserver {
  readonly registry: MetricsRegistry;
  readonly prefix: string;
  readonly #maxOrigins: number;
  readonly #set: MetricSet;
  /** Label value → its observer; at most `maxOrigins` entries. */
  readonly #byLabel = new Map<string, OriginSeries>();
  /** Raw `origin()` argument → observer: the one lookup on the hot path. */
  readonly #byInput = new Map<string, OriginSeries>();
  readonly #other: OriginSeries;
  readonly #labelOf = (origin: string): string => this.#resolve(origin).label;

  /** Use `prometheusMetrics(options)`. */
  constructor(options: PrometheusMetricsOptions) {
    const o = optionalObject('metrics', options);
    if (o === undefined) throw new InvalidOptionError('metrics', 'an object with a registry', options);
    knownKeys('metrics', o, ['registry', 'prefix', 'buckets', 'maxOrigins', 'dispatchers']);
    const client = loadPromClient();
    const registry = checkRegistry(o.registry, client);
    const prefix = checkPrefix(o.prefix);
    const buckets = checkBuckets(o.buckets);
    this.#maxOrigins = integer('metrics.maxOrigins', o.maxOrigins, 0, DEFAULT_MAX_ORIGINS);
    const dispatchers = checkDispatchers(o.dispatchers);

    this.registry = registry;
    this.prefix = prefix;
    const build = new MetricBuilder(client, registry, prefix, buckets);
    // Every conflict is found before anything is registered: a rejected call leaves no metric behind.
    for (const spec of Object.values(SPECS)) {
      if (spec === SPECS.poolConnections && dispatchers.length === 0) continue;
      build.check(spec, spec === SPECS.poolConnections ? kPoolSources : kStateSources);
    }
    this.#set = {
      requests: build.counter(SPECS.requests),
      requestDuration: build.histogram(SPECS.requestDuration),
      attempts: build.counter(SPECS.attempts),
      attemptDuration: build.histogram(SPECS.attemptDuration),
      retries: build.counter(SPECS.retries),
      retryBudgetExhausted: build.counter(SPECS.retryBudgetExhausted),
      queueWait: build.histogram(SPECS.queueWait),
      bulkheadRejections: build.counter(SPECS.bulkheadRejections),
      timeouts: build.counter(SPECS.timeouts),
      circuitTransitions: build.counter(SPECS.circuitTransitions),
      circuitRejections: build.counter(SPECS.circuitRejections),
      hedges: build.counter(SPECS.hedges),
      storeErrors: build.counter(SPECS.storeErrors),
      stateSources: [
        build.gauge(SPECS.queueDepth, kStateSources, collectQueueDepth),
        build.gauge(SPECS.inFlight, kStateSources, collectInFlight),
        build.gauge(SPECS.circuitState, kStateSources, collectCircuitState),
        build.gauge(SPECS.hedgeDelay, kStateSources, collectHedgeDelay),
      ],
    };
    if (dispatchers.length > 0) {
      const pool = build.gauge(SPECS.poolConnections, kPoolSources, collectPoolConnections);
      for (const dispatcher of dispatchers) pool.add({ dispatcher, label: this.#labelOf });
    }
    this.#other = new OriginSeries(OTHER_ORIGIN, this.#set);
  }

  /** The observer for one origin; the same object every time for the same label value. */
  origin(origin: string): OriginObserver {
    return this.#byInput.get(origin) ?? this.#resolve(origin);
  }

  /** A fleet store call fell back to local state. Rare: the series is looked up each time. */
  storeError(operation: string, reason: 'timeout' | 'error' | 'unavailable'): void {
    this.#set.storeErrors.series([operation, reason]).inc();
  }

  /** Reports `source`'s queue depth, in-flight attempts and circuit states at every scrape. */
  attach(source: StateSource): void {
    if (typeof source?.snapshot !== 'function') {
      throw new InvalidOptionError('metrics.attach(source)', 'an object with a snapshot() method', source);
    }
    const binding: StateBinding = { source, label: this.#labelOf };
    for (const set of this.#set.stateSources) set.add(binding);
  }

  #resolve(origin: string): OriginSeries {
    let series: OriginSeries | undefined;
    // 'other' is what the pipeline reports for keys that are not origins: it takes no slot.
    const label = origin === OTHER_ORIGIN ? OTHER_ORIGIN : sanitizeOrigin(origin);
    if (label === OTHER_ORIGIN) {
      series = this.#other;
    } else {
      series = this.#byLabel.get(label);
      if (series === undefined) {
        if (this.#byLabel.size < this.#maxOrigins) {
          series = new OriginSeries(label, this.#set);
          this.#byLabel.set(label, series);
        } else {
          series = this.#other;
        }
      }
    }
    if (typeof origin === 'string') {
      if (this.#byInput.size >= INPUT_CACHE_LIMIT) this.#byInput.clear();
      this.#byInput.set(origin, series);
    }
    return series;
  }
}

/**
 * Creates Breakwater's metrics (docs/metrics.md) in `options.registry` and returns the observer to pass
 * as `pipeline(stages, { metrics })`. Options are validated here; a bad one throws
 * `InvalidOptionError` naming its path (`metrics.prefix`, …).
 */
export function prometheusMetrics(options: PrometheusMetricsOptions): PrometheusMetrics {
  return new PrometheusMetrics(options);
}

/** The per-method series of one origin, created as each label set is first used. */
class MethodSeries {
  readonly requests: SeriesTable<CounterSeries>;
  readonly requestDuration: SeriesTable<HistogramSeries>;
  readonly attempts: SeriesTable<CounterSeries>;
  readonly attemptDuration: SeriesTable<HistogramSeries>;

  constructor(origin: string, method: string, set: MetricSet) {
    this.requests = new SeriesTable((outcome) => set.requests.series([origin, method, outcome]));
    this.requestDuration = new SeriesTable((cls) => set.requestDuration.series([origin, method, cls]));
    this.attempts = new SeriesTable((cls) => set.attempts.series([origin, method, cls]));
    this.attemptDuration = new SeriesTable((cls) => set.attemptDuration.series([origin, method, cls]));
  }
}

/**
 * One origin label value. Every series is looked up once, on first use, and kept (in a field or a
 * SeriesTable): after warm-up an event is a pointer comparison and an increment, with no label
 * object and no `labels()`.
 */
class OriginSeries implements OriginObserver {
  readonly label: string;
  readonly #set: MetricSet;
  readonly #methods = new Map<string, MethodSeries>();
  #lastMethod: string | undefined;
  #lastSeries: MethodSeries | undefined;
  readonly #retries: SeriesTable<CounterSeries>;
  readonly #timeouts: SeriesTable<CounterSeries>;
  readonly #transitions: SeriesTable<CounterSeries>;
  readonly #hedges: SeriesTable<CounterSeries>;
  // Made up front: a series that has seen no event is not exposed, so this costs nothing visible.
  readonly #budgetExhausted: CounterSeries;
  readonly #queueWait: HistogramSeries;
  readonly #bulkheadRejections: CounterSeries;
  readonly #circuitRejections: CounterSeries;

  constructor(label: string, set: MetricSet) {
    this.label = label;
    this.#set = set;
    this.#retries = new SeriesTable((reason) => set.retries.series([label, reason]));
    this.#timeouts = new SeriesTable((scope) => set.timeouts.series([label, scope]));
    this.#transitions = new SeriesTable((to) => set.circuitTransitions.series([label, to]));
    this.#hedges = new SeriesTable((result) => set.hedges.series([label, result]));
    this.#budgetExhausted = set.retryBudgetExhausted.series([label]);
    this.#queueWait = set.queueWait.series([label]);
    this.#bulkheadRejections = set.bulkheadRejections.series([label]);
    this.#circuitRejections = set.circuitRejections.series([label]);
  }

  requestFinished(method: string, outcome: RequestOutcome, statusClass: StatusClass, seconds: number): void {
    const m = this.#method(method);
    m.requests.get(outcome).inc();
    m.requestDuration.get(statusClass).observe(seconds);
  }

  attemptFinished(method: string, statusClass: StatusClass, seconds: number): void {
    const m = this.#method(method);
    m.attempts.get(statusClass).inc();
    m.attemptDuration.get(statusClass).observe(seconds);
  }

  retryScheduled(reason: RetryReason): void {
    this.#retries.get(reason).inc();
  }

  retryBudgetExhausted(): void {
    this.#budgetExhausted.inc();
  }

  queueWaited(seconds: number): void {
    this.#queueWait.observe(seconds);
  }

  bulkheadRejected(): void {
    this.#bulkheadRejections.inc();
  }

  timedOut(scope: TimeoutScope): void {
    this.#timeouts.get(scope).inc();
  }

  circuitTransition(to: CircuitState): void {
    this.#transitions.get(to).inc();
  }

  circuitRejected(): void {
    this.#circuitRejections.inc();
  }

  hedgeFinished(result: 'won' | 'lost'): void {
    this.#hedges.get(result).inc();
  }

  #method(method: string): MethodSeries {
    // One client mostly sends one method: compare with the last before any lookup.
    if (method === this.#lastMethod) return this.#lastSeries as MethodSeries;
    const name = normalizeMethod(method);
    let series = this.#methods.get(name);
    if (series === undefined) {
      series = new MethodSeries(this.label, name, this.#set);
      this.#methods.set(name, series);
    }
    this.#lastMethod = method;
    this.#lastSeries = series;
    return series;
  }
}

/** Finds or creates each metric in the registry, checking that an existing one fits. */
class MetricBuilder {
  readonly #client: PromClient;
  readonly #registry: MetricsRegistry;
  readonly #prefix: string;
  readonly #buckets: readonly number[];

  constructor(client: PromClient, registry: MetricsRegistry, prefix: string, buckets: readonly number[]) {
    this.#client = client;
    this.#registry = registry;
    this.#prefix = prefix;
    this.#buckets = buckets;
  }

  counter(spec: MetricSpec): SeriesFactory<CounterSeries> {
    const name = this.#prefix + spec.name;
    const existing = this.#existing(spec);
    if (existing !== undefined) {
      const cells = existing[kCells];
      if (cells instanceof Object && 'flush' in cells) return cells as CounterCells;
      return new CounterChildren(existing as unknown as Counter<string>, spec.labels);
    }
    const cells = new CounterCells(spec.labels);
    const counter = new this.#client.Counter({
      name,
      help: spec.help,
      labelNames: spec.labels,
      registers: [this.#registry],
      collect(this: Counter<string>) {
        ((this as MetricShape)[kCells] as CounterCells).flush(this);
      },
    });
    (counter as MetricShape)[kCells] = cells;
    return cells;
  }

  histogram(spec: MetricSpec): SeriesFactory<HistogramSeries> {
    const name = this.#prefix + spec.name;
    const existing = this.#existing(spec);
    if (existing !== undefined) {
      const cells = existing[kCells];
      if (cells instanceof Object && 'flush' in cells) return cells as HistogramCells;
      return new HistogramChildren(existing as unknown as Histogram<string>, spec.labels);
    }
    const histogram = new this.#client.Histogram({
      name,
      help: spec.help,
      labelNames: spec.labels,
      buckets: [...this.#buckets],
      registers: [this.#registry],
      collect(this: Histogram<string>) {
        const self = this as unknown as HistogramInternals & MetricShape;
        (self[kCells] as HistogramCells).flush(self);
      },
    });
    const internals = histogram as unknown as HistogramInternals & MetricShape;
    // Our cells write into prom-client 15's per-label-set state. Should a later prom-client keep
    // it differently, fall back to its public (slower) children rather than report wrong numbers.
    if (!hasHistogramInternals(internals, this.#buckets)) {
      return new HistogramChildren(histogram, spec.labels);
    }
    const cells = new HistogramCells(spec.labels, internals.sortedLabelNames, internals.upperBounds);
    internals[kCells] = cells;
    return cells;
  }

  /** A gauge computed at scrape time by `collect` from the bindings in its `key` set. */
  gauge<B>(spec: MetricSpec, key: SourcesKey, collect: (this: Gauge<string>) => void): Set<B> {
    const existing = this.#existing(spec, key);
    if (existing !== undefined) return existing[key] as Set<B>;
    const gauge = new this.#client.Gauge({
      name: this.#prefix + spec.name,
      help: spec.help,
      labelNames: spec.labels,
      registers: [this.#registry],
      collect,
    });
    const sources = new Set<B>();
    (gauge as MetricShape)[key] = sources as Set<never>;
    return sources;
  }

  /** Throws if the registry holds a metric of this name that cannot be shared. */
  check(spec: MetricSpec, gaugeKey: SourcesKey): void {
    this.#existing(spec, gaugeKey);
  }

  #existing(spec: MetricSpec, gaugeKey?: SourcesKey): MetricShape | undefined {
    const name = this.#prefix + spec.name;
    const found = this.#registry.getSingleMetric(name) as MetricShape | undefined;
    if (found === undefined) return undefined;
    const labels = Array.isArray(found.labelNames) ? (found.labelNames as unknown[]) : [];
    if (found.type !== spec.type || !sameSet(labels, spec.labels)) {
      throw conflict(name, spec, `a ${String(found.type)} with labels (${labels.join(', ')})`);
    }
    if (spec.type === 'histogram' && !sameNumbers(found.upperBounds, this.#buckets)) {
      const bounds = Array.isArray(found.upperBounds) ? found.upperBounds.join(', ') : 'unknown';
      throw conflict(
        name,
        spec,
        `a histogram with buckets (${bounds}) instead of (${this.#buckets.join(', ')})`,
      );
    }
    if (spec.type === 'gauge' && gaugeKey !== undefined && !(found[gaugeKey] instanceof Set)) {
      throw conflict(
        name,
        spec,
        'a gauge registered by something else (breakwater computes it at scrape time, so it cannot share it)',
      );
    }
    return found;
  }
}

function conflict(name: string, spec: MetricSpec, got: string): InvalidOptionError {
  return new InvalidOptionError(
    'metrics.registry',
    `a registry where ${name} is unregistered or is a breakwater ${spec.type} with labels (${spec.labels.join(', ')}); ` +
      'use another metrics.prefix to keep both',
    got,
  );
}

function hasHistogramInternals(
  h: Partial<HistogramInternals>,
  buckets: readonly number[],
): h is HistogramInternals {
  return (
    typeof h.hashMap === 'object' &&
    h.hashMap !== null &&
    typeof h.bucketValues === 'object' &&
    h.bucketValues !== null &&
    Array.isArray(h.sortedLabelNames) &&
    sameNumbers(h.upperBounds, buckets) &&
    h.enableExemplars !== true
  );
}

function sameSet(a: readonly unknown[], b: readonly string[]): boolean {
  return a.length === b.length && b.every((x) => a.includes(x));
}

function sameNumbers(a: unknown, b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && b.every((x, i) => a[i] === x);
}

// --- scrape-time gauges -------------------------------------------------------------------------

function stateBindings(gauge: Gauge<string>): Iterable<StateBinding> {
  return (gauge as MetricShape)[kStateSources] ?? [];
}

/** Sums one field of every key's snapshot per origin label, across every attached pipeline. */
function setTotals(gauge: Gauge<string>, field: 'queued' | 'inFlight'): void {
  const totals = new Map<string, number>();
  for (const { source, label } of stateBindings(gauge)) {
    for (const key of source.snapshot()) {
      const origin = label(key.origin);
      totals.set(origin, (totals.get(origin) ?? 0) + key[field]);
    }
  }
  gauge.reset();
  for (const [origin, value] of totals) gauge.set({ origin }, value);
}

function collectQueueDepth(this: Gauge<string>): void {
  setTotals(this, 'queued');
}

function collectInFlight(this: Gauge<string>): void {
  setTotals(this, 'inFlight');
}

function collectHedgeDelay(this: Gauge<string>): void {
  // Several keys under one origin label: the longest delay stands for them.
  const delays = new Map<string, number>();
  for (const { source, label } of stateBindings(this)) {
    for (const key of source.snapshot()) {
      if (key.hedgeDelay === undefined) continue;
      const origin = label(key.origin);
      delays.set(origin, Math.max(delays.get(origin) ?? 0, key.hedgeDelay));
    }
  }
  this.reset();
  for (const [origin, seconds] of delays) this.set({ origin }, seconds);
}

function collectCircuitState(this: Gauge<string>): void {
  const worst = new Map<string, CircuitState>();
  for (const { source, label } of stateBindings(this)) {
    for (const key of source.snapshot() as readonly KeySnapshot[]) {
      if (key.circuit === undefined) continue;
      const origin = label(key.origin);
      const current = worst.get(origin);
      if (current === undefined || CIRCUIT_SEVERITY[key.circuit] > CIRCUIT_SEVERITY[current]) {
        worst.set(origin, key.circuit);
      }
    }
  }
  this.reset();
  for (const [origin, state] of worst) {
    for (const s of CIRCUIT_STATES) this.set({ origin, state: s }, s === state ? 1 : 0);
  }
}

function collectPoolConnections(this: Gauge<string>): void {
  const totals = new Map<string, Partial<Record<PoolState, number>>>();
  for (const { dispatcher, label } of (this as MetricShape)[kPoolSources] ?? []) {
    const stats = dispatcher.stats;
    for (const origin of Object.keys(stats)) {
      const pool = stats[origin];
      if (pool === undefined) continue;
      const key = label(origin);
      let row = totals.get(key);
      if (row === undefined) {
        row = {};
        totals.set(key, row);
      }
      for (const state of POOL_STATES) {
        const raw = pool[state];
        // A Client reports `connected` as a boolean and has no `free` or `queued`.
        const value = typeof raw === 'boolean' ? Number(raw) : raw;
        if (typeof value === 'number' && Number.isFinite(value)) row[state] = (row[state] ?? 0) + value;
      }
    }
  }
  this.reset();
  for (const [origin, row] of totals) {
    for (const state of POOL_STATES) {
      const value = row[state];
      if (value !== undefined) this.set({ origin, state }, value);
    }
  }
}

// --- option checks ------------------------------------------------------------------------------

function checkRegistry(value: unknown, client: PromClient): MetricsRegistry {
  const r = value as Partial<Registry> | null | undefined;
  if (
    typeof r !== 'object' ||
    r === null ||
    typeof r.getSingleMetric !== 'function' ||
    typeof r.registerMetric !== 'function' ||
    typeof r.metrics !== 'function'
  ) {
    throw new InvalidOptionError('metrics.registry', 'a prom-client Registry (new Registry())', value);
  }
  if (r === client.register) {
    throw new InvalidOptionError(
      'metrics.registry',
      "a Registry of your own (new Registry()), not prom-client's global register",
      'the global register',
    );
  }
  return r as MetricsRegistry;
}

function checkPrefix(value: unknown): string {
  if (value === undefined) return DEFAULT_PREFIX;
  if (typeof value !== 'string' || !PREFIX_PATTERN.test(value)) {
    throw new InvalidOptionError(
      'metrics.prefix',
      'a Prometheus metric name prefix (letters, digits and underscores, not starting with a digit)',
      value,
    );
  }
  return value;
}

function checkBuckets(value: unknown): number[] {
  if (value === undefined) return [...DEFAULT_BUCKETS];
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidOptionError(
      'metrics.buckets',
      'a non-empty array of increasing numbers of seconds',
      value,
    );
  }
  value.forEach((bound, i) => {
    const previous = i === 0 ? 0 : (value[i - 1] as number);
    if (typeof bound !== 'number' || !Number.isFinite(bound) || bound <= previous) {
      throw new InvalidOptionError(
        `metrics.buckets[${i}]`,
        i === 0 ? 'a finite number of seconds > 0' : `a finite number of seconds > ${previous}`,
        bound,
      );
    }
  });
  return [...value];
}

function checkDispatchers(value: unknown): PoolStatsSource[] {
  if (value === undefined) return [];
  if (!Array.isArray(value))
    throw new InvalidOptionError('metrics.dispatchers', 'an array of undici Agents', value);
  value.forEach((item, i) => {
    const stats = (item as { stats?: unknown } | null)?.stats;
    // An Agent's stats are keyed by origin; a Pool's or a Client's are one object of numbers,
    // with no origin to label them by.
    if (typeof stats !== 'object' || stats === null || 'connected' in stats) {
      throw new InvalidOptionError(
        `metrics.dispatchers[${i}]`,
        'an undici Agent (its stats keyed by origin)',
        item,
      );
    }
  });
  return [...value];
}
