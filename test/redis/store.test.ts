import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { createClient } from 'redis';
import { Agent, request } from 'undici';
import {
  InvalidOptionError,
  isRateLimitedError,
  pipeline,
  prometheusMetrics,
  rateLimit,
  resilient,
  type StoreErrorEvent,
  standardPipeline,
} from '../../src/index.js';
import { redisStore } from '../../src/redis/index.js';
import { runScript } from '../helpers/child.js';
import { type RedisServer, skipUnlessRedis, startRedis } from '../helpers/redis-server.js';
import { refusedOrigin, startUpstream, type Upstream } from '../helpers/upstream.js';

const skip = skipUnlessRedis();

/** Runs `n` requests one after another; resolves to how each ended and how long each took. */
async function sequence(
  n: number,
  send: () => Promise<unknown>,
): Promise<{ ok: number; refused: number; slowest: number }> {
  let ok = 0;
  let refused = 0;
  let slowest = 0;
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    try {
      await send();
      ok++;
    } catch (err) {
      if (!isRateLimitedError(err)) throw err;
      refused++;
    }
    slowest = Math.max(slowest, performance.now() - started);
  }
  return { ok, refused, slowest };
}

describe('redisStore', { skip }, () => {
  let redis: RedisServer;
  let upstream: Upstream;
  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok' });
  });
  after(async () => {
    await upstream?.close();
    await redis?.stop();
  });

  test('two pipelines on one store share one quota; its key carries the prefix and an expiry', async (t) => {
    const store = redisStore({ url: redis.url, prefix: 'bw-share:' });
    t.after(() => store.close());
    await store.ready();
    const stage = () => rateLimit({ perSecond: 2, burst: 5, maxWait: 0 });
    const a = resilient(new Agent(), pipeline([stage()], { store }));
    const b = resilient(new Agent(), pipeline([stage()], { store }));
    t.after(() => Promise.all([a.close(), b.close()]));
    upstream.reset();
    const send = (dispatcher: typeof a) => () =>
      request(upstream.url('/'), { dispatcher }).then((r) => r.body.text());
    const first = await sequence(8, send(a));
    const second = await sequence(8, send(b));
    // Five tokens in all (and perhaps one that accrued meanwhile): not five each.
    assert.ok(first.ok + second.ok <= 6, `${first.ok} + ${second.ok} admitted`);
    assert.ok(first.ok >= 5, `${first.ok} admitted by the first`);
    assert.equal(upstream.count(), first.ok + second.ok);
    const client = createClient({ url: redis.url });
    await client.connect();
    t.after(() => client.close());
    const keys = await client.keys('bw-share:*');
    assert.deepEqual(keys, [`bw-share:rate:${upstream.origin}`]);
    const ttl = await client.pTTL(keys[0]!);
    assert.ok(ttl > 0 && ttl < 10_000, `expiry ${ttl} ms`);
  });

  test('redisStore({ client }) uses a connected client of yours and leaves it open', async (t) => {
    const client = createClient({ url: redis.url });
    await client.connect();
    t.after(() => client.close());
    const readyListeners = client.listenerCount('ready');
    const store = redisStore({ client, prefix: 'bw-client:' });
    const dispatcher = resilient(
      new Agent(),
      pipeline([rateLimit({ perSecond: 1, burst: 2, maxWait: 0 })], { store }),
    );
    t.after(() => dispatcher.close());
    upstream.reset();
    const run = await sequence(4, () =>
      request(upstream.url('/'), { dispatcher }).then((r) => r.body.text()),
    );
    assert.deepEqual([run.ok, run.refused], [2, 2]);
    await store.close();
    assert.equal(client.isReady, true);
    assert.equal(await client.exists(`bw-client:rate:${upstream.origin}`), 1);
    assert.equal(client.listenerCount('ready'), readyListeners, 'close() took its listener off your client');
  });

  test('a wait granted by the store is served here: 12 at once at 20/s with burst 2 take about half a second', async (t) => {
    const store = redisStore({ url: redis.url, prefix: 'bw-wait:' });
    t.after(() => store.close());
    await store.ready();
    const dispatcher = resilient(
      new Agent(),
      pipeline([rateLimit({ perSecond: 20, burst: 2, maxWait: 5_000 })], { store }),
    );
    t.after(() => dispatcher.close());
    upstream.reset();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 12 }, () => request(upstream.url('/'), { dispatcher }).then((r) => r.body.text())),
    );
    const ms = performance.now() - started;
    assert.ok(ms >= 450 && ms < 2_000, `took ${ms} ms`);
    const arrivals = upstream.requests.map((r) => r.receivedAt - upstream.requests[0]!.receivedAt);
    assert.ok(arrivals[11]! >= 450, `the last arrived ${arrivals[11]} ms after the first`);
  });

  test('a lease takes several tokens per round trip: fewer EVALSHA calls for the same traffic', async (t) => {
    const client = createClient({ url: redis.url });
    await client.connect();
    t.after(() => client.close());
    const calls = async (): Promise<number> => {
      const info = await client.info('commandstats');
      const line = /cmdstat_evalsha:calls=(\d+)/.exec(info);
      return line === null ? 0 : Number(line[1]);
    };
    const count = async (lease: number): Promise<number> => {
      const store = redisStore({ url: redis.url, prefix: `bw-lease-${lease}:`, lease });
      await store.ready();
      const dispatcher = resilient(
        new Agent(),
        pipeline([rateLimit({ perSecond: 1000, burst: 100, maxWait: 0 })], { store }),
      );
      const before = await calls();
      await sequence(40, () => request(upstream.url('/'), { dispatcher }).then((r) => r.body.text()));
      const used = (await calls()) - before;
      await dispatcher.close();
      await store.close();
      return used;
    };
    const single = await count(0);
    const leased = await count(10);
    assert.ok(single >= 40, `${single} calls without a lease`);
    assert.ok(leased <= 8, `${leased} calls with a lease of 10`);
  });

  test('Redis killed mid-run: requests go on under the local limit, none waits much over the store timeout; restarted, the store is used again', async (t) => {
    const registry = new Registry();
    const metrics = prometheusMetrics({ registry });
    const store = redisStore({ url: redis.url, prefix: 'bw-kill:', timeoutMs: 50 });
    t.after(() => store.close());
    await store.ready();
    const errors: StoreErrorEvent[] = [];
    store.onError((e) => errors.push(e));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    t.after(() => process.off('unhandledRejection', onUnhandled));
    const dispatcher = resilient(
      new Agent(),
      standardPipeline({ metrics, store, rateLimit: { perSecond: 1000, burst: 1000, maxWait: 0 } }),
    );
    t.after(() => dispatcher.close());
    const send = () => request(upstream.url('/'), { dispatcher }).then((r) => r.body.text());
    assert.equal((await sequence(20, send)).ok, 20);
    assert.equal(errors.length, 0);

    await redis.kill();
    const down = await sequence(60, send);
    assert.equal(down.ok, 60);
    assert.ok(down.slowest < 50 + 150, `a request took ${down.slowest} ms with Redis down`);
    assert.ok(errors.length > 0, 'the store reported its faults');
    assert.match(await registry.metrics(), /breakwater_store_errors_total\{[^}]*\} [1-9]/);

    await redis.restart();
    // It reconnects by itself; once it has, admissions go through Redis again.
    const until = performance.now() + 5_000;
    while (!store.available && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(store.available, true, 'the store reconnected');
    await new Promise((r) => setTimeout(r, 1_100)); // the rest after a failure
    await sequence(5, send);
    const client = createClient({ url: redis.url });
    await client.connect();
    t.after(() => client.close());
    assert.equal(
      await client.exists(`bw-kill:rate:${upstream.origin}`),
      1,
      'admissions reached the restarted Redis',
    );
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
  });

  test('bad options throw InvalidOptionError naming the field', () => {
    assert.throws(() => redisStore({} as never), InvalidOptionError);
    assert.throws(() => redisStore({ url: 'http://x' }), /redisStore\.url/);
    assert.throws(() => redisStore({ url: 'redis://x', timeoutMs: 0 }), /redisStore\.timeoutMs/);
    assert.throws(() => redisStore({ url: 'redis://x', lease: -1 }), /redisStore\.lease/);
    assert.throws(() => redisStore({ client: {} as never }), /redisStore\.client/);
    assert.throws(() => pipeline([], { store: {} as never }), /pipeline\.store/);
  });
});

describe('redisStore against a Redis that never answers', () => {
  test('close() resolves at once and the process exits by itself', async () => {
    const origin = await refusedOrigin();
    const run = await runScript(
      'test/fixtures/store-unreachable.ts',
      [origin.replace('http:', 'redis:')],
      15_000,
    );
    assert.equal(run.signal, null, `killed: the process did not exit (${run.stderr})`);
    assert.equal(run.code, 0, run.stderr);
    const closedIn = Number(/closed in (\d+) ms/.exec(run.stdout)?.[1]);
    assert.ok(closedIn < 1_000, `close() took ${closedIn} ms`);
  });
});
