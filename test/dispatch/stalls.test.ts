import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { CircuitBreakerStage, pipeline, resilient, standardPipeline, timeout } from '../../src/index.js';

// Regression: the soak's standard breaker once opened on an upstream that did nothing wrong. A
// client-side stall longer than the attempt timeout (a GC pause, a CPU-bound task) made every
// attempt's deadline overdue at once, and Node runs due timers before it reads sockets: all the
// attempts timed out, though their answers were already waiting unread, and the consecutive
// failures opened the breaker. Deadlines that fire late now let the sockets be read first, and a
// timeout across a long stall is not counted against the upstream.

/**
 * An upstream in a process of its own, so that it answers while this one is stalled (an upstream
 * in this process would stall with it). It answers after `delayMs`, or never for `/hang`, and
 * `/count` tells how many other requests it received.
 */
async function startChildUpstream(
  delayMs: number,
): Promise<{ origin: string; count(): Promise<number>; close(): void }> {
  const code = `
    let received = 0;
    const server = require('node:http').createServer((req, res) => {
      if (req.url === '/count') return res.end(String(received));
      received++;
      if (req.url === '/hang') return;
      setTimeout(() => res.end('ok'), ${delayMs});
    });
    server.listen(0, '127.0.0.1', () => console.log(server.address().port));
    process.stdin.on('end', () => process.exit(0)).resume();`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  const origin = `http://127.0.0.1:${Number(chunk.toString().trim())}`;
  return {
    origin,
    count: async () => Number(await (await request(`${origin}/count`)).body.text()),
    close: () => child.stdin!.end(),
  };
}

/**
 * Blocks the event loop for `ms`, as a long GC pause or a CPU-bound task would, from the check
 * phase: the loop then runs its due timers before it polls sockets again, the worst order.
 */
function stall(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setImmediate(() => {
      const end = performance.now() + ms;
      while (performance.now() < end) {
        // busy
      }
      resolve();
    }),
  );
}

describe('event-loop stalls', () => {
  test('a stall longer than the attempt timeout neither times out answered attempts nor opens the breaker', async (t) => {
    const upstream = await startChildUpstream(20);
    t.after(() => upstream.close());
    const agent = new Agent();
    t.after(() => agent.close());
    // Margins for a loaded machine: the upstream answers in 20 ms, the timeout allows 300.
    const interceptor = standardPipeline({
      attemptTimeout: 300,
      circuitBreaker: { consecutiveFailures: 5 },
      retry: { backoff: { initialDelay: 1, maxDelay: 2 } },
    });
    const breaker = interceptor.stages.find((s) => s instanceof CircuitBreakerStage)!;
    const transitions: string[] = [];
    breaker.onStateChange(({ to }) => transitions.push(to));
    const dispatcher = resilient(agent, interceptor);
    // Warm the connections so the stall hits requests already on the wire.
    await Promise.all(
      Array.from({ length: 20 }, async () =>
        (await request(`${upstream.origin}/`, { dispatcher })).body.dump(),
      ),
    );
    const before = await upstream.count();

    const pending = Array.from({ length: 20 }, async () => {
      const res = await request(`${upstream.origin}/`, { dispatcher });
      return { status: res.statusCode, body: await res.body.text() };
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await stall(700);
    const results = await Promise.allSettled(pending);

    const failed = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      failed.map((r) => String((r as PromiseRejectedResult).reason)),
      [],
      'no attempt timed out',
    );
    assert.equal((await upstream.count()) - before, 20, 'nothing was retried');
    assert.deepEqual(transitions, [], 'the breaker stayed closed');
  });

  test('a total timeout reads the answers that arrived during a stall before it expires', async (t) => {
    const upstream = await startChildUpstream(20);
    t.after(() => upstream.close());
    const agent = new Agent();
    t.after(() => agent.close());
    const dispatcher = resilient(agent, pipeline([timeout(100)]));
    const pending = Array.from({ length: 10 }, async () => {
      const res = await request(`${upstream.origin}/`, { dispatcher });
      return res.body.text();
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await stall(300);
    const results = await Promise.allSettled(pending);
    assert.deepEqual(
      results.map((r) => r.status),
      Array(10).fill('fulfilled'),
      String(results.find((r) => r.status === 'rejected')?.reason),
    );
  });

  test('attempts that time out across a stall are not counted against the upstream', async (t) => {
    const upstream = await startChildUpstream(20);
    t.after(() => upstream.close());
    const agent = new Agent();
    t.after(() => agent.close());
    const run = async (stallMs: number): Promise<string[]> => {
      const interceptor = standardPipeline({
        attemptTimeout: 400,
        retry: { maxAttempts: 1 },
        circuitBreaker: { consecutiveFailures: 3 },
      });
      const breaker = interceptor.stages.find((s) => s instanceof CircuitBreakerStage)!;
      const transitions: string[] = [];
      breaker.onStateChange(({ to }) => transitions.push(to));
      const dispatcher = resilient(agent, interceptor);
      const pending = Array.from({ length: 5 }, () =>
        assert.rejects(request(`${upstream.origin}/hang`, { dispatcher }), { code: 'BREAKWATER_TIMEOUT' }),
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (stallMs > 0) await stall(stallMs);
      await Promise.all(pending);
      return transitions;
    };
    assert.deepEqual(await run(0), ['open'], 'without a stall, five timeouts open the breaker');
    assert.deepEqual(await run(600), [], 'timeouts across a stall are nobody’s verdict');
  });

  test('a request that is not answered still times out after a stall', async (t) => {
    const upstream = await startChildUpstream(20);
    t.after(() => upstream.close());
    const agent = new Agent();
    t.after(() => agent.close());
    const dispatcher = resilient(agent, pipeline([timeout(100)]));
    const started = performance.now();
    const pending = request(`${upstream.origin}/hang`, { dispatcher });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await stall(300);
    await assert.rejects(pending, { code: 'BREAKWATER_TIMEOUT' });
    assert.ok(performance.now() - started < 1_000, 'it expired right after the stall');
  });
});
