import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RateLimiter, type RateWaiter } from '../../src/policies/rate-limiter.js';

/** A waiter that records when it was admitted (on the fake clock the test passes around). */
function waiter(log: string[], name: string): RateWaiter {
  return {
    queuePrev: null,
    queueNext: null,
    queued: false,
    admit: () => log.push(name),
  };
}

describe('RateLimiter (token bucket, fake clock)', () => {
  test('burst at once, then one per interval; a waiter is admitted when its token comes, in order', () => {
    const limiter = new RateLimiter(50, 10); // 20 ms per token
    for (let i = 0; i < 10; i++) assert.equal(limiter.tryTake(0), true, `burst token ${i}`);
    assert.equal(limiter.tryTake(0), false);
    const log: string[] = [];
    assert.equal(limiter.request(0, 1_000, waiter(log, 'a')), 'queued');
    assert.equal(limiter.request(0, 1_000, waiter(log, 'b')), 'queued');
    assert.equal(limiter.headWait(0), 20);
    assert.equal(limiter.waitNow(0), 60);
    assert.ok(Math.abs(limiter.drain(19) - 1) < 1e-6);
    assert.deepEqual(log, []);
    assert.ok(Math.abs(limiter.drain(20) - 20) < 1e-6);
    assert.deepEqual(log, ['a']);
    assert.equal(limiter.drain(40), -1);
    assert.deepEqual(log, ['a', 'b']);
    // Nobody waits and the token of t=40 was taken: the next one comes at 60.
    assert.equal(limiter.tryTake(50), false);
    assert.equal(limiter.tryTake(60), true);
  });

  test('a wait beyond maxWait is refused, and the refusal takes no place in the queue', () => {
    const limiter = new RateLimiter(10, 1); // 100 ms per token
    assert.equal(limiter.tryTake(0), true);
    const log: string[] = [];
    assert.equal(limiter.request(0, 0, waiter(log, 'x')), 'refused');
    assert.equal(limiter.request(0, 99, waiter(log, 'x')), 'refused');
    assert.equal(limiter.request(0, 100, waiter(log, 'a')), 'queued');
    assert.equal(limiter.request(0, 150, waiter(log, 'x')), 'refused');
    assert.equal(limiter.queued, 1);
    assert.equal(limiter.waitNow(0), 200);
  });

  test('a waiter that leaves gives its turn to the next one', () => {
    const limiter = new RateLimiter(10, 1);
    limiter.tryTake(0);
    const log: string[] = [];
    const a = waiter(log, 'a');
    limiter.request(0, 1_000, a);
    limiter.request(0, 1_000, waiter(log, 'b'));
    limiter.leave(a);
    assert.equal(limiter.drain(100), -1);
    assert.deepEqual(log, ['b']);
  });

  test('the bucket never holds more than burst, however long it was idle', () => {
    const limiter = new RateLimiter(100, 3);
    assert.equal(limiter.isIdle(0), true);
    let taken = 0;
    while (limiter.tryTake(1_000_000)) taken++;
    assert.equal(taken, 3);
    assert.equal(limiter.isIdle(1_000_000), false);
    assert.equal(limiter.isIdle(1_000_030), true);
  });

  test('a pause holds every request until it ends, then the bucket refills from empty', () => {
    const limiter = new RateLimiter(10, 5);
    limiter.pause(0, 1_000);
    assert.equal(limiter.pausedFor(400), 600);
    assert.equal(limiter.tryTake(999), false);
    assert.equal(limiter.waitNow(0), 1_100);
    const log: string[] = [];
    assert.equal(limiter.request(500, 2_000, waiter(log, 'a')), 'queued');
    assert.equal(limiter.drain(1_050), 50);
    assert.deepEqual(log, []);
    assert.equal(limiter.drain(1_100), -1);
    assert.deepEqual(log, ['a']);
    // A longer pause extends the one in force; a shorter one changes nothing.
    limiter.pause(1_200, 500);
    limiter.pause(1_300, 100);
    assert.equal(limiter.tryTake(1_699), false);
    assert.equal(limiter.pausedFor(1_699), 1);
    assert.equal(limiter.tryTake(1_799), false);
    assert.equal(limiter.tryTake(1_800), true);
  });

  test('exhaust empties the bucket without a pause', () => {
    const limiter = new RateLimiter(10, 5);
    limiter.exhaust(0);
    assert.equal(limiter.tryTake(0), false);
    assert.equal(limiter.pausedFor(0), 0);
    assert.equal(limiter.tryTake(100), true);
  });

  test('over a long run no window of one second holds more than perSecond + burst admissions', () => {
    const limiter = new RateLimiter(50, 10);
    const admitted: number[] = [];
    // A request every 3 ms for 5 s; each takes a token at once or is refused.
    for (let t = 0; t < 5_000; t += 3) if (limiter.tryTake(t)) admitted.push(t);
    let max = 0;
    for (let i = 0, j = 0; i < admitted.length; i++) {
      while (admitted[j]! < admitted[i]! - 1_000) j++;
      max = Math.max(max, i - j + 1);
    }
    assert.ok(max <= 61, `max ${max} in one second`);
    assert.ok(admitted.length >= 250 && admitted.length <= 261, `${admitted.length} admitted`);
  });
});
