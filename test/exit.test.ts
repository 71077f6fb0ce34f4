import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('a process that used the pipeline exits by itself: no library timer keeps it alive', async () => {
  const script = fileURLToPath(new URL('./fixtures/exits-by-itself.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const started = performance.now();
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(killer);
  assert.equal(code, 0, 'exited on its own (not killed)');
  assert.deepEqual(JSON.parse(out), { status: 200, calls: 2 });
  // The total and attempt timeouts were 60 s and 30 s: exiting well before proves they were cleared or unref'd.
  assert.ok(performance.now() - started < 15_000);
});
