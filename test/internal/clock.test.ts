import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { monotonicNow, policyNow, policyTime } from '../../src/internal/clock.js';

describe('clock', () => {
  test('monotonicNow reads on performance.now() scale, to well under a millisecond', () => {
    // Bracketed by two reads of performance.now(): ours must fall between them, give or take 50 µs.
    for (let i = 0; i < 1_000; i++) {
      const before = performance.now();
      const ours = monotonicNow();
      const after = performance.now();
      assert.ok(ours >= before - 0.05 && ours <= after + 0.05, `${before} ≤ ${ours} ≤ ${after}`);
    }
  });

  test('monotonicNow never goes back and follows a real wait', async () => {
    let last = monotonicNow();
    for (let i = 0; i < 10_000; i++) {
      const now = monotonicNow();
      assert.ok(now >= last, `${now} after ${last}`);
      last = now;
    }
    const start = monotonicNow();
    // Node's timers run on the loop's millisecond clock and may fire up to a millisecond early.
    await new Promise((resolve) => setTimeout(resolve, 30));
    const waited = monotonicNow() - start;
    assert.ok(waited >= 25 && waited < 1_000, `waited ${waited} ms`);
  });

  test('policy time counts epoch milliseconds', () => {
    assert.ok(Math.abs(policyNow() - Date.now()) < 1_000);
    assert.equal(policyTime(0), performance.timeOrigin);
  });
});
