import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidOptionError } from '../../src/errors.js';
import {
  AdaptiveLimit,
  type AdaptiveLimitEnvironment,
  adaptiveLimitSettings,
} from '../../src/policies/adaptive-limit.js';
import { mulberry32 } from '../helpers/prng.js';

// The adaptive limit on a fake clock, against a simulated upstream with a knee: `workers` serve
// at 10–20 ms each, and everything beyond them waits in the upstream's own FIFO queue. The client
// always has more requests than the limit allows, so the limit alone decides what is in flight.

interface Upstream {
  workers: number;
}

interface Run {
  /** The limit at every simulated 100 ms. */
  limits: number[];
  /** Requests waiting inside the upstream at every simulated 100 ms. */
  upstreamQueue: number[];
  completed: number;
}

function simulate(
  limit: AdaptiveLimit,
  upstream: Upstream,
  ms: number,
  options: { demand?: number; changeAt?: number; workersAfter?: number; seed?: number } = {},
): Run {
  const random = mulberry32(options.seed ?? 1);
  const demand = options.demand ?? Number.POSITIVE_INFINITY;
  // Each worker's next free time; requests in flight as [startedAt, doneAt].
  let freeAt: number[] = new Array(upstream.workers).fill(0);
  const inFlight: Array<[number, number]> = [];
  const run: Run = { limits: [], upstreamQueue: [], completed: 0 };
  let nextReport = 0;
  for (let now = 0; now <= ms; now += 0.5) {
    if (options.changeAt !== undefined && now === options.changeAt) {
      freeAt = freeAt.slice(0, options.workersAfter);
    }
    for (let i = inFlight.length - 1; i >= 0; i--) {
      const [startedAt, doneAt] = inFlight[i]!;
      if (doneAt <= now) {
        inFlight.splice(i, 1);
        limit.sample(startedAt, now);
        run.completed++;
      }
    }
    while (inFlight.length < Math.min(limit.current, demand)) {
      const worker = freeAt.indexOf(Math.min(...freeAt));
      const start = Math.max(now, freeAt[worker]!);
      const done = start + 10 + 10 * random();
      freeAt[worker] = done;
      inFlight.push([now, done]);
      limit.admitted(inFlight.length, now);
    }
    if (now >= nextReport) {
      nextReport += 100;
      run.limits.push(limit.current);
      run.upstreamQueue.push(Math.max(0, inFlight.length - freeAt.length));
    }
  }
  return run;
}

const calm: AdaptiveLimitEnvironment = { random: () => 0.5, stalled: () => false };

function newLimit(options: object = {}, env = calm): AdaptiveLimit {
  return new AdaptiveLimit(adaptiveLimitSettings('adaptive', options), env, 0);
}

const last = (values: number[], n: number): number[] => values.slice(-n);

describe('AdaptiveLimit', () => {
  test("converges near the upstream's knee and keeps its queue under one worker's worth", () => {
    const limit = newLimit();
    const run = simulate(limit, { workers: 16 }, 20_000);
    const settled = last(run.limits, 50);
    if (process.env.SHOW_LIMITS) console.log(run.limits.join(' '), run.upstreamQueue.join(' '));
    assert.ok(Math.min(...settled) >= 16, `limit fell below the knee: ${settled}`);
    assert.ok(Math.max(...settled) <= 32, `limit far above the knee: ${settled}`);
    assert.ok(
      Math.max(...last(run.upstreamQueue, 50)) <= 16,
      `upstream queue ${last(run.upstreamQueue, 50)}`,
    );
    // Goodput: the 16 workers at 15 ms on average serve about 1,067 per second.
    assert.ok(run.completed / 20 > 0.9 * 1067, `completed ${run.completed} in 20 s`);
  });

  test('follows a knee that halves within 5 s', () => {
    const limit = newLimit();
    const run = simulate(limit, { workers: 16 }, 20_000, { changeAt: 10_000, workersAfter: 8 });
    // Reports are every 100 ms: index 150 is 15 s, 5 s after the change.
    const after = run.limits.slice(150);
    assert.ok(Math.max(...after) <= 16, `limit after the halving: ${after}`);
    assert.ok(Math.min(...after) >= 8, `limit below the new knee: ${after}`);
  });

  test('a drop lowers the limit at once, once per round trip', () => {
    const limit = newLimit({ initial: 50 });
    const run = simulate(limit, { workers: 100 }, 1_000, { demand: 50 });
    const before = limit.current;
    assert.ok(before >= 50, `limit before the drop ${before} (${run.limits})`);
    limit.drop(1_000, 1_010);
    const cut = limit.current;
    assert.ok(Math.abs(cut - before * 0.9) <= 1, `${before} cut to ${cut}`);
    // An attempt sent before the cut reports the same congestion: no second cut.
    limit.drop(1_005, 1_020);
    assert.equal(limit.current, cut);
    // One sent after it is news.
    limit.drop(1_015, 1_030);
    assert.ok(Math.abs(limit.current - cut * 0.9) <= 1, `${cut} cut to ${limit.current}`);
  });

  test('does not grow while fewer than half the limit are in flight', () => {
    const limit = newLimit({ initial: 40 });
    // Latency stays at the baseline (plenty of workers), but only 10 are ever in flight.
    const run = simulate(limit, { workers: 100 }, 10_000, { demand: 10 });
    assert.ok(Math.max(...run.limits) <= 40, `grew while unused: ${run.limits}`);
    assert.ok(limit.windows > 10, `windows closed: ${limit.windows}`);
  });

  test('grows while used and the latency stays at the baseline', () => {
    const limit = newLimit({ initial: 10, max: 200 });
    simulate(limit, { workers: 1000 }, 5_000);
    assert.ok(limit.current >= 100, `limit ${limit.current}`);
    assert.equal(limit.current <= 200, true);
  });

  test('discards windows in which the event loop stalled', () => {
    let stalled = false;
    const limit = newLimit({}, { random: () => 0.5, stalled: () => stalled });
    simulate(limit, { workers: 16 }, 5_000);
    const before = limit.current;
    const windows = limit.windows;
    stalled = true;
    // Every sample now looks ten times slower, as after a long pause.
    for (let i = 0; i < 200; i++) limit.sample(5_000 + i, 5_000 + i + 150);
    assert.equal(limit.current, before);
    assert.equal(limit.windows, windows);
  });

  test('measures the baseline again, so a permanently slower upstream becomes the new normal', () => {
    const limit = newLimit({ baselineInterval: 2_000 });
    simulate(limit, { workers: 16 }, 3_000);
    const fast = limit.baseline;
    assert.ok(fast >= 10 && fast <= 20, `baseline ${fast}`);
    // Twice as slow from now on, with plenty of workers: only the baseline can explain it.
    for (let now = 3_000; now < 10_000; now += 1) {
      limit.admitted(Math.min(limit.current, 8), now);
      limit.sample(now - 30, now);
    }
    assert.ok(limit.baseline >= 28, `baseline after the slowdown ${limit.baseline}`);
  });

  test('options are checked by name', () => {
    assert.throws(() => adaptiveLimitSettings('a', { min: 0 }), InvalidOptionError);
    assert.throws(() => adaptiveLimitSettings('a', { initial: 5, max: 4 }), /a\.max|a\.initial/);
    assert.throws(() => adaptiveLimitSettings('a', { dropFactor: 1 }), /a\.dropFactor/);
    assert.throws(() => adaptiveLimitSettings('a', { tolerance: -1 }), /a\.tolerance/);
    assert.throws(() => adaptiveLimitSettings('a', { windw: 5 }), /a\.windw/);
    assert.deepEqual(adaptiveLimitSettings('a', undefined).initial, 20);
  });
});
