/*
 * The series the hot path updates, one per label set, made once and kept by the origin series.
 * Counters this library registered are plain cells folded into prom-client when the registry is
 * collected (`collect` and `inc(labels, n)`, both public), so an event is one increment. Any other
 * series is a prom-client child from `labels()`, made once per label set: `labels()` itself is not
 * cached by prom-client, and building one per event costs a label object and a hash.
 */
import type { Counter, Histogram } from 'prom-client';

export interface CounterSeries {
  inc(): void;
}

export interface HistogramSeries {
  observe(seconds: number): void;
}

/** Makes (once per label set) the series the hot path keeps. */
export interface SeriesFactory<S> {
  series(values: readonly string[]): S;
}

type Labels = Record<string, string>;

export function labelObject(names: readonly string[], values: readonly string[]): Labels {
  const labels: Labels = {};
  names.forEach((name, i) => {
    labels[name] = values[i] as string;
  });
  return labels;
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

/** The cells of one counter this library registered, shared by every metrics object on its registry. */
export class CounterCells implements SeriesFactory<CounterSeries> {
  readonly #names: readonly string[];
  readonly #cells = new Map<string, CounterCell>();

  constructor(names: readonly string[]) {
    this.#names = names;
  }

  series(values: readonly string[]): CounterSeries {
    const id = values.join('\u0000');
    let cell = this.#cells.get(id);
    if (cell === undefined) {
      cell = new CounterCell(labelObject(this.#names, values));
      this.#cells.set(id, cell);
    }
    return cell;
  }

  /** Adds what the cells counted since the last call to `counter`; its `collect` calls this. */
  flush(counter: Counter<string>): void {
    for (const cell of this.#cells.values()) {
      if (cell.pending === 0) continue;
      const n = cell.pending;
      cell.pending = 0;
      counter.inc(cell.labels, n);
    }
  }
}

/** Series of a counter someone else registered: its children, one per label set. */
export class CounterChildren implements SeriesFactory<CounterSeries> {
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

/** Series of a histogram: its children, one per label set. */
export class HistogramChildren implements SeriesFactory<HistogramSeries> {
  readonly #histogram: Histogram<string>;
  readonly #names: readonly string[];

  constructor(histogram: Histogram<string>, names: readonly string[]) {
    this.#histogram = histogram;
    this.#names = names;
  }

  series(values: readonly string[]): HistogramSeries {
    return new HistogramChild(this.#histogram.labels(labelObject(this.#names, values)));
  }
}

/** A child that drops what is not a duration: prom-client throws on NaN and counts negatives. */
class HistogramChild implements HistogramSeries {
  readonly #child: HistogramSeries;

  constructor(child: HistogramSeries) {
    this.#child = child;
  }

  observe(seconds: number): void {
    if (seconds >= 0 && seconds !== Number.POSITIVE_INFINITY) this.#child.observe(seconds);
  }
}
