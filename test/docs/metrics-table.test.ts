import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { prometheusMetrics } from '../../src/index.js';
import { ROOT } from '../helpers/child.js';
import { reportEveryEvent } from '../metrics/fixtures/every-event.js';

// The metrics table (docs/metrics.md) is the contract dashboards and alert rules depend on: it must list
// exactly what the library registers, with the same type and labels.

/** name → "type: label, label" from the table in docs/metrics.md. */
function documented(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of readFileSync(join(ROOT, 'docs/metrics.md'), 'utf8').split('\n')) {
    const m = /^\| `(breakwater_[a-z_]+)` \| (counter|gauge|histogram) \| ([a-z_, ]+) \|/.exec(line);
    if (m)
      rows.set(
        m[1]!,
        `${m[2]}: ${m[3]!
          .split(',')
          .map((l) => l.trim())
          .sort()
          .join(', ')}`,
      );
  }
  return rows;
}

test('the metrics table in docs/metrics.md lists exactly what prometheusMetrics() registers, types and labels', async () => {
  const registry = new Registry();
  const agent = new Agent();
  try {
    const metrics = prometheusMetrics({ registry, dispatchers: [agent] });
    reportEveryEvent(metrics);
    // The Agent's pool gauge has samples once the Agent has a pool: one real request makes one.
    const server = createServer((_req, res) => res.end('ok'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    await (await request(`http://127.0.0.1:${port}/`, { dispatcher: agent })).body.text();
    server.closeAllConnections();
    server.close();
    const registered = new Map<string, string>();
    for (const metric of await registry.getMetricsAsJSON()) {
      const labels = new Set<string>();
      for (const value of metric.values) for (const label of Object.keys(value.labels)) labels.add(label);
      labels.delete('le');
      if (metric.name === 'breakwater_pool_connections' && labels.size === 0)
        labels.add('origin').add('state');
      registered.set(metric.name, `${metric.type}: ${[...labels].sort().join(', ')}`);
    }
    assert.deepEqual(
      Object.fromEntries([...documented()].sort()),
      Object.fromEntries([...registered].sort()),
    );
  } finally {
    await agent.close();
  }
});
