import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runScript } from '../helpers/child.js';

// Every example in examples/ (the demo has its own test) runs as a user would run it — a child
// process through tsx, its own local upstream — and must end by itself with exit code 0 and print
// one JSON line saying what the caller got and what the upstream received.

/** Each example takes about a second; anything near this is a hang (a timer or socket left open). */
const KILL_AFTER_MS = 30_000;

const runExample = (file: string) => runScript(file, [], KILL_AFTER_MS);

/** Runs `examples/<name>.ts` and returns the one JSON object it printed. */
async function result(name: string): Promise<Record<string, unknown>> {
  const run = await runExample(`examples/${name}.ts`);
  assert.equal(run.signal, null, `${name} ended by itself (stderr: ${run.stderr})`);
  assert.equal(run.code, 0, `${name} exited with 0 (stderr: ${run.stderr})`);
  const lines = run.stdout.trim().split('\n');
  assert.equal(lines.length, 1, `${name} printed one line: ${run.stdout}`);
  const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(parsed.example, name);
  return parsed;
}

describe('examples', { concurrency: true }, () => {
  test("tenant-cap: a gate of the user's caps each tenant at two in flight; the rest never reach the network", async () => {
    assert.deepEqual(await result('tenant-cap'), {
      example: 'tenant-cap',
      a: { ok: 2, refused: 3 },
      b: { ok: 1, refused: 0 },
      mostAtOnce: { a: 2, b: 1 },
      upstreamRequests: 3,
    });
  });

  test('undici-request: request() through resilient(); a 503 retried into a 200', async () => {
    assert.deepEqual(await result('undici-request'), {
      example: 'undici-request',
      status: 200,
      body: 'hello',
      upstreamRequests: 2,
    });
  });

  test('undici-fetch: fetch() through agent.compose(standardPipeline()); a 503 retried', async () => {
    assert.deepEqual(await result('undici-fetch'), {
      example: 'undici-fetch',
      status: 200,
      body: { id: 7, name: 'widget' },
      upstreamRequests: 2,
    });
  });

  test("global-fetch: Node's own fetch after setGlobalDispatcher(); a 502 retried", async () => {
    assert.deepEqual(await result('global-fetch'), {
      example: 'global-fetch',
      status: 200,
      body: 'pong',
      upstreamRequests: 2,
    });
  });

  test('pool: five concurrent GETs over a Pool of two connections, each retried once', async () => {
    const out = await result('pool');
    assert.deepEqual(out.statuses, [200, 200, 200, 200, 200]);
    assert.equal(out.upstreamRequests, 10);
    assert.ok(
      typeof out.connections === 'number' && out.connections >= 1 && out.connections <= 2,
      `the pool's two connections at most (${out.connections})`,
    );
  });

  test('openai-sdk: the real openai client, 429 + Retry-After retried by Breakwater, not the SDK', async () => {
    const out = await result('openai-sdk');
    assert.equal(out.content, 'Hello from a local model.');
    assert.equal(out.finishReason, 'stop');
    assert.equal(out.upstreamRequests, 2);
    assert.deepEqual(out.sdkRetryCounts, ['0', '0'], 'the SDK sent both as its first try');
    assert.equal(out.sameIdempotencyKey, true, 'the retry carried the same Idempotency-Key');
    assert.ok(
      typeof out.waitedMs === 'number' && out.waitedMs >= 1_000 && out.waitedMs < 5_000,
      `Retry-After: 1 honoured (${out.waitedMs} ms)`,
    );
  });
});
