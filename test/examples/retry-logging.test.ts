import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runScript } from '../helpers/child.js';

test('examples/retry-logging.ts logs each retry as structured JSON, then the answer', async () => {
  const run = await runScript('examples/retry-logging.ts', [], 20_000);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const retries = lines.filter((l) => l.msg === 'retrying request');
  assert.deepEqual(
    retries.map((r) => [r.attempt, r.reason, r.statusCode, r.level]),
    [
      [1, 'status', 503, 40],
      [2, 'status', 503, 40],
    ],
  );
  const done = lines.find((l) => l.msg === 'request finished');
  assert.deepEqual([done?.status, done?.body, done?.upstreamCalls], [200, 'ok', 3]);
});
