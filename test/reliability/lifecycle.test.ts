// After close(), the process exits by itself: a child runs every fault and every abort through
// pipelines whose timers are long (60 s total, 30 s attempt, 20 s backoff), closes the pipelines,
// the dispatchers and the upstream, and returns. Exiting within seconds proves no socket and no
// library timer was left holding the event loop.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('after every fault and abort, close() leaves nothing that keeps the process alive', async () => {
  const script = fileURLToPath(new URL('./exit-fixture.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const started = performance.now();
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(killer);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(code, 0, `exited on its own (code ${code} after ${seconds.toFixed(1)} s)\n${err}`);
  assert.equal(err, '', 'no warning on stderr');
  assert.ok(seconds < 10, `exited after ${seconds.toFixed(1)} s`);
  assert.deepEqual(JSON.parse(out), {
    ok: '200',
    '503 retried to the end': '503',
    reset: 'ECONNRESET',
    'reset mid-body': '200ECONNRESET',
    'close after response': '200',
    refused: 'ECONNREFUSED',
    'abort awaiting headers': 'AbortError',
    'abort in a 20 s backoff': 'AbortError',
    'abort mid-body': '200AbortError',
    'abort the slot holder': 'AbortError',
    'abort while queued': 'AbortError',
    'in flight at close()': '200',
  });
});
