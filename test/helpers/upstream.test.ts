// Proves the test upstream does exactly what each behaviour promises, observed from both ends:
// a real undici client on one side, the server's own records on the other.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Agent, Client, Pool, request } from 'undici';
import { mulberry32 } from './prng.js';
import { captureWarnings, listenerCount } from './signals.js';
import { elapsed } from './timing.js';
import {
  type Behaviour,
  refusedOrigin,
  type SeededOptions,
  type SeededWeights,
  seededScript,
  startUpstream,
  type Upstream,
} from './upstream.js';

const SOCKET_ERRORS = ['ECONNRESET', 'UND_ERR_SOCKET'];
const codeOf = (error: unknown): unknown => (error as { code?: unknown } | undefined)?.code;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('upstream', () => {
  let upstream: Upstream;
  let agent: Agent;
  before(async () => {
    upstream = await startUpstream();
    agent = new Agent();
  });
  after(async () => {
    await agent.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.setScript({ kind: 'respond', status: 200, body: 'ok' });
    upstream.reset();
  });

  test('listens on 127.0.0.1, port 0, and answers 200 ok by default', async (t) => {
    const fresh = await startUpstream();
    t.after(() => fresh.close());
    assert.match(fresh.origin, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(fresh.port > 0);
    assert.equal(fresh.origin, `http://127.0.0.1:${fresh.port}`);
    assert.equal(fresh.url(), `${fresh.origin}/`);
    assert.equal(fresh.url('/a?b=1'), `${fresh.origin}/a?b=1`);
    assert.equal(fresh.url('a'), `${fresh.origin}/a`);
    const res = await request(fresh.url('/'), { dispatcher: agent });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'ok');
  });

  describe('respond', () => {
    test('sends status, headers (repeated ones too) and body; records what it received', async () => {
      upstream.setScript({
        kind: 'respond',
        status: 201,
        headers: { 'x-one': '1', 'set-cookie': ['a=1', 'b=2'] },
        body: Buffer.from('created'),
      });
      const res = await request(upstream.url('/things?q=1'), {
        dispatcher: agent,
        method: 'POST',
        headers: { 'x-test': 'yes' },
        body: 'payload',
      });
      assert.equal(res.statusCode, 201);
      assert.equal(res.headers['x-one'], '1');
      assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
      assert.equal(res.headers['content-length'], '7');
      assert.equal(await res.body.text(), 'created');

      assert.equal(upstream.requests.length, 1);
      const [received] = upstream.requests;
      assert.ok(received);
      assert.equal(received.index, 0);
      assert.equal(received.method, 'POST');
      assert.equal(received.path, '/things?q=1');
      assert.equal(received.headers['x-test'], 'yes');
      assert.equal(received.body.toString(), 'payload');
      assert.ok(received.connectionId >= 1);
      assert.ok(received.receivedAt > 0 && received.receivedAt <= performance.now());
      assert.equal(upstream.count(), 1);
      assert.equal(upstream.count({ method: 'post' }), 1);
      assert.equal(upstream.count({ method: 'GET' }), 0);
      assert.equal(upstream.count({ path: '/things?q=1' }), 1);
      assert.equal(upstream.count({ method: 'POST', path: '/other' }), 0);
    });

    test('delayMs holds the headers back; the request is in flight meanwhile', async () => {
      upstream.setScript({ kind: 'respond', status: 200, body: 'late', delayMs: 150 });
      const timed = elapsed(async () => {
        const res = await request(upstream.url('/'), { dispatcher: agent });
        return res.body.text();
      });
      await upstream.waitForRequests(1);
      assert.equal(upstream.inFlight(), 1);
      assert.equal(upstream.activeTimers(), 1);
      const { value, ms } = await timed;
      assert.equal(value, 'late');
      assert.ok(ms >= 140, `answered after ${ms} ms`);
      assert.ok(ms < 1_000, `answered after ${ms} ms`);
      assert.equal(upstream.inFlight(), 0);
      assert.equal(upstream.activeTimers(), 0);
    });

    test('reads the whole request body before the behaviour runs', async () => {
      let seen: string | undefined;
      upstream.setScript((req) => {
        seen = req.body.toString();
        return { kind: 'respond', status: 200, body: `${req.body.length}` };
      });
      async function* slowBody() {
        yield 'first-';
        await sleep(50);
        yield 'second';
      }
      const res = await request(upstream.url('/'), {
        dispatcher: agent,
        method: 'PUT',
        body: Readable.from(slowBody()),
      });
      assert.equal(await res.body.text(), '12');
      assert.equal(seen, 'first-second');
      assert.equal(upstream.requests[0]?.body.toString(), 'first-second');
    });
  });

  describe('scripts', () => {
    const statuses = async (n: number, path = '/'): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const res = await request(upstream.url(path), { dispatcher: agent });
        await res.body.dump();
        out.push(res.statusCode);
      }
      return out;
    };

    test('an array plays in order, repeats its last entry, and restarts on setScript()', async () => {
      const script: Behaviour[] = [
        { kind: 'respond', status: 503 },
        { kind: 'respond', status: 502 },
        { kind: 'respond', status: 200 },
      ];
      upstream.setScript(script);
      assert.deepEqual(await statuses(5), [503, 502, 200, 200, 200]);
      upstream.setScript(script);
      assert.deepEqual(await statuses(2), [503, 502]);
      upstream.reset();
      assert.deepEqual(await statuses(1), [503], 'reset() restarts the array too');
    });

    test('a function sees each received request', async () => {
      upstream.setScript((req) => ({
        kind: 'respond',
        status: 200,
        body: `${req.index}:${req.method}:${req.path}`,
      }));
      for (const path of ['/a', '/b']) {
        const res = await request(upstream.url(path), { dispatcher: agent });
        assert.equal(await res.body.text(), `${path === '/a' ? 0 : 1}:GET:${path}`);
      }
    });

    test('a throwing function answers 500 and records the error', async () => {
      upstream.setScript(() => {
        throw new Error('boom');
      });
      const res = await request(upstream.url('/'), { dispatcher: agent });
      assert.equal(res.statusCode, 500);
      assert.equal(res.headers['x-upstream-error'], 'script');
      assert.equal(await res.body.text(), 'boom');
      assert.equal(upstream.errors.length, 1);
      assert.equal(upstream.errors[0]?.message, 'boom');
    });

    test('invalid behaviours are refused up front', async () => {
      assert.throws(() => upstream.setScript([]), RangeError);
      assert.throws(() => upstream.setScript({ kind: 'trickle', intervalMs: 0 }), RangeError);
      assert.throws(() => upstream.setScript({ kind: 'respond', status: 42 }), RangeError);
      assert.throws(() => upstream.setScript({ kind: 'respond', delayMs: -1 }), RangeError);
      assert.throws(
        () => upstream.setScript({ kind: 'reset-mid-body', body: 'abc', contentLength: 3 }),
        /contentLength must be an integer > 3/,
      );
      assert.throws(() => upstream.setScript({ kind: 'nope' } as unknown as Behaviour), TypeError);
      await assert.rejects(startUpstream({ kind: 'trickle', intervalMs: Number.NaN }), RangeError);
    });
  });

  describe('hang', () => {
    test('never answers; a client timeout closes the socket and the server sees it', async (t) => {
      // Its own upstream, so its counters and sockets belong to this test alone.
      const own = await startUpstream({ kind: 'hang' });
      const client = new Client(own.origin);
      t.after(async () => {
        await client.destroy();
        await own.close();
      });
      const pending = request(own.url('/'), { dispatcher: client, signal: AbortSignal.timeout(150) });
      const settled = assert.rejects(pending, { name: 'TimeoutError' });
      await own.waitForRequests(1);
      assert.equal(own.inFlight(), 1);
      await sleep(50);
      assert.equal(own.inFlight(), 1, 'still unanswered');
      assert.equal(own.closedByClient, 0);
      await settled;
      await own.waitForClosedByClient(1);
      // undici's Client may open a fresh idle connection after an abort; the one used is gone.
      assert.ok(!own.openConnectionIds().includes(own.requests[0]?.connectionId ?? -1));
      assert.equal(own.closedByClient, 1);
      assert.equal(own.inFlight(), 0);
      assert.equal(own.count(), 1);
    });

    test('close() destroys hanging sockets at once and rejects pending waits', async () => {
      const own = await startUpstream({ kind: 'hang' });
      const client = new Client(own.origin);
      const pending = request(own.url('/'), { dispatcher: client });
      await own.waitForRequests(1);
      const waiting = assert.rejects(own.waitForRequests(2, 10_000), /closed/);
      const { ms } = await elapsed(() => own.close());
      assert.ok(ms < 500, `close() took ${ms} ms`);
      const error = await pending.then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(SOCKET_ERRORS.includes(codeOf(error) as string), `got ${String(error)}`);
      await waiting;
      assert.equal(own.openSockets(), 0);
      assert.equal(own.closedByClient, 0, 'the server closed it, not the client');
      await own.close();
      await client.close();
    });
  });

  describe('reset', () => {
    test('destroys the socket before any response byte', async () => {
      upstream.setScript({ kind: 'reset' });
      const error = await request(upstream.url('/'), { dispatcher: agent }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(SOCKET_ERRORS.includes(codeOf(error) as string), `got ${String(error)}`);
      assert.equal(upstream.count(), 1);
      await upstream.waitFor((u) => u.inFlight() === 0);
      assert.equal(upstream.closedByClient, 0);
    });

    test('reset-mid-body: the headers arrive, then the body fails after the partial bytes', async () => {
      upstream.setScript({ kind: 'reset-mid-body', status: 200, body: 'partial-', contentLength: 100 });
      const res = await request(upstream.url('/'), { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-length'], '100');
      let received = '';
      let error: unknown;
      try {
        for await (const chunk of res.body) received += chunk;
      } catch (e) {
        error = e;
      }
      assert.ok(SOCKET_ERRORS.includes(codeOf(error) as string), `got ${String(error)}`);
      assert.equal(received, 'partial-');
      assert.equal(upstream.count(), 1);
      await upstream.waitFor((u) => u.inFlight() === 0);
      assert.equal(upstream.closedByClient, 0);
      assert.equal(upstream.activeTimers(), 0);
    });

    test('reset-mid-body: the announced length defaults to one byte more than sent', async () => {
      upstream.setScript({ kind: 'reset-mid-body', body: 'abc' });
      const res = await request(upstream.url('/'), { dispatcher: agent });
      assert.equal(res.headers['content-length'], '4');
      await assert.rejects(res.body.text());
    });
  });

  describe('trickle', () => {
    test('sends the headers at once, then count chunks one interval apart', async () => {
      upstream.setScript({ kind: 'trickle', chunk: 'ab', intervalMs: 30, count: 4 });
      const res = await request(upstream.url('/'), { dispatcher: agent });
      const headersAt = performance.now();
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['transfer-encoding'], 'chunked');
      assert.equal(res.headers['content-length'], undefined);
      const arrivals: number[] = [];
      let body = '';
      for await (const chunk of res.body) {
        arrivals.push(performance.now() - headersAt);
        body += chunk;
      }
      assert.equal(body, 'abababab');
      assert.ok(arrivals.length >= 2, `chunks arrived separately (${arrivals.length} reads)`);
      assert.ok((arrivals[0] ?? 0) >= 20, `first chunk after ${arrivals[0]} ms`);
      const last = performance.now() - headersAt;
      assert.ok(last >= 100, `ended after ${last} ms (4 × 30 ms)`);
      await upstream.waitFor((u) => u.inFlight() === 0);
      assert.equal(upstream.activeTimers(), 0);
      assert.equal(upstream.closedByClient, 0);
    });

    test('count 0 ends the response right after the headers', async () => {
      upstream.setScript({ kind: 'trickle', intervalMs: 1_000, count: 0 });
      const { value, ms } = await elapsed(async () =>
        (await request(upstream.url('/'), { dispatcher: agent })).body.text(),
      );
      assert.equal(value, '');
      assert.ok(ms < 500);
    });

    test('endless: keeps going until the client aborts, then its timer is gone', async (t) => {
      const own = await startUpstream({ kind: 'trickle', intervalMs: 10 });
      const client = new Client(own.origin);
      t.after(async () => {
        await client.destroy();
        await own.close();
      });
      const ac = new AbortController();
      const res = await request(own.url('/'), { dispatcher: client, signal: ac.signal });
      let received = '';
      let timersWhileTrickling = -1;
      let error: unknown;
      try {
        for await (const chunk of res.body) {
          received += chunk;
          if (received.length >= 3 && timersWhileTrickling < 0) {
            timersWhileTrickling = own.activeTimers();
            ac.abort();
          }
        }
      } catch (e) {
        error = e;
      }
      assert.equal((error as Error | undefined)?.name, 'AbortError');
      assert.ok(received.length >= 3 && /^x+$/.test(received));
      assert.equal(timersWhileTrickling, 1);
      await own.waitForClosedByClient(1);
      // undici's Client may open a fresh idle connection after an abort; the one used is gone.
      assert.ok(!own.openConnectionIds().includes(own.requests[0]?.connectionId ?? -1));
      assert.equal(own.activeTimers(), 0);
      assert.equal(own.closedByClient, 1);
      assert.equal(own.inFlight(), 0);
    });

    test('the process exits by itself after an aborted endless trickle (no timer survives)', async () => {
      const helper = new URL('./upstream.ts', import.meta.url).href;
      const code = `
        import { request } from 'undici';
        import { startUpstream } from ${JSON.stringify(helper)};
        const upstream = await startUpstream({ kind: 'trickle', intervalMs: 10 });
        const ac = new AbortController();
        const res = await request(upstream.url('/'), { signal: ac.signal });
        const reading = res.body.text().then(() => 'ended', (e) => e.name);
        await new Promise((resolve) => setTimeout(resolve, 50));
        ac.abort();
        const outcome = await reading;
        await upstream.waitForClosedByClient(1, 2000);
        const timers = upstream.activeTimers();
        await upstream.close();
        console.log(JSON.stringify({ outcome, timers, closedByClient: upstream.closedByClient }));
      `;
      const cwd = fileURLToPath(new URL('../..', import.meta.url));
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', code], {
        cwd,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const exitCode = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      clearTimeout(killer);
      assert.equal(exitCode, 0, 'exited on its own (not killed)');
      assert.deepEqual(JSON.parse(out), { outcome: 'AbortError', timers: 0, closedByClient: 1 });
    });
  });

  describe('close-after-response', () => {
    test('answers with keep-alive semantics, then closes the connection itself', async (t) => {
      const own = await startUpstream({ kind: 'close-after-response', status: 200, body: 'bye' });
      const client = new Client(own.origin);
      t.after(async () => {
        await client.destroy();
        await own.close();
      });
      const res = await request(own.url('/'), { dispatcher: client });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'bye');
      assert.equal(res.headers.connection, 'keep-alive');
      await own.waitForSocketsClosed();
      assert.equal(own.closedByClient, 0, 'the server closed it');
      await sleep(20); // let the client notice the closed connection
      await (await request(own.url('/'), { dispatcher: client })).body.text();
      assert.equal(own.connections, 2);
      assert.notEqual(own.requests[0]?.connectionId, own.requests[1]?.connectionId);
    });

    test('a client reusing the connection at once races the dead socket', async (t) => {
      upstream.setScript({ kind: 'close-after-response', body: 'bye' });
      const client = new Client(upstream.origin);
      t.after(() => client.destroy());
      const failures: unknown[] = [];
      for (let i = 0; i < 10; i++) {
        try {
          await (await request(upstream.url(`/${i}`), { dispatcher: client })).body.text();
        } catch (error) {
          failures.push(codeOf(error));
        }
      }
      const ids = upstream.requests.map((r) => r.connectionId);
      assert.equal(new Set(ids).size, ids.length, 'never more than one request per connection');
      assert.equal(upstream.count() + failures.length, 10);
      for (const code of failures) assert.ok(SOCKET_ERRORS.includes(code as string), String(code));
    });
  });

  describe('connections and concurrency', () => {
    test('a keep-alive Agent sends 3 sequential requests over one connection', async (t) => {
      const own = new Agent();
      t.after(() => own.close());
      for (let i = 0; i < 3; i++) {
        const res = await request(upstream.url(`/${i}`), { dispatcher: own });
        assert.equal(await res.body.text(), 'ok');
        // undici hands the connection back to the Agent's pool a macrotask after the body ends
        // (a plain node:http server sees the same); without this pause request 2 opens a second one.
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(upstream.count(), 3);
      assert.equal(upstream.connections, 1);
      assert.equal(new Set(upstream.requests.map((r) => r.connectionId)).size, 1);
      assert.equal(upstream.maxConcurrent, 1);
    });

    test('maxConcurrent counts requests handled at once', async (t) => {
      upstream.setScript({ kind: 'respond', status: 200, body: 'ok', delayMs: 100 });
      const wide = new Agent({ connections: 10 });
      const narrow = new Pool(upstream.origin, { connections: 2 });
      t.after(async () => {
        await wide.close();
        await narrow.close();
      });
      const fire = (dispatcher: Agent | Pool, n: number) =>
        Promise.all(
          Array.from({ length: n }, async () =>
            (await request(upstream.url('/'), { dispatcher })).body.text(),
          ),
        );

      const wideRun = fire(wide, 5);
      await upstream.waitFor((u) => u.inFlight() === 5);
      await wideRun;
      assert.equal(upstream.maxConcurrent, 5);
      assert.equal(upstream.connections, 5);
      assert.equal(upstream.inFlight(), 0);

      upstream.reset();
      assert.equal(upstream.maxConcurrent, 0);
      await fire(narrow, 6);
      assert.equal(upstream.count(), 6);
      assert.equal(upstream.maxConcurrent, 2);
    });

    test('reset() clears counters and requests, not open sockets', async (t) => {
      const own = new Client(upstream.origin);
      t.after(() => own.close());
      await (await request(upstream.url('/'), { dispatcher: own })).body.text();
      assert.equal(upstream.count(), 1);
      assert.equal(upstream.connections, 1);
      const firstConnection = upstream.requests[0]?.connectionId;
      upstream.reset();
      assert.equal(upstream.count(), 0);
      assert.equal(upstream.requests.length, 0);
      assert.equal(upstream.connections, 0);
      assert.equal(upstream.maxConcurrent, 0);
      assert.equal(upstream.closedByClient, 0);
      assert.ok(upstream.openSockets() >= 1, 'the kept-alive socket survives');
      await (await request(upstream.url('/'), { dispatcher: own })).body.text();
      assert.equal(upstream.requests[0]?.index, 0);
      assert.equal(upstream.requests[0]?.connectionId, firstConnection, 'same socket, same id');
      assert.equal(upstream.connections, 0, 'no new connection was accepted');
    });

    test('waits reject with what they were waiting for', async () => {
      await assert.rejects(upstream.waitForRequests(1, 30), /waitForRequests\(1\): 0 received after 30 ms/);
    });

    test('a malformed request is answered 400 quietly and the server carries on', async () => {
      const socket = connect(upstream.port, '127.0.0.1');
      socket.write('NOT HTTP AT ALL\r\n\r\n');
      let reply = '';
      socket.on('data', (d) => {
        reply += d;
      });
      await new Promise((resolve) => socket.on('close', resolve));
      assert.match(reply, /^HTTP\/1\.1 400 /);
      const res = await request(upstream.url('/'), { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    });
  });
});

test('refusedOrigin(): nothing listens there', async () => {
  const origin = await refusedOrigin();
  assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/);
  const client = new Client(origin);
  await assert.rejects(request(`${origin}/`, { dispatcher: client }), { code: 'ECONNREFUSED' });
  await client.close();
});

describe('seededScript', () => {
  const all: SeededWeights = { ok: 1, status503: 1, status429: 1, reset: 1, slow: 1, hang: 1 };
  const draw = (script: () => Behaviour, n: number) => Array.from({ length: n }, () => script());
  const fakeReq = {
    index: 0,
    method: 'GET',
    path: '/',
    headers: {},
    body: Buffer.alloc(0),
    connectionId: 1,
    receivedAt: 0,
  };
  const run = (
    seed: number,
    n: number,
    weights = all,
    opts: SeededOptions = { retryAfter: '1', slowMs: 50 },
  ) => {
    const script = seededScript(seed, weights, opts);
    return draw(() => script(fakeReq), n);
  };

  test('the same seed gives the same sequence; another seed another one', () => {
    const a = run(42, 300);
    assert.deepEqual(run(42, 300), a);
    assert.notDeepEqual(run(43, 300), a);
  });

  test('draws every weighted outcome with its options, and never a zero-weight one', () => {
    const seen = run(1, 600);
    assert.deepEqual(
      seen.find((b) => b.kind === 'respond' && b.status === 503),
      {
        kind: 'respond',
        status: 503,
        headers: { 'retry-after': '1' },
        body: 'busy',
      },
    );
    assert.ok(
      seen.some((b) => b.kind === 'respond' && b.status === 429 && b.headers?.['retry-after'] === '1'),
    );
    assert.ok(seen.some((b) => b.kind === 'respond' && b.delayMs === 50));
    assert.ok(seen.some((b) => b.kind === 'respond' && b.status === 200 && b.delayMs === undefined));
    assert.ok(seen.some((b) => b.kind === 'reset'));
    assert.ok(seen.some((b) => b.kind === 'hang'));
    assert.ok(
      run(1, 500, { ok: 1, status503: 0, hang: 0 }).every((b) => b.kind === 'respond' && b.status === 200),
    );
  });

  test('follows the weights', () => {
    const seen = run(7, 5_000, { ok: 8, status503: 2 });
    const share = seen.filter((b) => b.kind === 'respond' && b.status === 503).length / seen.length;
    assert.ok(share > 0.17 && share < 0.23, `503 share ${share}`);
  });

  test('refuses nonsense weights', () => {
    assert.throws(() => seededScript(1, { ok: 0 }), RangeError);
    assert.throws(() => seededScript(1, { ok: 1, reset: -1 }), RangeError);
    assert.throws(() => seededScript(1, { ok: Number.NaN }), RangeError);
  });

  test('drives a real upstream the same way for the same seed', async (t) => {
    const weights = { ok: 3, status503: 1, status429: 1 };
    const upstream = await startUpstream(seededScript(5, weights));
    const client = new Client(upstream.origin);
    t.after(async () => {
      await client.close();
      await upstream.close();
    });
    const expected = run(5, 20, weights, {}).map((b) => (b.kind === 'respond' ? b.status : b.kind));
    const got: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await request(upstream.url('/'), { dispatcher: client });
      await res.body.dump();
      got.push(res.statusCode);
    }
    assert.deepEqual(got, expected);
  });
});

test('mulberry32 is deterministic and uniform-ish in [0, 1)', () => {
  const a = mulberry32(1);
  assert.equal(a(), 0.6270739405881613);
  const b = mulberry32(1);
  const c = mulberry32(2);
  const xs = Array.from({ length: 1_000 }, () => b());
  assert.equal(xs[0], 0.6270739405881613);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notEqual(c(), 0.6270739405881613);
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

test('listenerCount() counts abort listeners on a signal', () => {
  const ac = new AbortController();
  const onAbort = () => {};
  assert.equal(listenerCount(ac.signal), 0);
  ac.signal.addEventListener('abort', onAbort);
  assert.equal(listenerCount(ac.signal), 1);
  ac.signal.removeEventListener('abort', onAbort);
  assert.equal(listenerCount(ac.signal), 0);
});

test('captureWarnings() collects process warnings until disposed', async () => {
  const captured = captureWarnings();
  process.emitWarning('captured on purpose by a test', 'BreakwaterTestWarning');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(captured.warnings.length, 1);
  assert.equal(captured.warnings[0]?.name, 'BreakwaterTestWarning');
  captured.dispose();
  captured.dispose();
  process.emitWarning('after dispose', 'BreakwaterTestWarning');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(captured.warnings.length, 1);
});

test('elapsed() reports the value or the error, and the time taken', async () => {
  const ok = await elapsed(async () => {
    await sleep(30);
    return 7;
  });
  assert.equal(ok.value, 7);
  assert.equal(ok.error, undefined);
  assert.ok(ok.ms >= 25);
  const boom = new Error('boom');
  const failed = await elapsed(() => Promise.reject(boom));
  assert.equal(failed.error, boom);
  assert.equal(failed.value, undefined);
});
