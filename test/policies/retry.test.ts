import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, type Dispatcher, request } from 'undici';
import {
  type GiveUpEvent,
  pipeline,
  type RetryEvent,
  type RetryOptions,
  resilient,
  retry,
  timeout,
} from '../../src/index.js';
import { refusedOrigin, startUpstream, type Upstream } from '../helpers/upstream.js';

const fast = { initialDelay: 1, maxDelay: 5 };

describe('retry', () => {
  let upstream: Upstream;
  let dispatcher: Dispatcher;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());
  afterEach(async () => {
    await dispatcher?.close();
    upstream.reset();
  });

  const use = (options: RetryOptions = {}, outer: Parameters<typeof pipeline>[0] = []) => {
    const stage = retry({ backoff: fast, ...options });
    dispatcher = resilient(new Agent(), pipeline([...outer, stage]));
    return stage;
  };

  test('503, 503, 200 → the caller gets the 200; 3 requests over one kept-alive connection', async () => {
    use();
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'done' },
    ]);
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 200);
    assert.equal(await res.body.text(), 'done');
    assert.equal(upstream.count(), 3);
    assert.equal(upstream.connections, 1);
  });

  test('POST to a 503 server → exactly one upstream request, the 503 reaches the caller', async () => {
    use();
    upstream.setScript({ kind: 'respond', status: 503, body: 'busy' });
    const res = await request(upstream.url('/'), { dispatcher, method: 'POST', body: 'payload' });
    assert.equal(res.statusCode, 503);
    assert.equal(await res.body.text(), 'busy');
    assert.equal(upstream.count({ method: 'POST' }), 1);
  });

  test('POST with an Idempotency-Key → maxAttempts attempts, all with the same key', async () => {
    use({ maxAttempts: 3 });
    upstream.setScript({ kind: 'respond', status: 503, body: 'busy' });
    const res = await request(upstream.url('/'), {
      dispatcher,
      method: 'POST',
      body: 'payload',
      headers: { 'Idempotency-Key': 'order-42' },
    });
    assert.equal(res.statusCode, 503, 'after the last attempt the 503 is returned as is');
    await res.body.text();
    assert.equal(upstream.count({ method: 'POST' }), 3);
    assert.deepEqual(
      upstream.requests.map((r) => [r.headers['idempotency-key'], r.body.toString()]),
      Array(3).fill(['order-42', 'payload']),
    );
  });

  test('a POST opted in per request is retried', async () => {
    use({ maxAttempts: 2 });
    upstream.setScript([
      { kind: 'respond', status: 502 },
      { kind: 'respond', status: 201, body: 'created' },
    ]);
    const res = await request(upstream.url('/'), {
      dispatcher,
      method: 'POST',
      body: 'x',
      breakwater: { idempotent: true },
    } as never);
    assert.equal(res.statusCode, 201);
    assert.equal(await res.body.text(), 'created');
    assert.equal(upstream.count(), 2);
  });

  test('POST to a closed port is retried: the request never left, and the server sees it once', async (t) => {
    const origin = await refusedOrigin();
    const port = Number(new URL(origin).port);
    use({ maxAttempts: 3, backoff: { initialDelay: 300, maxDelay: 300 } });
    // The port starts listening while the first retry waits out its backoff.
    const received: string[] = [];
    const late = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        received.push(`${req.method} ${body}`);
        res.end('late but fine');
      });
    });
    t.after(() => new Promise((r) => late.close(r)));
    const listening = new Promise<void>((resolve) =>
      setTimeout(() => late.listen(port, '127.0.0.1', resolve), 50),
    );
    const res = await request(`${origin}/`, { dispatcher, method: 'POST', body: 'once' });
    await listening;
    assert.equal(await res.body.text(), 'late but fine');
    assert.deepEqual(received, ['POST once']);
    late.closeAllConnections();
  });

  test('a stream body is not replayable: one request, the 503 reaches the caller', async () => {
    use();
    upstream.setScript({ kind: 'respond', status: 503, body: 'busy' });
    const res = await request(upstream.url('/'), {
      dispatcher,
      method: 'PUT',
      body: Readable.from(['a', 'b']),
    });
    assert.equal(res.statusCode, 503);
    await res.body.text();
    assert.equal(upstream.count(), 1);
  });

  test('a stream body with a body factory is retried with a fresh body each time', async () => {
    use({ maxAttempts: 3 });
    upstream.setScript([
      { kind: 'respond', status: 503 },
      { kind: 'respond', status: 503 },
      { kind: 'respond', status: 200 },
    ]);
    const res = await request(upstream.url('/'), {
      dispatcher,
      method: 'PUT',
      body: Readable.from(['a', 'b']),
      breakwater: { body: () => Readable.from(['a', 'b']) },
    } as never);
    assert.equal(res.statusCode, 200);
    await res.body.text();
    assert.deepEqual(
      upstream.requests.map((r) => r.body.toString()),
      ['ab', 'ab', 'ab'],
    );
  });

  test('headers then a reset mid-body → an error, never duplicated or concatenated bytes', async () => {
    use();
    upstream.setScript({ kind: 'reset-mid-body', status: 200, body: 'partial-', contentLength: 100 });
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 200);
    const chunks: Buffer[] = [];
    const error = await (async () => {
      for await (const chunk of res.body) chunks.push(chunk as Buffer);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof Error, 'the body errors');
    assert.equal(Buffer.concat(chunks).toString(), 'partial-');
    assert.equal(upstream.count(), 1, 'no retry once headers went to the caller');
  });

  test('Retry-After above maxRetryAfter → not retried, the 429 reaches the caller with its body', async () => {
    use({ maxRetryAfter: 1_000 });
    upstream.setScript({ kind: 'respond', status: 429, headers: { 'retry-after': '5' }, body: 'slow down' });
    const started = performance.now();
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 429);
    assert.equal(res.headers['retry-after'], '5');
    assert.equal(await res.body.text(), 'slow down');
    assert.equal(upstream.count(), 1);
    assert.ok(performance.now() - started < 500);
  });

  test('Retry-After is honoured: the wait is at least what the server asked', async () => {
    use({ maxAttempts: 2 });
    upstream.setScript([
      { kind: 'respond', status: 503, headers: { 'retry-after': '1' } },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    const [first, second] = upstream.requests;
    const gap = second!.receivedAt - first!.receivedAt;
    assert.ok(gap >= 990, `second attempt came ${gap} ms after the first`);
  });

  test('Retry-After past the total deadline → not retried', async () => {
    use({ maxAttempts: 3 }, [timeout(500)]);
    upstream.setScript({ kind: 'respond', status: 503, headers: { 'retry-after': '2' }, body: 'later' });
    const started = performance.now();
    const res = await request(upstream.url('/'), { dispatcher });
    assert.equal(res.statusCode, 503);
    assert.equal(await res.body.text(), 'later');
    assert.equal(upstream.count(), 1);
    assert.ok(performance.now() - started < 400);
  });

  test('4xx other than 408/429 are not retried', async () => {
    use();
    for (const status of [400, 401, 403, 404, 409, 422]) {
      upstream.reset();
      upstream.setScript({ kind: 'respond', status });
      const res = await request(upstream.url('/'), { dispatcher });
      assert.equal(res.statusCode, status);
      await res.body.text();
      assert.equal(upstream.count(), 1, `status ${status}`);
    }
    for (const status of [408, 429]) {
      upstream.reset();
      upstream.setScript({ kind: 'respond', status });
      await (await request(upstream.url('/'), { dispatcher })).body.text();
      assert.equal(upstream.count(), 3, `status ${status}`);
    }
  });

  test('unknown errors (a malformed response) are not retried', async (t) => {
    use();
    let connections = 0;
    const garbage = createTcpServer((socket) => {
      connections++;
      socket.once('data', () => socket.end('NOT HTTP AT ALL\r\n\r\n'));
    });
    await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r));
    t.after(() => new Promise((r) => garbage.close(r)));
    const { port } = garbage.address() as { port: number };
    await assert.rejects(request(`http://127.0.0.1:${port}/`, { dispatcher }));
    assert.equal(connections, 1);
  });

  test('headers given as a one-shot iterator make the request not replayable, even with an Idempotency-Key', async () => {
    const stage = use({ maxAttempts: 3 });
    const giveUps: GiveUpEvent[] = [];
    const sub = stage.onGiveUp((e) => giveUps.push(e));
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'busy' },
      { kind: 'respond', status: 200, body: 'ok' },
    ]);
    // undici reads the generator when it builds the first attempt: a repeat would carry no headers.
    function* headers(): Generator<[string, string]> {
      yield ['x-a', '1'];
      yield ['idempotency-key', 'k1'];
    }
    const res = await request(upstream.url('/'), {
      dispatcher,
      method: 'POST',
      body: 'b',
      headers: headers(),
    });
    assert.equal(res.statusCode, 503);
    await res.body.text();
    assert.deepEqual(
      upstream.requests.map((r) => [r.headers['x-a'], r.headers['idempotency-key']]),
      [['1', 'k1']],
    );
    assert.deepEqual(
      giveUps.map((g) => [g.attempts, g.reason]),
      [[1, 'not-replayable']],
    );
    sub.dispose();
  });

  test('giving up on resets rethrows the error as it was, with the attempt count', async () => {
    const stage = use({ maxAttempts: 3 });
    const retries: RetryEvent[] = [];
    const giveUps: GiveUpEvent[] = [];
    stage.onRetry((e) => retries.push(e));
    const sub = stage.onGiveUp((e) => giveUps.push(e));
    upstream.setScript({ kind: 'reset' });
    const error = (await request(upstream.url('/'), { dispatcher }).catch((e: unknown) => e)) as Error & {
      attempts?: number;
      code?: string;
    };
    assert.ok(['ECONNRESET', 'UND_ERR_SOCKET'].includes(String(error.code)), String(error.code));
    assert.equal(error.attempts, 3);
    assert.equal(upstream.count(), 3);
    assert.deepEqual(
      retries.map((r) => [r.attempt, r.reason]),
      [
        [1, 'network'],
        [2, 'network'],
      ],
    );
    assert.deepEqual(
      giveUps.map((g) => [g.attempts, g.reason]),
      [[3, 'attempts']],
    );
    sub.dispose();
  });

  test('a small discarded body is drained (connection reused); a huge one drops its socket', async () => {
    use({ maxAttempts: 2 });
    upstream.setScript([
      { kind: 'respond', status: 503, body: 'x'.repeat(1_000) },
      { kind: 'respond', status: 200 },
    ]);
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    assert.equal(upstream.connections, 1);
    assert.equal(upstream.count(), 2);
    upstream.reset();
    await dispatcher.close();
    use({ maxAttempts: 2, backoff: { initialDelay: 50, maxDelay: 50 } });
    upstream.setScript([
      { kind: 'respond', status: 503, body: Buffer.alloc(4 * 1024 * 1024) },
      { kind: 'respond', status: 200 },
    ]);
    await (await request(upstream.url('/'), { dispatcher })).body.text();
    const [first, second] = upstream.requests;
    assert.notEqual(
      first!.connectionId,
      second!.connectionId,
      'the huge body was not read: its socket was dropped',
    );
  });
});

describe('retry budget', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({ kind: 'respond', status: 503, body: 'down' });
  });
  after(() => upstream.close());

  const run = async (budget: RetryOptions['budget']): Promise<number> => {
    upstream.reset();
    const dispatcher = resilient(new Agent(), pipeline([retry({ maxAttempts: 3, backoff: fast, budget })]));
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          const res = await request(upstream.url('/'), { dispatcher });
          assert.equal(res.statusCode, 503);
          await res.body.text();
        }),
      );
    }
    await dispatcher.close();
    return upstream.count();
  };

  test('1,000 requests to a dead upstream: ≤ 1.2 × 1,000 + floor with the budget, 3 × 1,000 without', async () => {
    const withBudget = await run({ ratio: 0.2, minPerSecond: 10, window: 10_000 });
    // floor: 10 per second over a 10 s window = 100 retries
    assert.ok(withBudget <= 1_000 * 1.2 + 100, `upstream saw ${withBudget}`);
    assert.ok(withBudget >= 1_000);
    const without = await run(false);
    assert.equal(without, 3_000);
  });
});
