/*
 * The one place that writes prom-client's private state, because its public path is too slow for
 * the hot path: a cached child's `observe()` still validates and hashes its label object on every
 * call, many times what these cells cost (a bucket search and three additions); docs/benchmarks.md
 * has the `npm run bench:isolated` figures. Observations are kept in cells of our own and added into the histogram's per-label-set
 * entries (prom-client 15's `hashMap`, `bucketValues` and its hash key format) when the registry
 * collects, at scrape time.
 *
 * `foldable()` checks that shape before any cell is made; where it does not hold (another
 * prom-client, exemplars on) the caller uses prom-client's public children instead, so a changed
 * shape costs speed, never correctness. test/metrics/histogram-cells.test.ts fails loudly if the
 * installed prom-client no longer has it.
 */
import type { HistogramSeries, SeriesFactory } from './series.js';
import { labelObject } from './series.js';

type Labels = Record<string, string>;

/** What a prom-client 15 histogram keeps per label set (`lib/histogram.js`). */
interface HistogramEntry {
  labels: Labels;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/** The state of a prom-client 15 histogram that the cells are added into. */
interface HistogramInternals {
  hashMap: Record<string, HistogramEntry>;
  upperBounds: readonly number[];
  bucketValues: Readonly<Record<number, number>>;
  sortedLabelNames: readonly string[];
  enableExemplars?: boolean;
}

/** Whether `histogram` keeps its state as prom-client 15 does, with exactly these bounds. */
export function foldable(histogram: object, buckets: readonly number[]): boolean {
  const h = histogram as Partial<HistogramInternals>;
  return (
    typeof h.hashMap === 'object' &&
    h.hashMap !== null &&
    typeof h.bucketValues === 'object' &&
    h.bucketValues !== null &&
    Array.isArray(h.sortedLabelNames) &&
    Array.isArray(h.upperBounds) &&
    h.upperBounds.length === buckets.length &&
    buckets.every((b, i) => h.upperBounds?.[i] === b) &&
    h.enableExemplars !== true
  );
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

/** The cells of one histogram, shared by every metrics object on its registry. */
export class HistogramCells implements SeriesFactory<HistogramSeries> {
  readonly #names: readonly string[];
  readonly #sortedNames: readonly string[];
  readonly #bounds: readonly number[];
  readonly #cells = new Map<string, HistogramCell>();

  /** `histogram` must be `foldable()`. */
  constructor(histogram: object, names: readonly string[]) {
    const h = histogram as HistogramInternals;
    this.#names = names;
    this.#sortedNames = h.sortedLabelNames;
    this.#bounds = h.upperBounds;
  }

  series(values: readonly string[]): HistogramSeries {
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

  /** Adds what the cells observed since the last call; the histogram's `collect` calls this. */
  flush(histogram: object): void {
    const h = histogram as HistogramInternals;
    const map = h.hashMap;
    const bounds = this.#bounds;
    for (const cell of this.#cells.values()) {
      if (cell.count === 0) continue;
      let entry = map[cell.hash];
      if (entry === undefined) {
        entry = { labels: cell.labels, bucketValues: { ...h.bucketValues }, sum: 0, count: 0 };
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
