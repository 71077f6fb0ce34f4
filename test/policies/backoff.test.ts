import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ExponentialBackoff, type IBackoff } from 'cockatiel';
import fc from 'fast-check';
import { type BackoffStep, DecorrelatedBackoff, ExponentialDelay } from '../../src/policies/backoff.js';
import { mulberry32 } from '../helpers/prng.js';

/** The first `n` delays of a fresh sequence. */
function delays(backoff: DecorrelatedBackoff, n: number): number[] {
  const out: number[] = [];
  let step: BackoffStep = backoff.first();
  for (let i = 0; i < n; i++) {
    out.push(step.delay);
    step = step.next();
  }
  return out;
}

describe('DecorrelatedBackoff', () => {
  test("matches cockatiel's decorrelatedJitterGenerator number for number", () => {
    const options = { initialDelay: 100, maxDelay: 10_000 };
    const cockatiel: number[] = [];
    const random = Math.random;
    Math.random = mulberry32(7);
    try {
      let step: IBackoff<unknown> = new ExponentialBackoff(options).next();
      for (let i = 0; i < 30; i++) {
        cockatiel.push(step.duration);
        step = step.next(undefined);
      }
    } finally {
      Math.random = random;
    }
    assert.deepEqual(delays(new DecorrelatedBackoff(options, mulberry32(7)), 30), cockatiel);
  });

  test('is deterministic with a fixed random', () => {
    const fixed = delays(new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 1e9 }, () => 0.5), 4);
    // (2^t·tanh(√(4t)) − previous) / 1.4 × 100, with t = attempt + 0.5
    const expected = [89.74049355791999, 109.30035473816788, 203.57479626216332, 404.59794227837546];
    for (const [i, delay] of fixed.entries()) {
      assert.ok(Math.abs(delay - expected[i]!) < 1e-9, `delay ${i}: ${delay}`);
    }
    assert.deepEqual(
      delays(new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 10_000 }, mulberry32(3)), 10),
      delays(new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 10_000 }, mulberry32(3)), 10),
    );
  });

  test('the smallest random gives a first delay of 0, the largest stays under twice the initial', () => {
    assert.equal(new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 10_000 }, () => 0).first().delay, 0);
    const high = new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 10_000 }, () => 0.999999).first()
      .delay;
    assert.ok(high > 100 && high < 200, String(high));
  });

  test('every delay lies within [0, maxDelay]', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        (seed, initialDelay, extra) => {
          const maxDelay = initialDelay + extra;
          for (const delay of delays(
            new DecorrelatedBackoff({ initialDelay, maxDelay }, mulberry32(seed)),
            40,
          )) {
            if (!(delay >= 0 && delay <= maxDelay)) return false;
          }
          return true;
        },
      ),
    );
  });

  test('grows about twice per attempt on average', () => {
    const backoff = new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 1e9 }, mulberry32(11));
    const runs = 5_000;
    const sums = new Array<number>(7).fill(0);
    for (let run = 0; run < runs; run++) {
      delays(backoff, 7).forEach((delay, i) => {
        sums[i]! += delay;
      });
    }
    const means = sums.map((sum) => sum / runs);
    assert.ok(means[0]! > 70 && means[0]! < 110, `first mean ${means[0]}`);
    for (let i = 1; i < means.length; i++) assert.ok(means[i]! > means[i - 1]!, `mean ${i} grows`);
    for (let i = 2; i < means.length; i++) {
      const growth = means[i]! / means[i - 1]!;
      assert.ok(growth > 1.7 && growth < 2.3, `growth ${i}: ${growth}`);
    }
  });

  test('is capped: late delays equal maxDelay exactly, even past the overflow of 2^t', () => {
    const backoff = new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 1_000 }, mulberry32(5));
    const sequence = delays(backoff, 1_100);
    assert.ok(sequence.slice(10).every((delay) => delay === 1_000));
    assert.equal(sequence.at(-1), 1_000);
  });

  test('steps are immutable: one factory and one step serve many sequences', () => {
    let draws = 0;
    const backoff = new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 10_000 }, () => {
      draws++;
      return 0.5;
    });
    const first = backoff.first();
    const a = first.next();
    const b = first.next();
    assert.notEqual(a, b);
    assert.equal(a.delay, b.delay);
    assert.equal(first.delay, backoff.first().delay);
    assert.equal(draws, 4, 'one random draw per step made');
    assert.equal(a.next().delay, b.next().delay);
  });

  test('the injected random is called as itself: Math.random is never swapped around a draw', () => {
    const global = Math.random;
    let sawGlobal: (() => number) | undefined;
    const backoff = new DecorrelatedBackoff({ initialDelay: 100, maxDelay: 10_000 }, () => {
      sawGlobal = Math.random;
      return 0.25;
    });
    backoff.first().next();
    assert.equal(sawGlobal, global, 'Math.random was the real one while our source ran');
    assert.equal(Math.random, global);
  });
});

describe('ExponentialDelay', () => {
  test('min(max, initial × 2^(n-1)), no jitter', () => {
    const wait = new ExponentialDelay(5_000, 60_000);
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => wait.delay(n)),
      [5_000, 10_000, 20_000, 40_000, 60_000, 60_000],
    );
  });

  test('a constant wait when initial equals max', () => {
    const wait = new ExponentialDelay(5_000, 5_000);
    assert.deepEqual(
      [1, 2, 10].map((n) => wait.delay(n)),
      [5_000, 5_000, 5_000],
    );
  });

  test('below 1 reads as the first opening; a huge count stays at the cap', () => {
    const wait = new ExponentialDelay(100, 1_000);
    assert.equal(wait.delay(0), 100);
    assert.equal(wait.delay(-3), 100);
    assert.equal(wait.delay(5_000), 1_000);
  });
});
