import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { prometheusMetrics } from '../../src/index.js';
import { CATALOGUE, type MetricSpec } from '../../src/metrics/catalogue.js';
import { ROOT } from '../helpers/child.js';
import { reportEveryEvent } from '../metrics/fixtures/every-event.js';

// One catalogue (src/metrics/catalogue.ts), no drift: the table in docs/metrics.md, what
// prometheusMetrics() registers, and every metric the Grafana dashboard and the alerting rules
// query are checked against it.

const PREFIX = 'breakwater_';

/** A catalogue row as the docs table writes it: name → "type | labels | meaning". */
type Rows = Map<string, string>;

function row(type: string, labels: readonly string[], meaning: string): string {
  return `${type} | ${[...labels].sort().join(', ')} | ${meaning}`;
}

function catalogueRows(catalogue: Record<string, MetricSpec>): Rows {
  return new Map(Object.values(catalogue).map((s) => [PREFIX + s.name, row(s.type, s.labels, s.meaning)]));
}

/** The rows of the metrics table in `markdown`. */
function documentedRows(markdown: string): Rows {
  const rows: Rows = new Map();
  for (const line of markdown.split('\n')) {
    const m = /^\| `(breakwater_[a-z_]+)` \| ([a-z]+) \| ([a-z_, ]+) \| (.+) \|$/.exec(line);
    if (m)
      rows.set(
        m[1]!,
        row(
          m[2]!,
          m[3]!.split(',').map((l) => l.trim()),
          m[4]!.trim(),
        ),
      );
  }
  return rows;
}

/** Every `breakwater_*` metric name in `text` (a histogram's _bucket/_sum/_count as the histogram) the catalogue lacks. */
function unknownMetrics(text: string, catalogue: Record<string, MetricSpec>): string[] {
  const known = new Map(Object.values(catalogue).map((s) => [PREFIX + s.name, s.type]));
  const unknown = new Set<string>();
  for (const [name] of text.matchAll(/\bbreakwater_[a-z][a-z_]*/g)) {
    const base = name.replace(/_(?:bucket|sum|count)$/, '');
    if (known.has(name) || known.get(base) === 'histogram') continue;
    unknown.add(name);
  }
  return [...unknown].sort();
}

/** Differences between two row maps, one line each. */
function drift(expected: Rows, actual: Rows): string[] {
  const out: string[] = [];
  for (const [name, r] of expected) {
    const other = actual.get(name);
    if (other === undefined) out.push(`${name} missing`);
    else if (other !== r) out.push(`${name}: ${other} instead of ${r}`);
  }
  for (const name of actual.keys()) if (!expected.has(name)) out.push(`${name} not in the catalogue`);
  return out;
}

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

describe('the metrics catalogue', () => {
  test('docs/metrics.md lists exactly the catalogue: names, types, labels and meanings', () => {
    const documented = documentedRows(read('docs/metrics.md'));
    assert.ok(documented.size >= 17, 'the table was found');
    assert.deepEqual(drift(catalogueRows(CATALOGUE), documented), []);
  });

  test('every breakwater_ metric the Grafana dashboard, the alerting rules and the README name is in the catalogue', () => {
    for (const file of [
      'examples/prometheus/grafana-dashboard.json',
      'examples/prometheus/alerts.yml',
      'README.md',
    ]) {
      const text = read(file);
      assert.ok(/breakwater_requests_total/.test(text), `${file} queries breakwater_ metrics`);
      assert.deepEqual(unknownMetrics(text, CATALOGUE), [], file);
    }
  });

  test('the checks fail on drift: a bogus metric, a changed label, a missing row', () => {
    const expr =
      'sum(rate(breakwater_requests_total[5m])) / sum(rate(breakwater_request_duration_seconds_count[5m]))';
    assert.deepEqual(unknownMetrics(expr, CATALOGUE), []);
    assert.deepEqual(
      unknownMetrics(`${expr} + breakwater_bogus_total + breakwater_retries_total_bucket`, CATALOGUE),
      ['breakwater_bogus_total', 'breakwater_retries_total_bucket'],
    );
    const docs = read('docs/metrics.md');
    const changed = documentedRows(docs.replace('| origin, reason |', '| origin, why |'));
    assert.deepEqual(drift(catalogueRows(CATALOGUE), changed), [
      'breakwater_retries_total: counter | origin, why | retries scheduled: `status`, `network`, `timeout` instead of counter | origin, reason | retries scheduled: `status`, `network`, `timeout`',
    ]);
    const bogus: Record<string, MetricSpec> = {
      ...CATALOGUE,
      bogus: { name: 'bogus_total', type: 'counter', labels: ['origin'], help: 'x', meaning: 'x' },
    };
    assert.deepEqual(drift(catalogueRows(bogus), documentedRows(docs)), ['breakwater_bogus_total missing']);
  });

  test('prometheusMetrics() registers exactly the catalogue, with its types and labels', async () => {
    const registry = new Registry();
    const agent = new Agent();
    try {
      const metrics = prometheusMetrics({ registry, dispatchers: [agent] });
      reportEveryEvent(metrics);
      // The Agent's pool gauge has samples once the Agent has a pool: one real request makes one.
      const server = createServer((_req, res) => res.end('ok'));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      try {
        const { port } = server.address() as AddressInfo;
        await (await request(`http://127.0.0.1:${port}/`, { dispatcher: agent })).body.text();
      } finally {
        server.closeAllConnections();
        server.close();
      }
      const registered = new Map<string, string>();
      for (const metric of await registry.getMetricsAsJSON()) {
        const labels = new Set<string>();
        for (const value of metric.values) for (const label of Object.keys(value.labels)) labels.add(label);
        labels.delete('le');
        registered.set(metric.name, `${metric.type}: ${[...labels].sort().join(', ')}`);
      }
      const expected = new Map(
        Object.values(CATALOGUE).map((s) => [
          PREFIX + s.name,
          `${s.type}: ${[...s.labels].sort().join(', ')}`,
        ]),
      );
      assert.deepEqual(Object.fromEntries([...registered].sort()), Object.fromEntries([...expected].sort()));
    } finally {
      await agent.close();
    }
  });
});
