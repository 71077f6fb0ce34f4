// A request or an attempt going through a section of the plan's steps: the ticket its gates see,
// the holder of its deadlines, and the one place that releases what it holds.

import { TimeoutError, type TimeoutScope } from '../errors.js';
import { isUpstreamFailure } from '../http/classify.js';
import { monotonicNow } from '../internal/clock.js';
import type { Deadline, DeadlineQueue } from '../internal/deadline-queue.js';
import { longestStallSince } from '../internal/loop-stalls.js';
import { channels, type QueueWaitMessage } from '../telemetry/channels.js';
import type { Gate, GateOutcome, GateTicket } from './gate.js';
import type { OriginObserver } from './observer.js';

/** A gate in a section of the plan. */
export interface GateStep {
  readonly kind: 'gate';
  readonly gate: Gate;
}

/** A timeout in a section of the plan: it bounds everything after it in the passage. */
export interface TimeoutStep {
  readonly kind: 'timeout';
  readonly ms: number;
  readonly scope: TimeoutScope;
  /** Stops at the response headers instead of the end of the body. */
  readonly untilHeaders: boolean;
  /** The deadlines of every passage through this step (one timer for all of them). */
  readonly queue: DeadlineQueue;
}

export type Step = GateStep | TimeoutStep;

// Where a passage stands with the gate it is entering.
const IDLE = 0;
const ENTERING = 1;
const ADMITTED = 2;
const WAITING = 3;
const REFUSED = 4;
/** Released: no gate is entered or admitted any more. */
const RELEASED = 5;

/**
 * One passage through a section of steps: a request through the gates before the retry stage, or
 * an attempt through those after it. It is the ticket every gate sees. It enters the steps in
 * order (a gate may hold it), arms each timeout as it reaches it, and when it ends releases what
 * it holds exactly once, in reverse: every admitted gate's `exit()`, a waiting gate's `cancel()`,
 * every deadline.
 *
 * It carries the links of the deadline of the first timeout it meets, so arming it allocates
 * nothing (a further timeout in the same section gets a small node of its own). Its fields are
 * few on purpose: one is made for every attempt.
 */
export abstract class Passage implements GateTicket, Deadline {
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  statusCode = 0;
  /**
   * Monotonic ms (internal/clock.ts) of the event being handled: when the current step run began,
   * or when the response headers arrived. Built-in gates read it instead of the clock.
   */
  time = 0;
  abstract readonly key: string;
  abstract readonly method: string;
  abstract readonly attempt: number;
  /** The request's id in the diagnostics channels. */
  abstract readonly requestId: number;
  abstract readonly hedge: boolean;
  abstract readonly observer: OriginObserver | undefined;
  /** Set by the subclass when the passage has ended; no step is entered after it. */
  protected ended = false;
  readonly #steps: readonly Step[];
  #passedSteps = 0;
  #gateState = IDLE;
  /** The permit of the gate being entered or waited at, or the error it refused with. */
  #pending: unknown;
  // Permits of the first two steps in fields, the rest in an array made only if needed.
  #permit0: unknown;
  #permit1: unknown;
  #permits: unknown[] | null = null;
  #ownTimeout: TimeoutStep | null = null;
  #extraTimeouts: ExtraDeadline[] | null = null;
  /** What the gate being told of the response or the ending is to make of it. */
  #outcome: GateOutcome = 'neutral';

  constructor(steps: readonly Step[]) {
    this.#steps = steps;
  }

  // --- GateTicket -------------------------------------------------------------------------------

  abstract header(name: string): string | undefined;
  abstract responseHeader(name: string): string | undefined;

  get outcome(): GateOutcome {
    return this.#outcome;
  }

  admit(permit?: unknown): void {
    const state = this.#gateState;
    if (state === ENTERING) {
      this.#gateState = ADMITTED;
      if (permit !== undefined) this.#pending = permit;
    } else if (state === WAITING) {
      this.#gateState = IDLE;
      const index = this.#passedSteps++;
      this.#setPermit(index, permit === undefined ? this.#pending : permit);
      this.#pending = undefined;
      const refusal = this.#recheck(index);
      if (refusal !== undefined) this.fail(refusal, index);
      else this.resumed();
    }
  }

  wait(permit?: unknown): void {
    if (this.#gateState !== ENTERING) return;
    this.#gateState = WAITING;
    this.#pending = permit;
  }

  refuse(error: Error): void {
    const state = this.#gateState;
    if (state === ENTERING) {
      this.#gateState = REFUSED;
      this.#pending = error;
    } else if (state === WAITING) {
      this.#gateState = IDLE;
      this.#pending = undefined;
      this.fail(error, this.#passedSteps);
    }
  }

  // --- Deadline ---------------------------------------------------------------------------------

  /** The deadline of the first timeout this passage met has passed. */
  expire(): void {
    const step = this.#ownTimeout!;
    // Read again rather than kept: a timeout that fires is rare, a field on every passage is not.
    this.timeoutFired(step, this.timeoutMs(step));
  }

  /** A timeout step fired: the passage ends with TimeoutError, decided at that step. */
  timeoutFired(step: TimeoutStep, ms: number): void {
    if (this.ended) return;
    this.observer?.timedOut(step.scope);
    this.fail(new TimeoutError(step.scope, ms), this.#steps.indexOf(step));
  }

  // --- For the subclasses -----------------------------------------------------------------------

  /** The statuses that mean the upstream failed (the plan's one definition). */
  protected abstract get failureStatus(): readonly boolean[];

  /** Every step passed: the request may start its attempts, the attempt may be sent. */
  protected abstract passed(): void;

  /** A step ended the passage with `error` (refusal, timeout, a gate that threw). */
  protected abstract fail(error: Error, atStep: number): void;

  /** A timeout step's milliseconds for this passage (a per-request override may replace them). */
  protected abstract timeoutMs(step: TimeoutStep): number;

  /** Left a gate's wait: counts the wait, then goes on through the remaining steps from now. */
  protected resumed(): void {
    const now = monotonicNow();
    this.observer?.queueWaited((now - this.time) / 1000);
    if (channels.queueWait.hasSubscribers) {
      channels.queueWait.publish({
        requestId: this.requestId,
        key: this.key,
        attempt: this.attempt,
        waitedMs: now - this.time,
      } satisfies QueueWaitMessage);
    }
    this.time = now;
    this.proceed();
  }

  /** Enters the steps from where the passage stands, until one holds it, one ends it, or all passed. */
  protected proceed(): void {
    const steps = this.#steps;
    while (this.#passedSteps < steps.length) {
      if (this.ended) return;
      const index = this.#passedSteps;
      const step = steps[index]!;
      if (step.kind === 'timeout') {
        try {
          this.#arm(step);
        } catch (err) {
          // A bad per-request override of its milliseconds: this passage fails, naming it.
          this.fail(err as Error, index);
          return;
        }
        this.#passedSteps++;
        continue;
      }
      this.#gateState = ENTERING;
      this.#pending = undefined;
      try {
        step.gate.enter(this);
      } catch (err) {
        this.#gateState = REFUSED;
        this.#pending = err;
      }
      const state = this.#gateState;
      if (state === ADMITTED) {
        this.#gateState = IDLE;
        this.#setPermit(index, this.#pending);
        this.#pending = undefined;
        this.#passedSteps++;
        continue;
      }
      if (state === WAITING || state === RELEASED) return;
      const error =
        state === REFUSED
          ? (this.#pending as Error)
          : new Error('breakwater: a gate neither admitted, held nor refused');
      this.#gateState = IDLE;
      this.#pending = undefined;
      this.fail(error, index);
      return;
    }
    if (!this.ended) this.passed();
  }

  /** Response headers arrived at `now`: the gates hear them, deadlines that run to the headers stop. */
  protected responded(statusCode: number, now: number): void {
    this.statusCode = statusCode;
    this.time = now;
    this.#outcome = this.failureStatus[statusCode] === true ? 'failure' : 'success';
    const steps = this.#steps;
    for (let i = 0; i < this.#passedSteps; i++) {
      const step = steps[i]!;
      if (step.kind === 'timeout') {
        if (step.untilHeaders) this.#disarm(step);
      } else if (step.gate.response !== undefined) {
        this.#response(step.gate, this.#permitAt(i));
      }
    }
  }

  /**
   * Releases everything the passage holds, once: a wait in progress is cancelled, every admitted
   * gate exits (innermost first), every deadline stops. `error` is what ended it, if not a
   * response, decided at step `atStep` (`steps.length` or more: inside all of them).
   */
  protected releaseSteps(error: Error | null, atStep: number): void {
    const state = this.#gateState;
    if (state === RELEASED) return;
    this.#gateState = RELEASED;
    const steps = this.#steps;
    const passed = this.#passedSteps;
    if (state === WAITING) {
      const step = steps[passed] as GateStep;
      if (step.gate.cancel !== undefined) {
        this.#outcome = 'neutral';
        this.#cancel(step.gate, this.#pending);
      }
      this.#pending = undefined;
    }
    // A response's outcome holds for every gate; an error's depends on where it was decided.
    const responded = this.statusCode >= 200;
    for (let i = passed - 1; i >= 0; i--) {
      const step = steps[i]!;
      if (step.kind === 'gate') {
        if (!responded) this.#outcome = this.#errorOutcome(error, atStep > i);
        this.#exit(step.gate, this.#permitAt(i));
      }
    }
    this.#stopDeadlines();
  }

  // --- Inside -----------------------------------------------------------------------------------

  // A gate of the user's that throws must not break a response on its way or skip the gates
  // after it: the error becomes a warning. One method per hook keeps each call site monomorphic.

  #exit(gate: Gate, permit: unknown): void {
    try {
      gate.exit(this, permit);
    } catch (err) {
      warnThrew('exit', err);
    }
  }

  #response(gate: Gate, permit: unknown): void {
    try {
      gate.response!(this, permit);
    } catch (err) {
      warnThrew('response', err);
    }
  }

  #cancel(gate: Gate, permit: unknown): void {
    try {
      gate.cancel!(this, permit);
    } catch (err) {
      warnThrew('cancel', err);
    }
  }

  /**
   * What an ending in `error` means for a gate: `inside` when it was decided at a step after the
   * gate (or by the dispatcher), so a timeout of any scope bounded what the gate let through.
   * A timeout across which this process's event loop stalled for a quarter of its duration or
   * more is nobody's verdict: the client, not necessarily the upstream, was slow (a GC pause, a
   * CPU-bound task, a starved machine).
   */
  #errorOutcome(error: Error | null, inside: boolean): GateOutcome {
    if (!isUpstreamFailure(error, inside, this.failureStatus)) return 'neutral';
    if (error instanceof TimeoutError && longestStallSince(this.time, monotonicNow()) * 4 >= error.ms) {
      return 'neutral';
    }
    return 'failure';
  }

  #recheck(index: number): Error | undefined {
    const steps = this.#steps;
    for (let i = 0; i < index; i++) {
      const step = steps[i]!;
      if (step.kind === 'gate' && step.gate.recheck !== undefined) {
        const refusal = step.gate.recheck(this, this.#permitAt(i));
        if (refusal !== undefined) return refusal;
      }
    }
    return undefined;
  }

  #permitAt(index: number): unknown {
    if (index === 0) return this.#permit0;
    if (index === 1) return this.#permit1;
    return this.#permits?.[index];
  }

  #setPermit(index: number, permit: unknown): void {
    if (index === 0) this.#permit0 = permit;
    else if (index === 1) this.#permit1 = permit;
    else {
      if (this.#permits === null) this.#permits = [];
      this.#permits[index] = permit;
    }
  }

  #arm(step: TimeoutStep): void {
    const ms = this.timeoutMs(step);
    const now = this.time;
    if (this.#ownTimeout === null) {
      this.#ownTimeout = step;
      step.queue.start(this, now, ms);
    } else {
      const extra = new ExtraDeadline(this, step, ms);
      if (this.#extraTimeouts === null) this.#extraTimeouts = [extra];
      else this.#extraTimeouts.push(extra);
      step.queue.start(extra, now, ms);
    }
  }

  #disarm(step: TimeoutStep): void {
    if (this.#ownTimeout === step) step.queue.stop(this);
    const extras = this.#extraTimeouts;
    if (extras !== null) for (const extra of extras) if (extra.step === step) step.queue.stop(extra);
  }

  #stopDeadlines(): void {
    this.#ownTimeout?.queue.stop(this);
    const extras = this.#extraTimeouts;
    if (extras !== null) for (const extra of extras) extra.step.queue.stop(extra);
  }
}

function warnThrew(hook: string, err: unknown): void {
  process.emitWarning(`breakwater: a gate's ${hook}() threw: ${String(err)}`);
}

/** The deadline of a second (or later) timeout met by one passage. */
class ExtraDeadline implements Deadline {
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  readonly passage: Passage;
  readonly step: TimeoutStep;
  readonly ms: number;

  constructor(passage: Passage, step: TimeoutStep, ms: number) {
    this.passage = passage;
    this.step = step;
    this.ms = ms;
  }

  expire(): void {
    this.passage.timeoutFired(this.step, this.ms);
  }
}
