import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runScript } from '../helpers/child.js';
import { type RedisServer, skipUnlessRedis, startRedis } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const skip = skipUnlessRedis();
const PER_SECOND = 60;
const BURST = 10;
const WORKERS = 3;
const EACH = 150;

/** The most arrival times that fall in any window [t, t + ms). */
function maxInWindow(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! <= sorted[i]! - ms) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}

interface QuotaRun {
  ok: number;
  failed: string[];
  unhandled: string[];
}

describe('fleet quota: 3 processes share one rate limit through Redis', { skip }, () => {
  let redis: RedisServer;
  let upstream: Upstream;
  before(async () => {
    redis = await startRedis();
    upstream = await startUpstream({ kind: 'respond', status: 200, body: 'ok' });
  });
  after(async () => {
    await upstream?.close();
    await redis?.stop();
  });

  /** Runs the fleet; resolves to the most requests the upstream saw in one second. */
  async function fleet(redisUrl: string, prefix: string): Promise<number> {
    upstream.reset();
    // Every worker starts at the same wall-clock time, after all of them had time to load.
    const startAt = Date.now() + 4_000;
    const options = JSON.stringify({ perSecond: PER_SECOND, burst: BURST, count: EACH, prefix });
    const runs = await Promise.all(
      Array.from({ length: WORKERS }, () =>
        runScript(
          'test/fixtures/fleet-worker.ts',
          ['quota', upstream.url('/'), redisUrl, String(startAt), options],
          60_000,
        ),
      ),
    );
    for (const run of runs) {
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as QuotaRun;
      assert.deepEqual(result.failed, []);
      assert.equal(result.ok, EACH);
      assert.deepEqual(result.unhandled, []);
    }
    assert.equal(upstream.count(), WORKERS * EACH);
    return maxInWindow(
      upstream.requests.map((r) => r.receivedAt),
      1_000,
    );
  }

  test(`with the store the upstream never sees more than ${PER_SECOND} × 1.1 + ${BURST} in a second; without it, about 3 × that`, async (t) => {
    const shared = await fleet(redis.url, 'bw-fleet-quota:');
    assert.ok(shared <= PER_SECOND * 1.1 + BURST, `with the store: ${shared} in one second`);
    const alone = await fleet('none', '');
    // Each process alone lets its burst and its own 60/s through.
    assert.ok(alone >= 2.5 * (PER_SECOND + BURST) * 0.9, `without the store: ${alone} in one second`);
    assert.ok(alone > 2 * shared, `without the store ${alone}, with it ${shared}`);
    t.diagnostic(`most requests in one second: ${shared} with the store, ${alone} without`);
  });
});
