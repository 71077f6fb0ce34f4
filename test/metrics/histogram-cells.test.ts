import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { foldable, HistogramCells } from '../../src/metrics/histogram-cells.js';
import { metricShape } from '../../src/metrics/metric-shape.js';
import { DEFAULT_BUCKETS } from '../../src/metrics/options.js';

// The two places that read past prom-client's public API. If a prom-client release keeps its state
// otherwise, these tests fail here, by name, instead of the metrics going quietly slow or wrong.

const LABELS = ['origin', 'method', 'status_class'];
const VALUES = ['http://127.0.0.1:80', 'GET', '2xx'];
const OBSERVED = [0, 0.001, 0.005, 0.0051, 0.2, 0.75, 3, 10, 11, 1e6];

function histogram(
  registry: Registry,
  name: string,
  collect?: (this: Histogram<string>) => void,
): Histogram<string> {
  return new Histogram({
    name,
    help: 'h',
    labelNames: LABELS,
    buckets: [...DEFAULT_BUCKETS],
    registers: [registry],
    ...(collect === undefined ? {} : { collect }),
  });
}

describe('prom-client shape', () => {
  test('a histogram keeps its state as the cells expect (hashMap, bucketValues, sortedLabelNames, upperBounds)', () => {
    const h = histogram(new Registry(), 'h');
    assert.ok(
      foldable(h, DEFAULT_BUCKETS),
      'prom-client no longer keeps a histogram the way src/metrics/histogram-cells.ts writes it: update that file',
    );
    assert.ok(!foldable(h, [1, 2]), 'other bounds are refused');
  });

  test('a histogram with exemplars is not foldable', () => {
    const h = new Histogram({
      name: 'h',
      help: 'h',
      labelNames: LABELS,
      buckets: [...DEFAULT_BUCKETS],
      enableExemplars: true,
      registers: [],
    });
    assert.ok(!foldable(h, DEFAULT_BUCKETS));
  });

  test('cells folded into a histogram expose exactly what its public observe() would', async () => {
    const registry = new Registry();
    const publicOne = histogram(registry, 'public_seconds');
    const child = publicOne.labels(...VALUES);
    let cells: HistogramCells | undefined;
    const folded = histogram(registry, 'folded_seconds', function (this: Histogram<string>) {
      cells?.flush(this);
    });
    cells = new HistogramCells(folded, LABELS);
    const cell = cells.series(VALUES);
    // Two scrapes, with observations before each: folding twice adds, never resets.
    for (const batch of [OBSERVED.slice(0, 5), OBSERVED.slice(5)]) {
      for (const v of batch) {
        child.observe(v);
        cell.observe(v);
      }
      const a = (await registry.getSingleMetricAsString('public_seconds')).replaceAll('public_seconds', 'X');
      const b = (await registry.getSingleMetricAsString('folded_seconds')).replaceAll('folded_seconds', 'X');
      assert.equal(b, a);
      assert.match(b, /X_count\{[^}]+\} \d+/);
    }
    // A label set also observed through the public API lands in the same entry.
    folded.labels(...VALUES).observe(0.3);
    cell.observe(0.3);
    const text = await registry.getSingleMetricAsString('folded_seconds');
    assert.match(text, new RegExp(`folded_seconds_count\\{[^}]*\\} ${OBSERVED.length * 1 + 2}\\n?`));
  });

  test('metricShape reads the type, label names and bounds a metric was made with', () => {
    const registry = new Registry();
    const h = histogram(registry, 'h');
    assert.deepEqual(metricShape(h), { type: 'histogram', labelNames: LABELS, upperBounds: DEFAULT_BUCKETS });
    const c = new Counter({ name: 'c', help: 'c', labelNames: ['origin'], registers: [registry] });
    assert.deepEqual(metricShape(c), { type: 'counter', labelNames: ['origin'], upperBounds: undefined });
  });
});
