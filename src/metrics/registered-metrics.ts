/*
 * Finds or creates each metric of the catalogue in a registry. A second metrics object on the same
 * registry shares what the first registered; a metric of the same name registered by someone else
 * is used through its children if it fits, and refused with a clear error if it does not.
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import { InvalidOptionError } from '../errors.js';
import type { MetricSpec } from './catalogue.js';
import { foldable, HistogramCells } from './histogram-cells.js';
import { metricShape } from './metric-shape.js';
import type { MetricsRegistry, PromClient } from './options.js';
import { bind, boundTo, type Collect } from './scrape-gauges.js';
import {
  CounterCells,
  CounterChildren,
  type CounterSeries,
  HistogramChildren,
  type HistogramSeries,
  type SeriesFactory,
} from './series.js';

// The cells of each metric this module registered, kept beside prom-client's object, not on it.
const cellsOf = new WeakMap<object, CounterCells | HistogramCells>();

function flushCells(this: Counter<string> | Histogram<string>): void {
  cellsOf.get(this)?.flush(this as Counter<string> & Histogram<string>);
}

export class MetricBuilder {
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
    const existing = this.#existing(spec);
    if (existing !== undefined) {
      const cells = cellsOf.get(existing);
      if (cells instanceof CounterCells) return cells;
      return new CounterChildren(existing as Counter<string>, spec.labels);
    }
    const cells = new CounterCells(spec.labels);
    const counter = new this.#client.Counter({
      name: this.#prefix + spec.name,
      help: spec.help,
      labelNames: spec.labels,
      registers: [this.#registry],
      collect: flushCells,
    });
    cellsOf.set(counter, cells);
    return cells;
  }

  histogram(spec: MetricSpec): SeriesFactory<HistogramSeries> {
    const existing = this.#existing(spec);
    if (existing !== undefined) {
      const cells = cellsOf.get(existing);
      if (cells instanceof HistogramCells) return cells;
      return new HistogramChildren(existing as Histogram<string>, spec.labels);
    }
    const histogram = new this.#client.Histogram({
      name: this.#prefix + spec.name,
      help: spec.help,
      labelNames: spec.labels,
      buckets: [...this.#buckets],
      registers: [this.#registry],
      collect: flushCells,
    });
    // Should a later prom-client keep its state otherwise, its public children are used instead.
    if (!foldable(histogram, this.#buckets)) return new HistogramChildren(histogram, spec.labels);
    const cells = new HistogramCells(histogram, spec.labels);
    cellsOf.set(histogram, cells);
    return cells;
  }

  /** A gauge computed at scrape time by `collect` from the bindings in the set returned. */
  gauge<B>(spec: MetricSpec, collect: Collect): Set<B> {
    const existing = this.#existing(spec);
    if (existing !== undefined) return boundTo<B>(existing) as Set<B>;
    const gauge = new this.#client.Gauge({
      name: this.#prefix + spec.name,
      help: spec.help,
      labelNames: spec.labels,
      registers: [this.#registry],
      collect,
    });
    const sources = new Set<B>();
    bind(gauge, sources);
    return sources;
  }

  /** Throws if the registry holds a metric of this name that cannot be shared. */
  check(spec: MetricSpec): void {
    this.#existing(spec);
  }

  #existing(spec: MetricSpec): Counter<string> | Gauge<string> | Histogram<string> | undefined {
    const name = this.#prefix + spec.name;
    const found = this.#registry.getSingleMetric(name);
    if (found === undefined) return undefined;
    const shape = metricShape(found);
    if (shape.type !== spec.type || !sameSet(shape.labelNames, spec.labels)) {
      throw conflict(name, spec, `a ${String(shape.type)} with labels (${shape.labelNames.join(', ')})`);
    }
    if (spec.type === 'histogram' && !sameNumbers(shape.upperBounds, this.#buckets)) {
      const bounds = shape.upperBounds?.join(', ') ?? 'unknown';
      throw conflict(
        name,
        spec,
        `a histogram with buckets (${bounds}) instead of (${this.#buckets.join(', ')})`,
      );
    }
    if (spec.type === 'gauge' && boundTo(found) === undefined) {
      throw conflict(
        name,
        spec,
        'a gauge registered by something else (breakwater computes it at scrape time, so it cannot share it)',
      );
    }
    return found as Counter<string> | Gauge<string> | Histogram<string>;
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

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && b.every((x) => a.includes(x));
}

function sameNumbers(a: readonly number[] | undefined, b: readonly number[]): boolean {
  return a !== undefined && a.length === b.length && b.every((x, i) => a[i] === x);
}
