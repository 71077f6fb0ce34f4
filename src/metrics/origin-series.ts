/*
 * The series of one origin label value. Every series is looked up once, on first use, and kept (in
 * a field or a SeriesTable): after warm-up an event is a pointer comparison and an update of a
 * kept series, with no label object and no `labels()` call.
 */
import type { OriginObserver, RequestOutcome, RetryReason, StatusClass } from '../dispatch/observer.js';
import type { CircuitState, TimeoutScope } from '../errors.js';
import { normalizeMethod } from './labels.js';
import type { PoolBinding, StateBinding } from './scrape-gauges.js';
import type { CounterSeries, HistogramSeries, SeriesFactory } from './series.js';
import { SeriesTable } from './series-table.js';

/** The series factories of every metric, as one metrics object uses them. */
export interface MetricSet {
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
  /** The pool gauge's set, when `dispatchers` were given. */
  readonly poolSources: Set<PoolBinding> | undefined;
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

export class OriginSeries implements OriginObserver {
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
