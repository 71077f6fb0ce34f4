import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { Agent } from 'undici';
import { prometheusMetrics } from '../../src/index.js';
import { allPanels, asPromQL, dashboardExprs, loadDashboard } from './fixtures/dashboard.js';
import { reportEveryEvent } from './fixtures/every-event.js';
import { parseSamples, queryableNames } from './fixtures/exposition.js';
import { findBinary, promtool, required, skipUnlessFound } from './fixtures/prometheus-binaries.js';

// The files of examples/prometheus/ are checked by Prometheus' own tool, and every metric and
// label they query is checked against what the library really exports.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = join(ROOT, 'examples/prometheus');
const PROMETHEUS_YML = join(DIR, 'prometheus.yml');
const ALERTS_YML = join(DIR, 'alerts.yml');
const ALERTS_UNIT_YML = join(ROOT, 'test/metrics/fixtures/alerts-unit.yml');

/** Labels Prometheus itself adds to every scraped series. */
const TARGET_LABELS = ['job', 'instance'];

/** Sample name → its label names, from a real exposition with every metric populated. */
let exported: Map<string, Set<string>>;

before(
  async () => {
    const agent = new Agent();
    try {
      const registry = new Registry();
      // `dispatchers` registers the optional pool gauge, so every metric the library can export is here.
      const metrics = prometheusMetrics({ registry, dispatchers: [agent] });
      reportEveryEvent(metrics);
      const text = await registry.metrics();
      const names = queryableNames(text);
      exported = new Map([...names].map((name) => [name, new Set<string>()]));
      for (const sample of parseSamples(text)) {
        for (const label of Object.keys(sample.labels)) exported.get(sample.name)?.add(label);
      }
      // The pool gauge has no sample without a real pool; its labels are those of the specification.
      exported.set('breakwater_pool_connections', new Set(['origin', 'state']));
      assert.ok(names.has('breakwater_pool_connections'), 'the pool gauge is registered');
    } finally {
      await agent.close();
    }
  },
  { timeout: 10_000 },
);

/** Every `breakwater_*` name in a PromQL expression. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bbreakwater_[a-z_]+/g)].map((m) => m[0]);
}

/** Checks that `expr` queries only exported metrics, with labels those metrics have. */
function checkExpr(where: string, expr: string): void {
  const names = metricNames(expr);
  assert.ok(names.length > 0, `${where}: mentions a breakwater_ metric: ${expr}`);
  const known = new Set(TARGET_LABELS);
  for (const name of names) {
    const labels = exported.get(name);
    assert.ok(labels, `${where}: ${name} is exported by the library`);
    for (const l of labels) known.add(l);
  }
  for (const m of expr.matchAll(/\b(breakwater_[a-z_]+)\{([^}]*)\}/g)) {
    const labels = exported.get(m[1]!)!;
    for (const matcher of m[2]!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) {
      const label = matcher[1]!;
      assert.ok(
        labels.has(label) || TARGET_LABELS.includes(label),
        `${where}: ${m[1]} has a label '${label}'`,
      );
    }
  }
  for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) {
    for (const label of m[1]!.split(',').map((s) => s.trim())) {
      if (label !== '')
        assert.ok(known.has(label), `${where}: aggregates by '${label}', a label of its metrics`);
    }
  }
}

describe('examples/prometheus/grafana-dashboard.json', { timeout: 10_000 }, () => {
  test('parses, has panels with unique ids, a data source and a place on the grid', () => {
    const dashboard = loadDashboard();
    assert.equal(dashboard.title, 'Breakwater');
    const panels = allPanels(dashboard);
    assert.ok(panels.filter((p) => p.type !== 'row').length >= 10, 'at least 10 panels');
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const p of panels) {
      assert.ok(p.gridPos, `panel '${p.title}' has a gridPos`);
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel '${p.title}' fits the 24-column grid`);
      if (p.type !== 'row') {
        assert.ok(p.datasource, `panel '${p.title}' names its data source`);
        assert.ok((p.targets ?? []).length > 0, `panel '${p.title}' has queries`);
      }
    }
  });

  test('every expr queries breakwater_ metrics the library exports, by labels they have', () => {
    const exprs = dashboardExprs(loadDashboard());
    assert.ok(exprs.length >= 20);
    for (const { where, expr } of exprs) checkExpr(where, asPromQL(expr));
  });

  test('every metric the library exports appears on the dashboard', () => {
    const used = new Set(dashboardExprs(loadDashboard()).flatMap(({ expr }) => metricNames(expr)));
    const base = (name: string) => name.replace(/_(bucket|sum|count)$/, '');
    const missing = [...exported.keys()].map(base).filter((name) => ![...used].some((u) => base(u) === name));
    assert.deepEqual([...new Set(missing)], []);
  });
});

describe('examples/prometheus/alerts.yml', { timeout: 10_000 }, () => {
  test('the five alerts of the issue, on exported metrics and labels', () => {
    const text = readFileSync(ALERTS_YML, 'utf8');
    const alerts = [...text.matchAll(/- alert: (\S+)/g)].map((m) => m[1]);
    assert.deepEqual(alerts, [
      'BreakwaterCircuitOpen',
      'BreakwaterRetryRatioHigh',
      'BreakwaterBulkheadRejections',
      'BreakwaterQueueNearCapacity',
      'BreakwaterLatencyP99High',
    ]);
    // Each `expr:` runs until the next key at its own indentation (a block scalar or one line).
    for (const m of text.matchAll(/^( +)expr: ?(.*)\n((?:\1 .*\n|\s*\n)*)/gm)) {
      const expr = m[2] === '|' ? m[3]! : m[2]!;
      checkExpr('alerts.yml', expr);
    }
  });
});

const promtoolBinary = findBinary('promtool');

describe('promtool on examples/prometheus', {
  skip: skipUnlessFound(promtoolBinary, 'promtool'),
  timeout: 60_000,
}, () => {
  let scratch: string | undefined;
  after(() => {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  });

  test('promtool check config accepts prometheus.yml (and the rule file it loads)', () => {
    const result = promtool(required(promtoolBinary, 'promtool'), ['check', 'config', PROMETHEUS_YML]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS: .*prometheus\.yml is valid prometheus config file syntax/);
    assert.match(result.output, /SUCCESS: 5 rules found/);
  });

  test('promtool check rules accepts alerts.yml', () => {
    const result = promtool(required(promtoolBinary, 'promtool'), ['check', 'rules', ALERTS_YML]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS: 5 rules found/);
  });

  test('promtool test rules: each alert fires on its series and not on a healthy one', () => {
    const result = promtool(required(promtoolBinary, 'promtool'), ['test', 'rules', ALERTS_UNIT_YML]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS/);
  });

  test("the dashboard's expressions are valid PromQL (parsed by promtool as recording rules)", () => {
    scratch = mkdtempSync(join(tmpdir(), 'breakwater-dashboard-'));
    const exprs = dashboardExprs(loadDashboard());
    const rules = exprs
      .map(
        ({ expr }, i) =>
          `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(asPromQL(expr))}\n`,
      )
      .join('');
    const file = join(scratch, 'dashboard-rules.yml');
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules}`);
    const result = promtool(required(promtoolBinary, 'promtool'), ['check', 'rules', file]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, new RegExp(`SUCCESS: ${exprs.length} rules found`));
  });
});
