import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runScript } from '../helpers/child.js';
import { skipUnlessRedis, startRedis } from '../helpers/redis-server.js';

// examples/fleet.ts, run as a user would run it against a Redis of its own. It lives with the
// Redis tests rather than in test/examples/examples.test.ts: its cluster of workers is heavy, and
// there it would run beside the demo's latency measurements. The store timeout is generous: the
// test machine may be loaded, and a store that answers late sends workers to their local limits.

const KILL_AFTER_MS = 60_000;

test('fleet: cluster workers share one quota through Redis; the upstream sees the fleet within it', {
  skip: skipUnlessRedis(),
}, async () => {
  const redis = await startRedis();
  try {
    const run = await runScript(
      'examples/fleet.ts',
      ['--redis', redis.url, '--timeout-ms', '250'],
      KILL_AFTER_MS,
    );
    assert.equal(run.code, 0, `fleet exited with 0 (stderr: ${run.stderr})`);
    const out = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(out.example, 'fleet');
    assert.deepEqual(out.workerExitCodes, [0, 0, 0]);
    assert.equal(out.upstreamRequests, 90);
    // 30 a second and a burst of 5 for the fleet: 90 requests take about 3 s, not 1.
    assert.ok(
      (out.mostInOneSecond as number) <= 30 * 1.1 + 5,
      `the upstream saw ${out.mostInOneSecond} in one second`,
    );
    assert.ok((out.seconds as number) >= 2.5, `the fleet took ${out.seconds} s`);
  } finally {
    await redis.stop();
  }
});
