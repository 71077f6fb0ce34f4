import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { prometheusMetrics } from '../../src/metrics/prometheus.js';

// `promtool check metrics` is Prometheus' own linter for an exposition: naming conventions,
// units, `_total` on counters, help texts, well-formed histograms. CI installs it (Debian's
// `prometheus` package) and sets BREAKWATER_REQUIRE_PROMETHEUS=1, so there a missing binary fails.

const promtool = findPromtool();
const required = process.env.BREAKWATER_REQUIRE_PROMETHEUS === '1';
const skip =
  promtool === undefined && !required
    ? 'promtool not found on PATH (install Debian/Ubuntu package "prometheus" to run this check)'
    : false;

function findPromtool(): string | undefined {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return probe.error === undefined && probe.status === 0 ? 'promtool' : undefined;
}

function check(exposition: string): { status: number | null; output: string } {
  assert.ok(promtool, 'promtool is required (BREAKWATER_REQUIRE_PROMETHEUS=1) but was not found on PATH');
  const run = spawnSync(promtool, ['check', 'metrics'], {
    input: exposition,
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (run.error) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}`.trim() };
}

let server: Server;
let origin: string;
before(async () => {
  server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('promtool check metrics', { skip }, () => {
  test('the exposition with every metric populated has no problems', async () => {
    const agent = new Agent();
    try {
      const registry = new Registry();
      const metrics = prometheusMetrics({ registry, dispatchers: [agent] });
      await (await request(`${origin}/`, { dispatcher: agent })).body.text();
      const o = metrics.origin(origin);
      o.requestFinished('GET', 'success', '2xx', 0.012);
      o.requestFinished('POST', 'failure', '5xx', 1.5);
      o.requestFinished('GET', 'circuit_open', 'circuit_open', 0.0001);
      o.attemptFinished('GET', '2xx', 0.01);
      o.attemptFinished('GET', 'network', 0.2);
      o.retryScheduled('status');
      o.retryScheduled('network');
      o.retryScheduled('timeout');
      o.retryBudgetExhausted();
      o.queueWaited(0.004);
      o.bulkheadRejected();
      o.timedOut('attempt');
      o.timedOut('total');
      o.circuitTransition('open');
      o.circuitRejected();
      metrics.origin('https://user:pw@other.test/x?y=1').requestFinished('DELETE', 'aborted', 'aborted', 3);
      metrics.attach({
        snapshot: () => [
          { key: origin, origin, queued: 2, inFlight: 5, circuit: 'open', retryBudgetLeft: 3 },
        ],
      });

      const exposition = await registry.metrics();
      for (const name of [
        'breakwater_requests_total{',
        'breakwater_request_duration_seconds_bucket{',
        'breakwater_attempts_total{',
        'breakwater_attempt_duration_seconds_sum{',
        'breakwater_retries_total{',
        'breakwater_retry_budget_exhausted_total{',
        'breakwater_queue_depth{',
        'breakwater_in_flight{',
        'breakwater_queue_wait_seconds_count{',
        'breakwater_bulkhead_rejections_total{',
        'breakwater_timeouts_total{',
        'breakwater_circuit_state{',
        'breakwater_circuit_transitions_total{',
        'breakwater_circuit_rejections_total{',
        'breakwater_pool_connections{',
      ]) {
        assert.ok(exposition.includes(name), `${name} has a sample`);
      }
      const result = check(exposition);
      assert.equal(result.output, '', 'promtool reported problems');
      assert.equal(result.status, 0);
    } finally {
      await agent.close();
    }
  });

  test('an empty registry of ours (HELP and TYPE only) has no problems', async () => {
    const registry = new Registry();
    prometheusMetrics({ registry, prefix: 'myapp_' });
    const result = check(await registry.metrics());
    assert.equal(result.output, '');
    assert.equal(result.status, 0);
  });

  test('promtool does catch problems (the check is real)', () => {
    const result = check('# HELP bad_count x\n# TYPE bad_count counter\nbad_count 1\n');
    assert.notEqual(result.status, 0);
    assert.match(result.output, /_total/);
  });
});
