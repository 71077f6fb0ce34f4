import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { monotonicNow } from '../../src/internal/clock.js';
import { type Deadline, DeadlineQueue } from '../../src/internal/deadline-queue.js';

function item(log: string[], name: string): Deadline {
  return {
    deadlineAt: 0,
    deadlinePrev: null,
    deadlineNext: null,
    inDeadlineQueue: false,
    deadlineTimer: null,
    expire: () => log.push(`${name}@${Math.round(performance.now())}`),
  };
}

describe('DeadlineQueue', () => {
  test('expires items in order, each no earlier than its own deadline, and skips removed ones', async () => {
    const queue = new DeadlineQueue(60);
    const log: string[] = [];
    const started = performance.now();
    const a = item(log, 'a');
    const b = item(log, 'b');
    const c = item(log, 'c');
    queue.add(a, monotonicNow());
    await new Promise((r) => setTimeout(r, 20));
    queue.add(b, monotonicNow());
    queue.add(c, monotonicNow());
    queue.remove(b);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(
      log.map((l) => l.split('@')[0]),
      ['a', 'c'],
    );
    const cAt = Number(log[1]!.split('@')[1]) - started;
    assert.ok(cAt >= 79, `c expired ${cAt} ms after the start, its deadline was 80`);
    assert.equal(a.inDeadlineQueue || b.inDeadlineQueue || c.inDeadlineQueue, false);
  });

  test('removed items never expire, and the queue keeps working after it emptied', async () => {
    const queue = new DeadlineQueue(30);
    const log: string[] = [];
    const items = Array.from({ length: 5 }, (_, i) => item(log, String(i)));
    for (const i of items) queue.add(i, monotonicNow());
    for (const i of items) queue.remove(i);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(log.length, 0);
    queue.add(item(log, 'later'), monotonicNow());
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(
      log.map((l) => l.split('@')[0]),
      ['later'],
    );
  });

  test('start() with a duration of its own gives the item a timer; stop() clears either kind', async () => {
    const queue = new DeadlineQueue(1_000);
    const log: string[] = [];
    const own = item(log, 'own');
    const stopped = item(log, 'stopped');
    const queued = item(log, 'queued');
    queue.start(own, monotonicNow(), 30);
    queue.start(stopped, monotonicNow(), 30);
    queue.start(queued, monotonicNow());
    assert.equal(own.inDeadlineQueue, false);
    assert.ok(own.deadlineTimer !== null);
    assert.equal(queued.inDeadlineQueue, true);
    queue.stop(stopped);
    queue.stop(queued);
    assert.equal(stopped.deadlineTimer, null);
    assert.equal(queued.inDeadlineQueue, false);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(
      log.map((l) => l.split('@')[0]),
      ['own'],
    );
    assert.equal(own.deadlineTimer, null, 'a fired timer is forgotten');
  });

  // After a stall the queue lets one round of I/O run before expiring: an answer read there
  // removes its deadline. Here the "answer" is a check-phase callback queued at the stall's end,
  // which runs after the timers phase and the poll phase of the next turn.
  const stallThenAnswer = (queue: DeadlineQueue, answered: Deadline): Promise<void> =>
    new Promise((resolve) =>
      setImmediate(() => {
        const end = performance.now() + 120;
        while (performance.now() < end) {
          // a stall past the deadline
        }
        setImmediate(() => {
          queue.remove(answered);
          resolve();
        });
      }),
    );

  test('a deadline overdue after a stall waits one round of I/O before it expires', async () => {
    const queue = new DeadlineQueue(30);
    const log: string[] = [];
    const a = item(log, 'a');
    queue.add(a, monotonicNow());
    await stallThenAnswer(queue, a);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(log, [], 'the answer read after the stall came first');
  });

  test('a second stall after a deferral emptied the queue defers again', async () => {
    const queue = new DeadlineQueue(30);
    const log: string[] = [];
    const a = item(log, 'a');
    queue.add(a, monotonicNow());
    await stallThenAnswer(queue, a);
    const b = item(log, 'b');
    queue.add(b, monotonicNow());
    await stallThenAnswer(queue, b);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(log, [], 'b was answered, not expired');
  });

  test('a deadline that is not answered still expires right after the stall', async () => {
    const queue = new DeadlineQueue(30);
    const log: string[] = [];
    const a = item(log, 'a');
    const b = item(log, 'b');
    queue.add(a, monotonicNow());
    queue.add(b, monotonicNow());
    await stallThenAnswer(queue, a);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(
      log.map((l) => l.split('@')[0]),
      ['b'],
    );
  });
});
