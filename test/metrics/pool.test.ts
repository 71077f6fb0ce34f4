import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { prometheusMetrics } from '../../src/metrics/prometheus.js';

// breakwater_pool_connections reads `agent.stats` of a real undici Agent at scrape time.

let server: Server;
let origin: string;
/** Responses the server holds until the test releases them. */
const held: ServerResponse[] = [];

before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/hold') held.push(res);
    else res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function poolLines(registry: Registry): Promise<string[]> {
  return (await registry.getSingleMetricAsString('breakwater_pool_connections'))
    .split('\n')
    .filter((l) => !l.startsWith('#'));
}

/** Polls `condition` (a few ms apart, up to a second): undici updates its counters asynchronously. */
async function settle(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await condition()); i++)
    await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('breakwater_pool_connections', () => {
  test('reports an Agent pool per origin: idle, then busy', async () => {
    const agent = new Agent();
    try {
      const registry = new Registry();
      prometheusMetrics({ registry, dispatchers: [agent] });
      // Before any request the agent has no pool: no series.
      assert.deepEqual(await poolLines(registry), []);

      const res = await request(`${origin}/`, { dispatcher: agent });
      await res.body.text();
      // The client marks its connection free when it drains, a tick after the body ends.
      await settle(async () => (await poolLines(registry)).some((l) => l.endsWith('state="free"} 1')));
      assert.deepEqual(await poolLines(registry), [
        `breakwater_pool_connections{origin="${origin}",state="connected"} 1`,
        `breakwater_pool_connections{origin="${origin}",state="free"} 1`,
        `breakwater_pool_connections{origin="${origin}",state="pending"} 0`,
        `breakwater_pool_connections{origin="${origin}",state="queued"} 0`,
        `breakwater_pool_connections{origin="${origin}",state="running"} 0`,
      ]);

      const inFlight = request(`${origin}/hold`, { dispatcher: agent });
      while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      assert.deepEqual(await poolLines(registry), [
        `breakwater_pool_connections{origin="${origin}",state="connected"} 1`,
        `breakwater_pool_connections{origin="${origin}",state="free"} 0`,
        `breakwater_pool_connections{origin="${origin}",state="pending"} 0`,
        `breakwater_pool_connections{origin="${origin}",state="queued"} 0`,
        `breakwater_pool_connections{origin="${origin}",state="running"} 1`,
      ]);
      held.shift()?.end('done');
      await (await inFlight).body.text();
    } finally {
      await agent.close();
    }
  });

  test('an Agent of Clients (connections: 1) reports what a Client knows', async () => {
    const agent = new Agent({ connections: 1 });
    try {
      const registry = new Registry();
      prometheusMetrics({ registry, dispatchers: [agent] });
      await (await request(`${origin}/`, { dispatcher: agent })).body.text();
      assert.deepEqual(await poolLines(registry), [
        `breakwater_pool_connections{origin="${origin}",state="connected"} 1`,
        `breakwater_pool_connections{origin="${origin}",state="pending"} 0`,
        `breakwater_pool_connections{origin="${origin}",state="running"} 0`,
      ]);
    } finally {
      await agent.close();
    }
  });

  test('two Agents to one origin are summed; the origin label is bounded like the others', async () => {
    const a = new Agent();
    const b = new Agent();
    try {
      const registry = new Registry();
      const metrics = prometheusMetrics({ registry, dispatchers: [a, b], maxOrigins: 1 });
      metrics.origin('http://first.test:80'); // takes the only slot
      await (await request(`${origin}/`, { dispatcher: a })).body.text();
      await (await request(`${origin}/`, { dispatcher: b })).body.text();
      const lines = await poolLines(registry);
      assert.ok(
        lines.includes('breakwater_pool_connections{origin="other",state="connected"} 2'),
        lines.join('\n'),
      );
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('not registered without dispatchers', () => {
    const registry = new Registry();
    prometheusMetrics({ registry });
    assert.equal(registry.getSingleMetric('breakwater_pool_connections'), undefined);
  });
});
