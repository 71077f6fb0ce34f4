import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runScript } from './helpers/child.js';

test('a process that used the pipeline exits by itself: no library timer keeps it alive', async () => {
  const run = await runScript('test/fixtures/exits-by-itself.ts', [], 20_000);
  assert.equal(run.signal, null, `exited on its own, not killed (stderr: ${run.stderr})`);
  assert.equal(run.code, 0);
  assert.deepEqual(JSON.parse(run.stdout), { status: 200, calls: 2 });
  // The total and attempt timeouts were 60 s and 30 s: exiting well before proves they were cleared or unref'd.
  assert.ok(run.ms < 15_000);
});
