/*
 * `prometheusMetrics()`: the observer that turns a pipeline's events into the catalogue's metrics
 * in a prom-client registry. The pieces live beside it: the catalogue (names, types, labels), the
 * options, the series kept per origin, and the gauges read at scrape time.
 */
import type { OriginObserver, PipelineObserver, StateSource } from '../dispatch/observer.js';
import { InvalidOptionError } from '../errors.js';
import { CATALOGUE } from './catalogue.js';
import { sanitizeOrigin } from './labels.js';
import { type MetricsRegistry, type PrometheusMetricsOptions, resolveOptions } from './options.js';
import { type MetricSet, OriginSeries } from './origin-series.js';
import { MetricBuilder } from './registered-metrics.js';
import {
  collectCircuitState,
  collectConcurrencyLimit,
  collectHedgeDelay,
  collectInFlight,
  collectPoolConnections,
  collectQueueDepth,
  type PoolBinding,
  type StateBinding,
} from './scrape-gauges.js';

export type { MetricsRegistry, PoolStatsLike, PoolStatsSource, PrometheusMetricsOptions } from './options.js';

/** The `origin` label value beyond `maxOrigins`, and of keys that are not origins. */
const OTHER_ORIGIN = 'other';
/** Raw `origin()` arguments remembered; cleared when full (the label mapping itself stays). */
const INPUT_CACHE_LIMIT = 1024;

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
    const { client, registry, prefix, buckets, maxOrigins, dispatchers } = resolveOptions(options);
    this.registry = registry;
    this.prefix = prefix;
    this.#maxOrigins = maxOrigins;
    const build = new MetricBuilder(client, registry, prefix, buckets);
    const withPool = dispatchers.length > 0;
    // Every conflict is found before anything is registered: a rejected call leaves no metric behind.
    for (const spec of Object.values(CATALOGUE)) {
      if (spec.type === 'gauge' && 'optional' in spec && !withPool) continue;
      build.check(spec);
    }
    const c = CATALOGUE;
    this.#set = {
      requests: build.counter(c.requests),
      requestDuration: build.histogram(c.requestDuration),
      attempts: build.counter(c.attempts),
      attemptDuration: build.histogram(c.attemptDuration),
      retries: build.counter(c.retries),
      retryBudgetExhausted: build.counter(c.retryBudgetExhausted),
      queueWait: build.histogram(c.queueWait),
      bulkheadRejections: build.counter(c.bulkheadRejections),
      timeouts: build.counter(c.timeouts),
      circuitTransitions: build.counter(c.circuitTransitions),
      circuitRejections: build.counter(c.circuitRejections),
      hedges: build.counter(c.hedges),
      storeErrors: build.counter(c.storeErrors),
      stateSources: [
        build.gauge<StateBinding>(c.queueDepth, collectQueueDepth),
        build.gauge<StateBinding>(c.inFlight, collectInFlight),
        build.gauge<StateBinding>(c.circuitState, collectCircuitState),
        build.gauge<StateBinding>(c.hedgeDelay, collectHedgeDelay),
        build.gauge<StateBinding>(c.concurrencyLimit, collectConcurrencyLimit),
      ],
      poolSources: withPool ? build.gauge<PoolBinding>(c.poolConnections, collectPoolConnections) : undefined,
    };
    for (const dispatcher of dispatchers) this.#set.poolSources?.add({ dispatcher, label: this.#labelOf });
    this.#other = new OriginSeries(OTHER_ORIGIN, this.#set);
  }

  /** A fleet store call fell back to local state. Rare: the series is looked up each time. */
  storeError(operation: string, reason: 'timeout' | 'error' | 'unavailable'): void {
    this.#set.storeErrors.series([operation, reason]).inc();
  }

  /** The observer for one origin; the same object every time for the same label value. */
  origin(origin: string): OriginObserver {
    return this.#byInput.get(origin) ?? this.#resolve(origin);
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
 * Creates the metrics of the catalogue (docs/metrics.md) in `options.registry` and returns the
 * observer to pass as `pipeline(stages, { metrics })`. Options are validated here; a bad one
 * throws `InvalidOptionError` naming its path (`metrics.prefix`, …).
 */
export function prometheusMetrics(options: PrometheusMetricsOptions): PrometheusMetrics {
  return new PrometheusMetrics(options);
}
