import assert from 'node:assert/strict';
import { createServer, Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { Gauge, type OpenMetricsContentType, Registry } from 'prom-client';
import { request } from 'undici';
import { InvalidOptionError } from '../../src/errors.js';
import { type MetricsRegistry, prometheusMetrics } from '../../src/metrics/prometheus.js';
import { type MetricsServer, metricsHandler, serveMetrics } from '../../src/metrics/serve.js';

const ORIGIN = 'http://127.0.0.1:1234';
const servers: MetricsServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function start(registry: MetricsRegistry, options: { path?: string } = {}): Promise<MetricsServer> {
  const server = await serveMetrics({ registry, port: 0, ...options });
  servers.push(server);
  return server;
}

/** A registry with one request recorded, in Prometheus text or OpenMetrics. */
function populated(format: 'text' | 'openmetrics' = 'text'): MetricsRegistry {
  let registry: MetricsRegistry;
  if (format === 'openmetrics') {
    const openMetrics = new Registry<OpenMetricsContentType>();
    openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    registry = openMetrics;
  } else {
    registry = new Registry();
  }
  prometheusMetrics({ registry }).origin(ORIGIN).requestFinished('GET', 'success', '2xx', 0.1);
  return registry;
}

describe('serveMetrics', () => {
  test('binds to 127.0.0.1 and serves Prometheus text on /metrics', async () => {
    const registry = populated();
    const server = await start(registry);
    assert.equal((server.server.address() as AddressInfo).address, '127.0.0.1');
    assert.equal(server.url, `http://127.0.0.1:${server.port}/metrics`);
    assert.ok(server.port > 0);

    const res = await request(server.url);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const body = await res.body.text();
    assert.equal(body, await registry.metrics());
    assert.match(
      body,
      /breakwater_requests_total\{origin="http:\/\/127\.0\.0\.1:1234",method="GET",outcome="success"\} 1\n/,
    );
  });

  test('serves OpenMetrics when the registry is an OpenMetrics one', async () => {
    const registry = populated('openmetrics');
    const server = await start(registry);
    const res = await request(server.url);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/openmetrics-text; version=1.0.0; charset=utf-8');
    const body = await res.body.text();
    assert.ok(body.endsWith('# EOF\n'));
    assert.match(body, /breakwater_requests_total\{origin="[^"]+",method="GET",outcome="success"\} 1\n/);
  });

  test('HEAD answers the headers without a body; a query string is ignored', async () => {
    const server = await start(populated());
    const head = await request(server.url, { method: 'HEAD' });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(await head.body.text(), '');
    const withQuery = await request(`${server.url}?debug=1`);
    assert.equal(withQuery.statusCode, 200);
    await withQuery.body.dump();
  });

  test('another path is 404, another method is 405 with Allow', async () => {
    const server = await start(populated());
    const base = `http://127.0.0.1:${server.port}`;
    for (const path of ['/', '/metrics/', '/metricsx', '/other']) {
      const res = await request(base + path);
      assert.equal(res.statusCode, 404, path);
      assert.equal(await res.body.text(), 'Not Found\n');
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS'] as const) {
      const res = await request(server.url, { method, body: method === 'POST' ? 'x' : undefined });
      assert.equal(res.statusCode, 405, method);
      assert.equal(res.headers.allow, 'GET, HEAD');
      await res.body.dump();
    }
  });

  test('a custom path', async () => {
    const server = await start(populated(), { path: '/internal/prom' });
    assert.ok(server.url.endsWith('/internal/prom'));
    assert.equal((await request(server.url)).statusCode, 200);
    const old = await request(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(old.statusCode, 404);
    await old.body.dump();
  });

  test('a failing collect is a 500 that does not leak its message', async () => {
    const registry = new Registry();
    new Gauge({
      name: 'broken',
      help: 'throws at scrape',
      registers: [registry],
      collect() {
        throw new Error('secret database password in a stack trace');
      },
    });
    const server = await start(registry);
    const res = await request(server.url);
    assert.equal(res.statusCode, 500);
    const body = await res.body.text();
    assert.equal(body, 'Internal Server Error\n');
  });

  test('close() closes idle keep-alive connections and leaves no socket', { timeout: 5000 }, async () => {
    const server = await serveMetrics({ registry: populated(), port: 0 });
    const agent = new HttpAgent({ keepAlive: true });
    let socketClosed!: Promise<void>;
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(server.url, { agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('socket', (socket) => {
        socketClosed = new Promise((done) => socket.once('close', () => done()));
      });
      req.on('error', reject);
      req.end();
    });
    const connections = () =>
      new Promise<number>((resolve) => server.server.getConnections((_e, n) => resolve(n)));
    assert.equal(await connections(), 1, 'the keep-alive socket is open and idle');

    const started = performance.now();
    await server.close();
    assert.ok(performance.now() - started < 1000, 'close() did not wait for keep-alive timeouts');
    assert.equal(server.server.listening, false);
    assert.equal(await connections(), 0);
    // The client sees its pooled socket closed by the server.
    await socketClosed;
    // Idempotent.
    await server.close();
    agent.destroy();
  });

  test('a port in use rejects', async () => {
    const taken = await start(populated());
    await assert.rejects(serveMetrics({ registry: populated(), port: taken.port }), { code: 'EADDRINUSE' });
  });

  test('bad options throw InvalidOptionError naming the path', async () => {
    const registry = new Registry();
    const cases: Array<[unknown, string]> = [
      [undefined, 'serveMetrics'],
      [{}, 'serveMetrics.registry'],
      [{ registry, port: 70_000 }, 'serveMetrics.port'],
      [{ registry, port: -1 }, 'serveMetrics.port'],
      [{ registry, port: '9464' }, 'serveMetrics.port'],
      [{ registry, host: '' }, 'serveMetrics.host'],
      [{ registry, path: 'metrics' }, 'serveMetrics.path'],
      [{ registry, path: '/metrics?x' }, 'serveMetrics.path'],
      [{ registry, prot: 1 }, 'serveMetrics.prot'],
    ];
    for (const [options, path] of cases) {
      await assert.rejects(serveMetrics(options as never), (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError, String(err));
        assert.equal(err.path, path);
        return true;
      });
    }
  });
});

describe('metricsHandler', () => {
  test('mounts in a server of your own', async () => {
    const registry = populated();
    const handler = metricsHandler(registry, { path: '/m' });
    const server = createServer((req, res) => {
      if (req.url === '/health') res.end('ok');
      else handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const res = await request(`http://127.0.0.1:${port}/m`);
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), await registry.metrics());
      const health = await request(`http://127.0.0.1:${port}/health`);
      assert.equal(await health.body.text(), 'ok');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('rejects what is not a registry', () => {
    assert.throws(() => metricsHandler({} as never), { path: 'metricsHandler.registry' });
    assert.throws(() => metricsHandler(new Registry(), { path: 'x' }), { path: 'metricsHandler.path' });
  });
});
