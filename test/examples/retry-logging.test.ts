import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

test('examples/retry-logging.ts logs each retry as structured JSON, then the answer', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/retry-logging.ts'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(killer);
  assert.equal(code, 0);
  const lines = out
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
