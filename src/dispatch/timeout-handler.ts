import { TimeoutError, type TimeoutScope } from '../errors.js';
import { type Deadline, DeadlineQueue } from '../internal/deadline-queue.js';
import { duration } from '../internal/validate.js';
import type { TimeoutStage } from '../policies/timeout.js';
import type { Exchange, Layer } from './exchange.js';
import { StageHandler } from './stage-handler.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/**
 * Runs one request under a deadline of our own: undici's headersTimeout/bodyTimeout tick once a
 * second, too coarse for sub-second budgets. The deadline sits in the stage's DeadlineQueue (one
 * unref'd timer for all its requests); a request with its own duration (a per-request override)
 * gets a Node timer of its own instead. Either is cleared on every way out.
 */
class TimeoutHandler extends StageHandler implements Deadline {
  deadlineAt = 0;
  deadlinePrev: Deadline | null = null;
  deadlineNext: Deadline | null = null;
  inDeadlineQueue = false;
  deadlineTimer: NodeJS.Timeout | null = null;
  readonly #ms: number;
  readonly #scope: TimeoutScope;
  readonly #untilHeaders: boolean;
  readonly #queue: DeadlineQueue;

  constructor(
    outer: Handler,
    opts: DispatchOptions,
    ex: Exchange,
    next: Layer,
    ms: number,
    scope: TimeoutScope,
    untilHeaders: boolean,
    queue: DeadlineQueue,
  ) {
    super(outer, opts, ex, next);
    this.#ms = ms;
    this.#scope = scope;
    this.#untilHeaders = untilHeaders;
    this.#queue = queue;
    const now = ex.dispatchTime;
    queue.start(this, now, ms);
    if (scope === 'total') {
      const deadline = now + ms;
      if (deadline < ex.deadline) ex.deadline = deadline;
    }
  }

  start(): void {
    if (this.announce()) this.dispatchInner();
  }

  expire(): void {
    if (this.done) return;
    this.ex.observer?.timedOut(this.#scope);
    this.fail(new TimeoutError(this.#scope, this.#ms));
  }

  override onResponseStart(
    controller: Controller,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    if (this.#untilHeaders) this.#queue.stop(this);
    super.onResponseStart(controller, statusCode, headers, statusMessage);
  }

  protected override release(): void {
    this.#queue.stop(this);
  }
}

/**
 * The dispatch step of a timeout stage. `scope` is decided by where the stage sits (inside a
 * retry stage: `attempt`); a per-request override (`breakwater.totalTimeout`/`attemptTimeout`)
 * replaces the stage's milliseconds for that request.
 */
export function timeoutLayer(stage: TimeoutStage, scope: TimeoutScope, next: Layer): Layer {
  const untilHeaders = stage.until === 'headers';
  const overrideKey = scope === 'total' ? 'totalTimeout' : 'attemptTimeout';
  const queue = new DeadlineQueue(stage.ms);
  return function timeoutStep(opts, handler, ex) {
    const override = ex.overrides?.[overrideKey];
    // Checked per request, as it comes per request: a bad value fails this request, naming it.
    const ms = override === undefined ? stage.ms : duration(`breakwater.${overrideKey}`, override);
    new TimeoutHandler(handler, opts, ex, next, ms, scope, untilHeaders, queue).start();
  };
}
