import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { Agent, type Dispatcher, request } from 'undici';
import {
  bulkhead,
  type CircuitBreakerStage,
  circuitBreaker,
  isCircuitOpenError,
  type MetricsServer,
  pipeline,
  prometheusMetrics,
  type ResilienceInterceptor,
  retry,
  serveMetrics,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { asPromQL, dashboardExprs, loadDashboard } from './fixtures/dashboard.js';
import { findBinary, required, skipUnlessFound } from './fixtures/prometheus-binaries.js';

/*
 * A real Prometheus server (Debian's package), started here on a free loopback port, scrapes
 * `serveMetrics()` every second and evaluates an alert on the circuit state every second. The test
 * drives a pipeline against a local upstream and asserts through Prometheus' HTTP API that the
 * series arrive with their labels and that the alert fires once the circuit is forced open.
 * Everything it starts (Prometheus, its temporary directory, servers, agents) is gone after it.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLE_ALERTS = join(ROOT, 'examples/prometheus/alerts.yml');
/** Bound on every wait for Prometheus (scrape every 1 s, rules every 1 s). */
const DEADLINE_MS = 30_000;
const JOB = 'breakwater';

const prometheusBinary = findBinary('prometheus');

interface PromResponse<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
}

interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

interface RuleGroup {
  name: string;
  rules: Array<{ name: string; health: string; lastError?: string; lastEvaluation: string }>;
}

/** A port free right now on 127.0.0.1 (Prometheus binds it a moment later; a clash is retried). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

class PrometheusProcess {
  readonly url: string;
  readonly #child: ChildProcess;
  #log = '';
  readonly #killOnExit = () => this.#child.kill('SIGKILL');

  constructor(binary: string, dir: string, port: number) {
    this.url = `http://127.0.0.1:${port}`;
    this.#child = spawn(
      binary,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=info',
      ],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (chunk: string) => {
      this.#log = (this.#log + chunk).slice(-20_000);
    };
    this.#child.stdout?.setEncoding('utf8').on('data', keep);
    this.#child.stderr?.setEncoding('utf8').on('data', keep);
    // Should this test process die without running `after`, do not leave Prometheus behind.
    process.once('exit', this.#killOnExit);
  }

  get exited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  get log(): string {
    return this.#log;
  }

  /** Resolves once /-/ready answers 200; rejects if Prometheus exits or the deadline passes. */
  async ready(client: Dispatcher): Promise<void> {
    const deadline = Date.now() + DEADLINE_MS;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`prometheus exited (${this.#child.exitCode}):\n${this.#log}`);
      try {
        const res = await request(`${this.url}/-/ready`, { dispatcher: client });
        await res.body.text();
        if (res.statusCode === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`prometheus not ready after ${DEADLINE_MS} ms:\n${this.#log}`);
  }

  /** SIGTERM, then SIGKILL if it has not exited within 10 s; resolves once it has exited. */
  async stop(): Promise<void> {
    process.off('exit', this.#killOnExit);
    if (this.exited) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

describe('a real Prometheus server scraping serveMetrics()', {
  skip: skipUnlessFound(prometheusBinary, 'prometheus'),
  timeout: 120_000,
}, () => {
  let upstream: Upstream;
  let registry: Registry;
  let breaker: CircuitBreakerStage;
  let interceptor: ResilienceInterceptor;
  let agent: Agent;
  let dispatcher: Dispatcher;
  let metricsServer: MetricsServer;
  /** For Prometheus' API only, kept apart from the pipeline under test. */
  let client: Agent;
  let dir: string;
  let prometheus: PrometheusProcess | undefined;

  async function api<T>(path: string): Promise<T> {
    const res = await request(`${prometheus!.url}${path}`, { dispatcher: client });
    const body = (await res.body.json()) as PromResponse<T>;
    assert.equal(body.status, 'success', `${path}: ${body.error}`);
    return body.data;
  }

  async function query(promql: string): Promise<VectorSample[]> {
    return api<{ result: VectorSample[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`).then(
      (d) => d.result,
    );
  }

  /** Polls `probe` until it returns a value, within DEADLINE_MS; the error says what was last seen. */
  async function eventually<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + DEADLINE_MS;
    let last: unknown;
    while (Date.now() < deadline) {
      const result = await probe().catch((err: unknown) => {
        last = err;
        return undefined;
      });
      if (result !== undefined) return result;
      await sleep(250);
    }
    const detail = last instanceof Error ? last.message : JSON.stringify(last);
    throw new Error(`${what}: not within ${DEADLINE_MS} ms (last: ${detail})\n${prometheus?.log ?? ''}`);
  }

  async function get(path: string, method: 'GET' | 'POST' = 'GET'): Promise<number> {
    const res = await request(upstream.url(path), {
      dispatcher,
      method,
      body: method === 'POST' ? 'x' : undefined,
    });
    await res.body.text();
    return res.statusCode;
  }

  before(
    async () => {
      const binary = required(prometheusBinary, 'prometheus');
      upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok' });
      registry = new Registry();
      breaker = circuitBreaker();
      interceptor = pipeline(
        [retry({ budget: false }), breaker, bulkhead({ maxConcurrent: 4, maxQueue: 16 })],
        {
          metrics: prometheusMetrics({ registry }),
        },
      );
      agent = new Agent();
      dispatcher = agent.compose(interceptor);
      client = new Agent();
      metricsServer = await serveMetrics({ registry, port: 0 });

      dir = mkdtempSync(join(tmpdir(), 'breakwater-prometheus-'));
      writeFileSync(
        join(dir, 'rules.yml'),
        [
          'groups:',
          '  - name: breakwater-test',
          '    rules:',
          '      - alert: BreakwaterCircuitOpenNow',
          '        expr: breakwater_circuit_state{state="open"} == 1',
          '        for: 0s',
          '        labels: { severity: test }',
          '',
        ].join('\n'),
      );
      writeFileSync(
        join(dir, 'prometheus.yml'),
        [
          'global:',
          '  scrape_interval: 1s',
          '  scrape_timeout: 1s',
          '  evaluation_interval: 1s',
          'rule_files:',
          '  - rules.yml',
          // The example's alerts too: they must evaluate without error on real series.
          `  - ${JSON.stringify(EXAMPLE_ALERTS)}`,
          'scrape_configs:',
          `  - job_name: ${JOB}`,
          '    metrics_path: /metrics',
          '    static_configs:',
          `      - targets: ["127.0.0.1:${metricsServer.port}"]`,
          '',
        ].join('\n'),
      );
      // A free port can be taken between the probe and Prometheus binding it: try a few.
      for (let attempt = 1; ; attempt++) {
        prometheus = new PrometheusProcess(binary, dir, await freePort());
        try {
          await prometheus.ready(client);
          break;
        } catch (err) {
          await prometheus.stop();
          if (attempt === 3 || !/address already in use/.test(prometheus.log)) throw err;
        }
      }
    },
    { timeout: 60_000 },
  );

  after(
    async () => {
      await prometheus?.stop();
      assert.ok(prometheus === undefined || prometheus.exited, 'prometheus has exited');
      if (dir !== undefined) {
        rmSync(dir, { recursive: true, force: true });
        assert.equal(existsSync(dir), false, 'the temporary directory is gone');
      }
      await metricsServer?.close();
      await agent?.close();
      await interceptor?.close();
      await client?.close();
      await upstream?.close();
    },
    { timeout: 30_000 },
  );

  test('breakwater_requests_total arrives with its origin, method and outcome labels', async (t) => {
    for (const path of ['/a', '/b', '/c']) assert.equal(await get(path), 200);
    for (const path of ['/d', '/e']) assert.equal(await get(path, 'POST'), 200);

    const result = await eventually('both series scraped with their final values', async () => {
      const r = await query('breakwater_requests_total');
      return r.length === 2 && r.every((s) => s.value[1] === (s.metric.method === 'GET' ? '3' : '2'))
        ? r
        : undefined;
    });
    t.diagnostic(`query=breakwater_requests_total → ${JSON.stringify(result)}`);
    const instance = `127.0.0.1:${metricsServer.port}`;
    const byMethod = Object.fromEntries(result.map((s) => [s.metric.method, s]));
    assert.deepEqual(byMethod.GET?.metric, {
      __name__: 'breakwater_requests_total',
      instance,
      job: JOB,
      method: 'GET',
      origin: upstream.origin,
      outcome: 'success',
    });
    assert.deepEqual(byMethod.POST?.metric, { ...byMethod.GET?.metric, method: 'POST' });
    assert.equal(byMethod.GET?.value[1], '3');
    assert.equal(byMethod.POST?.value[1], '2');

    // The scrape-time gauges came along: the circuit is closed, so the alert has nothing to say.
    const closed = await query(`breakwater_circuit_state{origin="${upstream.origin}"}`);
    assert.deepEqual(Object.fromEntries(closed.map((s) => [s.metric.state, s.value[1]])), {
      closed: '1',
      open: '0',
      half_open: '0',
    });
    const { alerts } = await api<{ alerts: Alert[] }>('/api/v1/alerts');
    assert.deepEqual(alerts, [], 'no alert while every circuit is closed');
  });

  test('an alert on breakwater_circuit_state{state="open"} fires once the circuit is forced open', async (t) => {
    breaker.isolate(upstream.origin);
    const before = upstream.requests.length;
    await assert.rejects(get('/f'), (err) => isCircuitOpenError(err));
    assert.equal(upstream.requests.length, before, 'the open circuit kept the request off the network');

    const alert = await eventually('BreakwaterCircuitOpenNow firing', async () => {
      const { alerts } = await api<{ alerts: Alert[] }>('/api/v1/alerts');
      return alerts.find((a) => a.labels.alertname === 'BreakwaterCircuitOpenNow' && a.state === 'firing');
    });
    t.diagnostic(`/api/v1/alerts → ${JSON.stringify(alert)}`);
    assert.deepEqual(alert.labels, {
      alertname: 'BreakwaterCircuitOpenNow',
      instance: `127.0.0.1:${metricsServer.port}`,
      job: JOB,
      origin: upstream.origin,
      severity: 'test',
      state: 'open',
    });
    const rejected = await query(`breakwater_requests_total{outcome="circuit_open"}`);
    assert.deepEqual(
      rejected.map((s) => [s.metric.origin, s.metric.method, s.value[1]]),
      [[upstream.origin, 'GET', '1']],
    );
  });

  test("the example alerts and the dashboard's queries evaluate without error on these series", async () => {
    const groups = await eventually('every rule evaluated at least once', async () => {
      const { groups } = await api<{ groups: RuleGroup[] }>('/api/v1/rules');
      const rules = groups.flatMap((g) => g.rules);
      return rules.length === 6 && rules.every((r) => !r.lastEvaluation.startsWith('0001-'))
        ? groups
        : undefined;
    });
    for (const rule of groups.flatMap((g) => g.rules)) {
      assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError}`);
    }
    for (const { where, expr } of dashboardExprs(loadDashboard())) {
      const promql = asPromQL(expr);
      const res = await request(`${prometheus!.url}/api/v1/query?query=${encodeURIComponent(promql)}`, {
        dispatcher: client,
      });
      const body = (await res.body.json()) as PromResponse<unknown>;
      assert.equal(body.status, 'success', `${where}: ${body.error} (${promql})`);
    }
    // A dashboard query over what this test produced returns data, not just no error.
    const rate = await query('sum by (outcome) (increase(breakwater_requests_total[1m]))');
    assert.ok(rate.length > 0, 'the request panel has something to show');
  });
});
