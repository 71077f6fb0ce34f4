import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { RetryBudget } from '../../src/policies/retry-budget.js';

/** The defaults of the spec: 20 % of requests plus 10 retries/s over 10 s, so a floor of 100. */
const DEFAULTS = { ratio: 0.2, minPerSecond: 10, window: 10_000 };

/** Withdraws until the budget refuses; returns how many it granted. */
function drain(budget: RetryBudget, now: number): number {
  let granted = 0;
  while (budget.tryWithdraw(now)) granted++;
  return granted;
}

describe('RetryBudget', () => {
  test('1,000 requests all retried: exactly 20 % of them plus the floor get a retry', () => {
    const budget = new RetryBudget(DEFAULTS);
    let now = 0;
    let granted = 0;
    for (let i = 0; i < 1_000; i++) {
      now += 1; // one request a millisecond, all inside one window
      budget.recordRequest(now);
      if (budget.tryWithdraw(now)) granted++;
    }
    assert.equal(granted, 0.2 * 1_000 + 100);
    assert.equal(budget.remaining(now), 0);
    assert.equal(budget.tryWithdraw(now), false);
  });

  test('two retries per request draw on the same budget', () => {
    const budget = new RetryBudget(DEFAULTS);
    let granted = 0;
    for (let i = 0; i < 1_000; i++) {
      budget.recordRequest(i);
      if (budget.tryWithdraw(i)) granted++;
      if (budget.tryWithdraw(i)) granted++;
    }
    assert.equal(granted, 300);
  });

  test('the window slides: old requests and old retries expire', () => {
    const budget = new RetryBudget(DEFAULTS);
    for (let i = 0; i < 500; i++) budget.recordRequest(0);
    assert.equal(drain(budget, 0), 0.2 * 500 + 100);
    for (let i = 0; i < 500; i++) budget.recordRequest(5_000);
    assert.equal(drain(budget, 5_000), 100, 'the second 500 requests earn 100 more');
    assert.equal(budget.remaining(9_999), 0, 'everything is still in the window');
    // t=0 left the window: 500 requests (earning 100) and 100 retries remain, plus the floor of 100.
    assert.equal(budget.remaining(10_000), 100);
    assert.equal(budget.remaining(15_000), 100, 'only the floor is left');
    assert.equal(budget.isIdle(15_000), true);
  });

  test('a request counts for at least 9/10 of the window and expires by its end', () => {
    const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, window: 1_000 });
    budget.recordRequest(999); // the last millisecond of bucket 9
    assert.equal(budget.remaining(1_899), 1);
    assert.equal(budget.remaining(1_900), 0);
  });

  test('minPerSecond alone lets a low-traffic client retry', () => {
    const budget = new RetryBudget({ ratio: 0, minPerSecond: 1, window: 10_000 });
    budget.recordRequest(0);
    assert.equal(budget.remaining(0), 10);
    assert.equal(drain(budget, 0), 10);
    assert.equal(budget.remaining(9_999), 0);
    assert.equal(budget.remaining(10_000), 10, 'withdrawals expire too');
  });

  test('without ratio or floor nothing is ever retried', () => {
    const budget = new RetryBudget({ ratio: 0, minPerSecond: 0, window: 10_000 });
    for (let i = 0; i < 100; i++) budget.recordRequest(i);
    assert.equal(budget.tryWithdraw(100), false);
    assert.equal(budget.remaining(100), 0);
  });

  test('fractions round down, without losing one to floating-point error', () => {
    const floorOnly = new RetryBudget({ ratio: 0, minPerSecond: 0.5, window: 3_000 });
    assert.equal(floorOnly.remaining(0), 1, '1.5 retries granted by the floor is 1');
    const ratioOnly = new RetryBudget({ ratio: 0.29, minPerSecond: 0, window: 10_000 });
    for (let i = 0; i < 100; i++) ratioOnly.recordRequest(0);
    assert.equal(0.29 * 100 < 29, true, 'the premise: binary floating point undershoots');
    assert.equal(ratioOnly.remaining(0), 29);
  });

  test('isIdle: only when nothing is counted in the window', () => {
    const budget = new RetryBudget(DEFAULTS);
    assert.equal(budget.isIdle(0), true);
    budget.recordRequest(0);
    assert.equal(budget.isIdle(0), false);
    assert.equal(budget.isIdle(9_999), false);
    assert.equal(budget.isIdle(10_000), true);
    assert.equal(budget.tryWithdraw(20_000), true);
    assert.equal(budget.isIdle(20_000), false, 'a withdrawal is activity too');
    assert.equal(budget.isIdle(30_000), true);
  });

  test('a clock stepping back counts into the newest bucket', () => {
    const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, window: 10_000 });
    budget.recordRequest(50_000);
    budget.recordRequest(40_000);
    assert.equal(budget.remaining(40_000), 2);
    assert.equal(budget.remaining(59_999), 2);
    assert.equal(budget.remaining(60_000), 0);
  });

  test('a gap of many windows clears everything at once', () => {
    const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, window: 10_000 });
    for (let t = 0; t < 10_000; t += 1_000) budget.recordRequest(t);
    assert.equal(budget.remaining(9_999), 10);
    assert.equal(budget.remaining(1e12), 0);
    budget.recordRequest(1e12);
    assert.equal(budget.remaining(1e12), 1);
  });

  test('agrees with a naive model that keeps every event', () => {
    const window = 1_000;
    const width = window / 10;
    const op = fc.record({
      kind: fc.constantFrom('request', 'withdraw', 'remaining', 'idle'),
      dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 150 }), fc.integer({ min: 0, max: 3_000 })),
    });
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 5 }),
        fc.array(op, { maxLength: 300 }),
        (ratio, minPerSecond, ops) => {
          const budget = new RetryBudget({ ratio, minPerSecond, window });
          const events: Array<{ bucket: number; retry: boolean }> = [];
          let now = 0;
          for (const { kind, dt } of ops) {
            now += dt;
            const bucket = Math.floor(now / width);
            const live = events.filter((e) => e.bucket > bucket - 10);
            const requests = live.filter((e) => !e.retry).length;
            const retries = live.length - requests;
            const left = Math.max(
              0,
              Math.floor(ratio * requests + (minPerSecond * window) / 1_000 + 1e-9) - retries,
            );
            if (kind === 'request') {
              budget.recordRequest(now);
              events.push({ bucket, retry: false });
            } else if (kind === 'withdraw') {
              const granted = budget.tryWithdraw(now);
              if (granted !== left >= 1) return false;
              if (granted) events.push({ bucket, retry: true });
            } else if (kind === 'remaining') {
              if (budget.remaining(now) !== left) return false;
            } else if (budget.isIdle(now) !== (live.length === 0)) return false;
          }
          return true;
        },
      ),
    );
  });
});
