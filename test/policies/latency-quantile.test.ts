import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HedgePolicy } from '../../src/policies/hedge.js';
import { LatencyQuantile } from '../../src/policies/latency-quantile.js';
import { mulberry32 } from '../helpers/prng.js';

// The adaptive hedge delay: a quantile of recent latencies, fed samples as a run would (no clock:
// its window is counted in samples).

describe('LatencyQuantile', () => {
  test("converges near the upstream's p95, within a bucket (5 %)", () => {
    const random = mulberry32(11);
    const q = new LatencyQuantile(0.95);
    // 5–20 ms for 98 % of responses, 1 s for 2 %: the p95 is the fast part's 96.9th percentile,
    // 5 + 15 × 0.95 / 0.98 = 19.54 ms. A bucket's upper bound is read: at most 5 % above.
    for (let i = 0; i < 5_000; i++) q.record(random() < 0.02 ? 1_000 : 5 + 15 * random());
    const p95 = q.value()!;
    assert.ok(p95 > 19.54 * 0.97 && p95 < 19.54 * 1.06, `p95 read ${p95}`);
  });

  test('no answer before enough samples', () => {
    const q = new LatencyQuantile(0.95, 20);
    for (let i = 0; i < 19; i++) q.record(10);
    assert.equal(q.value(), undefined);
    q.record(10);
    assert.ok(q.value()! >= 10 && q.value()! < 10.6);
  });

  test('follows an upstream that became slower within a few half-lives', () => {
    const q = new LatencyQuantile(0.5, 20, 200);
    for (let i = 0; i < 2_000; i++) q.record(10);
    for (let i = 0; i < 1_000; i++) q.record(100);
    const median = q.value()!;
    assert.ok(median >= 100 && median < 106, `median read ${median}`);
  });

  test('zero, negative and huge samples stay in range', () => {
    const q = new LatencyQuantile(0.99, 1);
    q.record(0);
    q.record(-5);
    q.record(1e12);
    assert.ok(Number.isFinite(q.value()!));
  });
});

describe('HedgePolicy', () => {
  test('an adaptive delay never goes below its floor of 1 ms', () => {
    const policy = new HedgePolicy({ delay: 'adaptive' }, 10);
    const clock = policy.clocks.get('k');
    assert.equal(policy.delayOf(clock), undefined, 'no delay before enough samples');
    for (let i = 0; i < 100; i++) clock.latencies!.record(0.05);
    assert.equal(policy.delayOf(clock), 1);
  });

  test('options are checked when the stage is made', () => {
    assert.throws(() => new HedgePolicy({ delay: 0 }, 10), /retry\.hedge\.delay/);
    assert.throws(() => new HedgePolicy({ maxExtraLoad: 0 }, 10), /retry\.hedge\.maxExtraLoad/);
    assert.throws(() => new HedgePolicy({ maxHedges: 0 }, 10), /retry\.hedge\.maxHedges/);
    assert.throws(() => new HedgePolicy({ when: 1 }, 10), /retry\.hedge/);
    assert.equal(new HedgePolicy(true, 10).delay, 'adaptive');
    assert.equal(new HedgePolicy({ delay: 50 }, 10).delay, 50);
  });
});
