import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import {
  bulkhead,
  circuitBreaker,
  type HedgeEvent,
  pipeline,
  prometheusMetrics,
  resilient,
  retry,
  standardPipeline,
  timeout,
} from '../../src/index.js';

// Hedged requests against a real local server whose handler decides, per request, how long to
// take. The server counts what it received per request id (x-id) and which sockets closed.

interface Seen {
  arrivals: number;
  closedEarly: number;
}

class Upstream {
  server: Server;
  origin = '';
  byId = new Map<string, Seen>();
  total = 0;
  /** Milliseconds before answering request number `n` (from 0) of id `id`; Infinity hangs. */
  delay: (n: number, id: string, req: IncomingMessage) => number = () => 0;
  status: (n: number, id: string) => number = () => 200;

  constructor() {
    this.server = createServer((req, res) => this.#handle(req, res));
  }

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(): void {
    this.byId.clear();
    this.total = 0;
    this.delay = () => 0;
    this.status = () => 200;
  }

  seen(id: string): Seen {
    return this.byId.get(id) ?? { arrivals: 0, closedEarly: 0 };
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const id = String(req.headers['x-id'] ?? this.total);
    const entry = this.byId.get(id) ?? { arrivals: 0, closedEarly: 0 };
    this.byId.set(id, entry);
    const n = entry.arrivals++;
    this.total++;
    req.resume();
    const ms = this.delay(n, id, req);
    const status = this.status(n, id);
    let answered = false;
    res.on('close', () => {
      if (!answered) entry.closedEarly++;
    });
    const answer = () => {
      answered = true;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(`answer ${n}`);
    };
    if (ms === Number.POSITIVE_INFINITY) return;
    if (ms === 0) answer();
    else setTimeout(answer, ms).unref();
  }
}

const fixed = (delay: number, extra: object = {}) =>
  retry({ maxAttempts: 3, backoff: { initialDelay: 5, maxDelay: 10 }, hedge: { delay }, ...extra });

async function get(dispatcher: ReturnType<typeof resilient>, url: string, id: string, init: object = {}) {
  const res = await request(url, { dispatcher, headers: { 'x-id': id }, ...init });
  return { status: res.statusCode, body: await res.body.text() };
}

describe('hedged requests', () => {
  const upstream = new Upstream();
  before(() => upstream.start());
  after(() => upstream.stop());
  afterEach(() => upstream.reset());

  test('stragglers: 1,000 GETs with 2 % stragglers and a 50 ms delay give p99 < 200 ms for ≤ 1.05 × requests', async (t) => {
    // Every 50th first arrival takes 1 s; everything else (hedges included) 2 ms.
    upstream.delay = (n, id) => (n === 0 && Number(id) % 50 === 7 ? 1_000 : 2);
    const interceptor = pipeline([
      timeout(5_000),
      fixed(50),
      bulkhead({ maxConcurrent: 64, maxQueue: 1024 }),
    ]);
    const dispatcher = resilient(new Agent({ connections: 64 }), interceptor);
    t.after(() => dispatcher.destroy());
    const latencies: number[] = [];
    let next = 0;
    const worker = async () => {
      while (next < 1_000) {
        const id = String(next++);
        const started = performance.now();
        const { status } = await get(dispatcher, `${upstream.origin}/`, id);
        assert.equal(status, 200);
        latencies.push(performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
    assert.ok(p99 < 200, `p99 ${p99.toFixed(1)} ms`);
    assert.ok(upstream.total <= 1_050, `the upstream saw ${upstream.total} requests for 1,000`);
    assert.ok(upstream.total >= 1_020, `the stragglers were hedged (${upstream.total} requests)`);
    assert.equal(interceptor.health()[upstream.origin]?.inFlight, 0, 'no slot left taken');
  });

  test('POSTs and stream bodies are never hedged; a PUT is', async (t) => {
    upstream.delay = () => 150;
    const dispatcher = resilient(new Agent(), pipeline([fixed(20)]));
    t.after(() => dispatcher.destroy());
    await get(dispatcher, `${upstream.origin}/`, 'post', { method: 'POST', body: 'x' });
    await get(dispatcher, `${upstream.origin}/`, 'stream', {
      method: 'PUT',
      body: Readable.from(['a', 'b']),
    });
    await get(dispatcher, `${upstream.origin}/`, 'put', { method: 'PUT', body: 'x' });
    assert.equal(upstream.seen('post').arrivals, 1);
    assert.equal(upstream.seen('stream').arrivals, 1);
    assert.equal(upstream.seen('put').arrivals, 2, 'an idempotent method with a replayable body is hedged');
  });

  test('the loser is aborted: its socket closes at the server, nothing stays in flight, metrics count it', async (t) => {
    upstream.delay = (n) => (n === 0 ? Number.POSITIVE_INFINITY : 5);
    const registry = new Registry();
    const stage = fixed(30);
    const hedges: HedgeEvent[] = [];
    stage.onHedge((e) => hedges.push(e));
    const interceptor = pipeline([stage, bulkhead({ maxConcurrent: 4, maxQueue: 0 })], {
      metrics: prometheusMetrics({ registry }),
    });
    const dispatcher = resilient(new Agent(), interceptor);
    t.after(() => dispatcher.destroy());
    const { status, body } = await get(dispatcher, `${upstream.origin}/`, 'loser');
    assert.equal(status, 200);
    assert.equal(body, 'answer 1', 'the hedge answered');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(
      upstream.seen('loser'),
      { arrivals: 2, closedEarly: 1 },
      'the first attempt was cut off',
    );
    assert.equal(interceptor.health()[upstream.origin]?.inFlight, 0);
    assert.equal(hedges.length, 1);
    assert.equal(hedges[0]!.attempt, 2);
    assert.ok(hedges[0]!.delay >= 25, `hedged after ${hedges[0]!.delay} ms`);
    const text = await registry.metrics();
    assert.match(text, /breakwater_hedges_total\{[^}]*result="won"[^}]*\} 1/);
    assert.match(text, /breakwater_hedge_delay_seconds\{[^}]*\} 0\.03/);
  });

  test('an abort while both attempts hang settles at once and the server sees both closed', async (t) => {
    upstream.delay = () => Number.POSITIVE_INFINITY;
    const dispatcher = resilient(new Agent(), pipeline([fixed(20)]));
    t.after(() => dispatcher.destroy());
    const ac = new AbortController();
    const pending = get(dispatcher, `${upstream.origin}/`, 'both', { signal: ac.signal }).catch(
      (e: Error) => e,
    );
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(upstream.seen('both').arrivals, 2, 'the hedge went out');
    const abortedAt = performance.now();
    ac.abort();
    const error = await pending;
    assert.ok(performance.now() - abortedAt < 50, 'settled at once');
    assert.equal((error as Error).name, 'AbortError');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(upstream.seen('both').closedEarly, 2);
  });

  test('a hedge never queues: with every slot busy no hedge is sent', async (t) => {
    upstream.delay = (_n, id) => (id === 'slow' ? 100 : 0);
    const dispatcher = resilient(
      new Agent(),
      pipeline([fixed(20), bulkhead({ maxConcurrent: 1, maxQueue: 4 })]),
    );
    t.after(() => dispatcher.destroy());
    await get(dispatcher, `${upstream.origin}/`, 'slow');
    assert.equal(upstream.seen('slow').arrivals, 1, 'the one slot was its own: no hedge');
  });

  for (const withBreaker of [true, false]) {
    test(`an outage (every answer 503): ≤ ${withBreaker ? '1.2' : '1.3'} attempts per request with hedging on${withBreaker ? '' : ', the budget alone holding'}`, async (t) => {
      upstream.status = () => 503;
      upstream.delay = () => 5;
      // A short run: the budget's floor (minPerSecond × window) is lowered so that its ratio, what
      // holds a long outage, decides here too.
      const interceptor = standardPipeline({
        retry: {
          backoff: { initialDelay: 1, maxDelay: 5 },
          hedge: { delay: 3 },
          budget: { ratio: 0.2, minPerSecond: 1 },
        },
        circuitBreaker: withBreaker ? {} : false,
      });
      const dispatcher = resilient(new Agent(), interceptor);
      t.after(() => dispatcher.destroy());
      const n = 300;
      let next = 0;
      const worker = async () => {
        while (next < n) {
          const id = `o${next++}`;
          await get(dispatcher, `${upstream.origin}/`, id).catch(() => {});
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      const perRequest = upstream.total / n;
      assert.ok(perRequest <= (withBreaker ? 1.2 : 1.3), `${perRequest.toFixed(3)} attempts per request`);
    });
  }

  test('a half-open circuit gets no hedge: its one probe goes alone', async (t) => {
    upstream.status = (_n, id) => (id === 'trip' ? 503 : 200);
    upstream.delay = (_n, id) => (id === 'probe' ? 60 : 0);
    const breaker = circuitBreaker({ consecutiveFailures: 1, halfOpenAfter: 20 });
    const dispatcher = resilient(new Agent(), pipeline([fixed(10, { maxAttempts: 1 }), breaker]));
    t.after(() => dispatcher.destroy());
    await get(dispatcher, `${upstream.origin}/`, 'trip');
    assert.equal(breaker.state(upstream.origin), 'open');
    await new Promise((resolve) => setTimeout(resolve, 30));
    const hedged = fixed(10);
    const probing = resilient(new Agent(), pipeline([hedged, breaker]));
    t.after(() => probing.destroy());
    const { status } = await get(probing, `${upstream.origin}/`, 'probe');
    assert.equal(status, 200);
    assert.equal(upstream.seen('probe').arrivals, 1, 'the hedge was not sent while the probe ran');
    assert.equal(breaker.state(upstream.origin), 'closed');
  });
});
