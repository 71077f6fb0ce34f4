import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CircuitState, InvalidOptionError } from '../../src/errors.js';
import { type BreakerOptions, type BreakerSnapshot, BreakerState } from '../../src/policies/breaker-state.js';

function options(overrides: Partial<BreakerOptions> = {}): BreakerOptions {
  return {
    consecutiveFailures: 5,
    failureRatio: false,
    window: 10_000,
    minimumThroughput: 10,
    halfOpenAfter: { initial: 1_000, max: 8_000 },
    halfOpenProbes: 1,
    ...overrides,
  };
}

/** A breaker plus the transitions it reported, in order. */
function breaker(overrides: Partial<BreakerOptions> = {}): { b: BreakerState; transitions: CircuitState[] } {
  const transitions: CircuitState[] = [];
  return { b: new BreakerState(options(overrides), (to) => transitions.push(to)), transitions };
}

/** Admits and fails `n` ordinary calls at `now`. */
function fail(b: BreakerState, now: number, n = 1): void {
  for (let i = 0; i < n; i++) {
    assert.deepEqual(verdict(b.admit(now)), { admitted: true, probe: false });
    b.recordFailure(now, false);
  }
}

function succeed(b: BreakerState, now: number, n = 1): void {
  for (let i = 0; i < n; i++) {
    assert.deepEqual(verdict(b.admit(now)), { admitted: true, probe: false });
    b.recordSuccess(now, false);
  }
}

/** What an admission says, without the breaker it names (checked once, in its own test). */
const verdict = (a: ReturnType<BreakerState['admit']>) =>
  a.admitted
    ? { admitted: true, probe: a.probe }
    : { admitted: false, state: a.state, retryAfterMs: a.retryAfterMs };
const PROBE = { admitted: true, probe: true };
const rejectedOpen = (retryAfterMs: number) => ({ admitted: false, state: 'open', retryAfterMs });
const REJECTED_HALF_OPEN = { admitted: false, state: 'half_open', retryAfterMs: 0 };

describe('BreakerState: triggers', () => {
  test('consecutive: opens at the N-th failure in a row; a success restarts the count', () => {
    const { b, transitions } = breaker();
    fail(b, 0, 4);
    succeed(b, 0);
    fail(b, 0, 4);
    assert.equal(b.state, 'closed');
    fail(b, 100);
    assert.equal(b.state, 'open');
    assert.deepEqual(transitions, ['open']);
    assert.deepEqual(verdict(b.admit(100)), rejectedOpen(1_000));
    assert.deepEqual(verdict(b.admit(500)), rejectedOpen(600));
    assert.equal(b.retryAfterMs(500), 600);
  });

  test('ratio: opens at exactly the ratio with minimumThroughput calls', () => {
    const { b } = breaker({ consecutiveFailures: false, failureRatio: 0.5, minimumThroughput: 10 });
    for (let i = 0; i < 4; i++) {
      succeed(b, 0);
      fail(b, 0);
    }
    succeed(b, 0);
    assert.equal(b.state, 'closed', '4 failures in 9 calls');
    fail(b, 0);
    assert.equal(b.state, 'open', '5 failures in 10 calls is 50 %');
  });

  test('ratio: a success that brings the window to minimumThroughput opens it when the ratio is met', () => {
    const { b, transitions } = breaker({
      consecutiveFailures: false,
      failureRatio: 0.5,
      minimumThroughput: 10,
    });
    for (let i = 0; i < 4; i++) {
      fail(b, 0);
      succeed(b, 0);
    }
    fail(b, 0);
    assert.equal(b.state, 'closed', '5 failures in 9 calls, below minimumThroughput');
    succeed(b, 0);
    assert.equal(b.state, 'open', '5 failures in 10 calls');
    assert.deepEqual(transitions, ['open']);
  });

  test('ratio: just below the ratio stays closed', () => {
    const { b } = breaker({ consecutiveFailures: false, failureRatio: 0.5, minimumThroughput: 10 });
    succeed(b, 0, 51);
    fail(b, 0, 49);
    assert.equal(b.state, 'closed', '49 %');
    fail(b, 0);
    assert.equal(b.state, 'closed', '50 of 101 is still below 50 %');
    fail(b, 0);
    assert.equal(b.state, 'open', '51 of 102 is 50 %');
  });

  test('ratio: below minimumThroughput nothing opens, even at 100 % failures', () => {
    const { b } = breaker({ consecutiveFailures: false, failureRatio: 0.5, minimumThroughput: 10 });
    fail(b, 0, 9);
    assert.equal(b.state, 'closed');
    fail(b, 0);
    assert.equal(b.state, 'open');
  });

  test('ratio: calls that left the window no longer count', () => {
    const ratioOnly = {
      consecutiveFailures: false as const,
      failureRatio: 0.5,
      minimumThroughput: 10,
      window: 10_000,
    };
    const slid = breaker(ratioOnly).b;
    const kept = breaker(ratioOnly).b;
    for (const [b, later] of [
      [slid, 10_000],
      [kept, 9_999],
    ] as const) {
      fail(b, 0, 9);
      succeed(b, later);
    }
    assert.equal(slid.state, 'closed', 'the 9 failures at t=0 expired: 0 failures in 1 call');
    assert.equal(kept.state, 'open', 'still in the window: 9 failures in 10 calls');
  });

  test('false disables a trigger', () => {
    const noConsecutive = breaker({
      consecutiveFailures: false,
      failureRatio: 0.5,
      minimumThroughput: 1_000,
    }).b;
    fail(noConsecutive, 0, 200);
    assert.equal(noConsecutive.state, 'closed');

    const noRatio = breaker({ consecutiveFailures: 5, failureRatio: false, minimumThroughput: 1 }).b;
    for (let i = 0; i < 100; i++) {
      fail(noRatio, i, 4);
      succeed(noRatio, i);
    }
    assert.equal(noRatio.state, 'closed', '80 % failures, never 5 in a row');
  });

  test('either trigger opens it', () => {
    const both = { consecutiveFailures: 3, failureRatio: 0.5, minimumThroughput: 5 };
    const byConsecutive = breaker(both).b;
    fail(byConsecutive, 0, 3);
    assert.equal(byConsecutive.state, 'open');
    const byRatio = breaker(both).b;
    fail(byRatio, 0);
    succeed(byRatio, 0);
    fail(byRatio, 0);
    succeed(byRatio, 0);
    assert.equal(byRatio.state, 'closed');
    fail(byRatio, 0);
    assert.equal(byRatio.state, 'open', '3 of 5');
  });
});

describe('BreakerState: half-open', () => {
  /** A breaker opened at t=0 (consecutive trigger), its wait 1 s. */
  function opened(overrides: Partial<BreakerOptions> = {}) {
    const made = breaker(overrides);
    fail(made.b, 0, 5);
    return made;
  }

  test('the wait elapses lazily: still open until admit() lets the first probe through', () => {
    const { b, transitions } = opened();
    assert.deepEqual(verdict(b.admit(999)), rejectedOpen(1));
    assert.equal(b.retryAfterMs(5_000), 0);
    assert.equal(b.state, 'open');
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    assert.equal(b.state, 'half_open');
    assert.deepEqual(transitions, ['open', 'half_open']);
    assert.equal(b.retryAfterMs(1_000), 0);
  });

  test('admits exactly halfOpenProbes concurrent probes and rejects the rest at once', () => {
    const { b } = opened({ halfOpenProbes: 3 });
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    assert.deepEqual(verdict(b.admit(1_001)), PROBE);
    assert.deepEqual(verdict(b.admit(1_002)), REJECTED_HALF_OPEN);
    assert.deepEqual(verdict(b.admit(9_999)), REJECTED_HALF_OPEN);
    b.releaseProbe(true);
    assert.deepEqual(verdict(b.admit(10_000)), PROBE, 'a released slot is free again');
    assert.deepEqual(verdict(b.admit(10_000)), REJECTED_HALF_OPEN);
  });

  test("a probe's success closes the breaker and clears its counters", () => {
    const { b, transitions } = opened();
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    b.recordSuccess(1_010, true);
    assert.equal(b.state, 'closed');
    assert.deepEqual(transitions, ['open', 'half_open', 'closed']);
    fail(b, 1_020, 4);
    assert.equal(b.state, 'closed', 'the count started over');
    fail(b, 1_030);
    assert.equal(b.state, 'open');
    assert.equal(b.retryAfterMs(1_030), 1_000, 'and the wait is the initial one again');
  });

  test("a probe's failure re-opens with the wait doubled, up to max", () => {
    const { b } = opened(); // initial 1 s, max 8 s
    let now = 0;
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      now += b.retryAfterMs(now);
      assert.deepEqual(verdict(b.admit(now)), PROBE);
      b.recordFailure(now, true);
      assert.equal(b.state, 'open');
      waits.push(b.retryAfterMs(now));
    }
    assert.deepEqual(waits, [2_000, 4_000, 8_000, 8_000, 8_000]);
    now += 8_000;
    assert.deepEqual(verdict(b.admit(now)), PROBE);
    b.recordSuccess(now, true);
    fail(b, now, 5);
    assert.equal(b.retryAfterMs(now), 1_000, 'closing resets the growth');
  });

  test('a probe that ends with no verdict frees its slot and decides nothing', () => {
    const { b } = opened();
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    b.releaseProbe(true);
    assert.equal(b.state, 'half_open');
    assert.deepEqual(verdict(b.admit(1_001)), PROBE);
    b.releaseProbe(false);
    assert.deepEqual(verdict(b.admit(1_002)), REJECTED_HALF_OPEN, 'releasing a non-probe frees nothing');
  });

  test('late results of calls admitted while closed do not count as probe results', () => {
    const { b, transitions } = breaker();
    for (let i = 0; i < 5; i++) assert.deepEqual(verdict(b.admit(0)), { admitted: true, probe: false });
    const straggler = b.admit(0); // admitted while closed, answers much later
    assert.deepEqual(verdict(straggler), { admitted: true, probe: false });
    for (let i = 0; i < 5; i++) b.recordFailure(0, false);
    assert.equal(b.state, 'open');

    b.recordFailure(500, false);
    assert.equal(b.retryAfterMs(500), 500, 'a late failure while open does not extend the wait');

    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    b.recordFailure(1_100, false);
    assert.equal(b.state, 'half_open', 'a late failure while half-open does not re-open');
    b.recordSuccess(1_200, false);
    assert.equal(b.state, 'half_open', 'a late success while half-open does not close');
    assert.deepEqual(verdict(b.admit(1_200)), REJECTED_HALF_OPEN, 'nor frees the probe slot');
    b.recordSuccess(1_300, true);
    assert.equal(b.state, 'closed');
    assert.deepEqual(transitions, ['open', 'half_open', 'closed']);
  });

  test('a probe outliving its half-open period keeps its slot, and its late verdict is ignored while open', () => {
    const { b } = opened({ halfOpenProbes: 2 });
    assert.deepEqual(verdict(b.admit(1_000)), PROBE); // A
    assert.deepEqual(verdict(b.admit(1_000)), PROBE); // B
    b.recordFailure(1_100, true); // A fails: open again, 2 s
    assert.equal(b.state, 'open');
    b.recordSuccess(1_200, true); // B succeeds, late: the breaker already decided
    assert.equal(b.state, 'open');
    assert.equal(b.retryAfterMs(1_200), 1_900);
    assert.deepEqual(verdict(b.admit(3_100)), PROBE);
    assert.deepEqual(verdict(b.admit(3_100)), PROBE, "B's slot was freed");
    assert.deepEqual(verdict(b.admit(3_100)), REJECTED_HALF_OPEN);
  });

  test('a probe still running when the next half-open period starts occupies a slot', () => {
    const { b } = opened({ halfOpenProbes: 2 });
    assert.deepEqual(verdict(b.admit(1_000)), PROBE); // A
    assert.deepEqual(verdict(b.admit(1_000)), PROBE); // B, slow
    b.recordFailure(1_100, true); // A fails: open again, 2 s
    assert.deepEqual(verdict(b.admit(3_100)), PROBE);
    assert.deepEqual(verdict(b.admit(3_100)), REJECTED_HALF_OPEN, 'B is still probing the upstream');
    b.releaseProbe(true); // B aborted
    assert.deepEqual(verdict(b.admit(3_200)), PROBE);
  });
});

describe('BreakerState: manual control', () => {
  test('isolate: open until reset, never probing', () => {
    const { b, transitions } = breaker();
    b.isolate(0);
    assert.equal(b.state, 'open');
    assert.deepEqual(verdict(b.admit(0)), rejectedOpen(Number.POSITIVE_INFINITY));
    assert.deepEqual(verdict(b.admit(1e12)), rejectedOpen(Number.POSITIVE_INFINITY));
    assert.equal(b.retryAfterMs(1e12), Number.POSITIVE_INFINITY);
    assert.equal(b.isIdle(1e12), false);
    b.reset();
    assert.equal(b.state, 'closed');
    assert.deepEqual(verdict(b.admit(1e12)), { admitted: true, probe: false });
    assert.deepEqual(transitions, ['open', 'closed']);
  });

  test('isolate while half-open: a probe that then succeeds does not close it', () => {
    const { b, transitions } = breaker();
    fail(b, 0, 5);
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    b.isolate(1_001);
    b.recordSuccess(1_002, true);
    assert.equal(b.state, 'open');
    assert.deepEqual(transitions, ['open', 'half_open', 'open']);
  });

  test('isolate on an open breaker reports no transition', () => {
    const { b, transitions } = breaker();
    fail(b, 0, 5);
    b.isolate(10);
    assert.deepEqual(transitions, ['open']);
    assert.equal(b.retryAfterMs(10_000), Number.POSITIVE_INFINITY);
  });

  test('reset clears counters and the re-open growth', () => {
    const { b, transitions } = breaker();
    fail(b, 0, 5);
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    b.recordFailure(1_000, true);
    assert.equal(b.retryAfterMs(1_000), 2_000);
    b.reset();
    fail(b, 1_000, 4);
    assert.equal(b.state, 'closed');
    fail(b, 1_000);
    assert.equal(b.retryAfterMs(1_000), 1_000);
    b.reset();
    b.reset();
    assert.deepEqual(transitions, ['open', 'half_open', 'open', 'closed', 'open', 'closed']);
  });
});

describe('BreakerState: idleness', () => {
  test('idle when closed with nothing in the window', () => {
    const { b } = breaker();
    assert.equal(b.isIdle(0), true);
    succeed(b, 0);
    assert.equal(b.isIdle(0), false);
    assert.equal(b.isIdle(9_999), false);
    assert.equal(b.isIdle(10_000), true);
  });

  test('never idle while open or half-open, however long ago', () => {
    const { b } = breaker();
    fail(b, 0, 5);
    assert.equal(b.isIdle(1e9), false);
    b.admit(1e9);
    assert.equal(b.state, 'half_open');
    assert.equal(b.isIdle(2e9), false);
  });

  test('not idle while a probe is still running after the breaker closed', () => {
    const { b } = breaker({ halfOpenProbes: 2 });
    fail(b, 0, 5);
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    assert.deepEqual(verdict(b.admit(1_000)), PROBE);
    b.recordSuccess(1_000, true);
    assert.equal(b.state, 'closed');
    assert.equal(b.isIdle(1e9), false);
    b.releaseProbe(true);
    assert.equal(b.isIdle(1e9), true);
  });
});

describe('BreakerState: snapshots', () => {
  const T0 = Date.UTC(2025, 0, 1);

  /** Through JSON text, as a file or a store would carry it. */
  const roundTrip = (b: BreakerState): BreakerSnapshot => JSON.parse(JSON.stringify(b));

  test('closed', () => {
    const { b } = breaker();
    fail(b, T0, 3);
    const snapshot = roundTrip(b);
    assert.deepEqual(snapshot, { state: 'closed', reopenCount: 0, isolated: false });
    const transitions: CircuitState[] = [];
    const restored = BreakerState.fromJSON(snapshot, options(), T0 + 60_000, (to) => transitions.push(to));
    assert.equal(restored.state, 'closed');
    assert.deepEqual(transitions, []);
  });

  test('a restored open breaker stays open for the rest of its time, counted from when it opened', () => {
    const { b } = breaker();
    fail(b, T0, 5);
    assert.deepEqual(verdict(b.admit(T0 + 1_000)), PROBE);
    b.recordFailure(T0 + 1_000, true); // re-opened: 2 s from T0 + 1 s
    const snapshot = roundTrip(b);
    assert.deepEqual(snapshot, { state: 'open', openedAt: T0 + 1_000, reopenCount: 1, isolated: false });

    const transitions: CircuitState[] = [];
    const restored = BreakerState.fromJSON(snapshot, options(), T0 + 2_500, (to) => transitions.push(to));
    assert.equal(restored.state, 'open');
    assert.deepEqual(transitions, ['open'], 'the restored state is reported');
    assert.equal(restored.retryAfterMs(T0 + 2_500), 500);
    assert.deepEqual(verdict(restored.admit(T0 + 2_999)), rejectedOpen(1));
    assert.deepEqual(verdict(restored.admit(T0 + 3_000)), PROBE);
    restored.recordFailure(T0 + 3_000, true);
    assert.equal(restored.retryAfterMs(T0 + 3_000), 4_000, 'the growth continues where it was');
    assert.deepEqual(transitions, ['open', 'half_open', 'open']);
  });

  test('a restored open breaker whose time is up probes at once', () => {
    const { b } = breaker();
    fail(b, T0, 5);
    const restored = BreakerState.fromJSON(roundTrip(b), options(), T0 + 3_600_000);
    assert.equal(restored.state, 'open');
    assert.deepEqual(verdict(restored.admit(T0 + 3_600_000)), PROBE);
  });

  test('an openedAt in the future (the clock stepped back) counts from now', () => {
    const snapshot: BreakerSnapshot = { state: 'open', openedAt: T0 + 1e9, reopenCount: 0 };
    const restored = BreakerState.fromJSON(snapshot, options(), T0);
    assert.equal(restored.retryAfterMs(T0), 1_000);
  });

  test('isolated stays isolated', () => {
    const { b } = breaker();
    b.isolate(T0);
    const snapshot = roundTrip(b);
    assert.deepEqual(snapshot, { state: 'open', openedAt: T0, reopenCount: 0, isolated: true });
    const restored = BreakerState.fromJSON(snapshot, options(), T0 + 1e9);
    assert.deepEqual(verdict(restored.admit(T0 + 1e10)), rejectedOpen(Number.POSITIVE_INFINITY));
    restored.reset();
    assert.equal(restored.state, 'closed');
  });

  test('half-open resumes probing, with no probe in flight', () => {
    const { b } = breaker({ halfOpenProbes: 1 });
    fail(b, T0, 5);
    assert.deepEqual(verdict(b.admit(T0 + 1_000)), PROBE);
    const snapshot = roundTrip(b);
    assert.deepEqual(snapshot, { state: 'half_open', openedAt: T0, reopenCount: 0, isolated: false });
    const transitions: CircuitState[] = [];
    const restored = BreakerState.fromJSON(snapshot, options(), T0 + 5_000, (to) => transitions.push(to));
    assert.equal(restored.state, 'half_open');
    assert.deepEqual(transitions, ['half_open']);
    assert.deepEqual(verdict(restored.admit(T0 + 5_000)), PROBE);
    assert.deepEqual(verdict(restored.admit(T0 + 5_000)), REJECTED_HALF_OPEN);
  });

  test('a malformed snapshot is refused with InvalidOptionError naming the field', () => {
    const bad: Array<[unknown, string]> = [
      [null, 'snapshot'],
      [{ state: 'ajar', reopenCount: 0 }, 'snapshot.state'],
      [{ state: 'closed', reopenCount: -1 }, 'snapshot.reopenCount'],
      [{ state: 'closed', reopenCount: 1.5 }, 'snapshot.reopenCount'],
      [{ state: 'open', reopenCount: 0 }, 'snapshot.openedAt'],
      [{ state: 'open', openedAt: '2025-01-01', reopenCount: 0 }, 'snapshot.openedAt'],
      [{ state: 'open', openedAt: T0, reopenCount: 0, isolated: 'yes' }, 'snapshot.isolated'],
    ];
    for (const [snapshot, path] of bad) {
      assert.throws(
        () => BreakerState.fromJSON(snapshot as BreakerSnapshot, options(), T0),
        (err: unknown) => err instanceof InvalidOptionError && err.path === path,
        JSON.stringify(snapshot),
      );
    }
  });
});

describe('BreakerState: admissions', () => {
  test('an admission names its breaker, so the outcome goes back to the one that admitted it', () => {
    const { b } = breaker({ consecutiveFailures: 1, halfOpenAfter: { initial: 1_000, max: 1_000 } });
    const first = b.admit(0);
    assert.ok(first.admitted);
    assert.equal(first.breaker, b);
    assert.equal(b.admit(0), first, 'admitting while closed allocates nothing');
    first.breaker.recordFailure(0, first.probe);
    const probe = b.admit(1_000);
    assert.ok(probe.admitted && probe.probe);
    assert.equal(probe.breaker, b);
  });
});

describe('BreakerState: what the fleet tells it', () => {
  test('openFromFleet opens for the given wait and failed-probe count; closeFromFleet closes', () => {
    const { b, transitions } = breaker({ consecutiveFailures: 3, halfOpenAfter: { initial: 100, max: 800 } });
    b.recordFailure(0, false);
    b.openFromFleet(10, 250, 2);
    assert.equal(b.state, 'open');
    assert.equal(b.reopenCount, 2);
    assert.equal(b.retryAfterMs(10), 250);
    assert.equal(b.admit(259).admitted, false);
    const probe = b.admit(260);
    assert.ok(probe.admitted && probe.probe);
    // The local count started again: the failure before the opening is forgotten.
    b.closeFromFleet();
    assert.equal(b.state, 'closed');
    assert.equal(b.reopenCount, 0);
    b.releaseProbe(true);
    b.recordFailure(300, false);
    b.recordFailure(301, false);
    assert.equal(b.state, 'closed');
    assert.deepEqual(transitions, ['open', 'half_open', 'closed']);
  });

  test('an isolated breaker ignores the fleet; a second opening only moves the probe time', () => {
    const { b, transitions } = breaker({});
    b.isolate(0);
    b.openFromFleet(5, 10, 0);
    b.closeFromFleet();
    assert.equal(b.state, 'open');
    assert.equal(b.retryAfterMs(5), Number.POSITIVE_INFINITY);
    const other = breaker({}).b;
    other.openFromFleet(0, 100, 0);
    other.openFromFleet(50, 500, 1);
    assert.equal(other.retryAfterMs(50), 500);
    assert.deepEqual(transitions, ['open']);
  });
});
