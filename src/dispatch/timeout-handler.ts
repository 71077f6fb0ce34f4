import { TimeoutError, type TimeoutScope } from '../errors.js';
import { duration } from '../internal/validate.js';
import type { TimeoutStage } from '../policies/timeout.js';
import type { Exchange, Layer } from './exchange.js';
import { StageHandler } from './stage-handler.js';
import type { Controller, DispatchOptions, Handler, Headers } from './types.js';

/**
 * Runs one request under a timer of our own: undici's headersTimeout/bodyTimeout tick once a
 * second, too coarse for sub-second budgets. The timer is unref'd so it never keeps the process
 * alive, and is cleared on every way out.
 */
class TimeoutHandler extends StageHandler {
  readonly #ms: number;
  readonly #scope: TimeoutScope;
  readonly #untilHeaders: boolean;
  #timer: NodeJS.Timeout | null;

  constructor(
    outer: Handler,
    opts: DispatchOptions,
    ex: Exchange,
    next: Layer,
    ms: number,
    scope: TimeoutScope,
    untilHeaders: boolean,
  ) {
    super(outer, opts, ex, next);
    this.#ms = ms;
    this.#scope = scope;
    this.#untilHeaders = untilHeaders;
    // Passing `this` as the argument keeps the callback a shared function: no closure per request.
    this.#timer = setTimeout(fire, ms, this);
    this.#timer.unref();
    if (scope === 'total') {
      const deadline = ex.startedAt + ms;
      if (deadline < ex.deadline) ex.deadline = deadline;
    }
  }

  start(): void {
    if (this.announce()) this.dispatchInner();
  }

  expire(): void {
    this.#timer = null;
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
    if (this.#untilHeaders) this.#clear();
    super.onResponseStart(controller, statusCode, headers, statusMessage);
  }

  protected override release(): void {
    this.#clear();
  }

  #clear(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }
}

function fire(handler: TimeoutHandler): void {
  handler.expire();
}

/**
 * The dispatch step of a timeout stage. `scope` is decided by where the stage sits (inside a
 * retry stage: `attempt`); a per-request override (`breakwater.totalTimeout`/`attemptTimeout`)
 * replaces the stage's milliseconds for that request.
 */
export function timeoutLayer(stage: TimeoutStage, scope: TimeoutScope, next: Layer): Layer {
  const untilHeaders = stage.until === 'headers';
  const overrideKey = scope === 'total' ? 'totalTimeout' : 'attemptTimeout';
  return function timeoutStep(opts, handler, ex) {
    const override = ex.overrides?.[overrideKey];
    // Checked per request, as it comes per request: a bad value fails this request, naming it.
    const ms = override === undefined ? stage.ms : duration(`breakwater.${overrideKey}`, override);
    new TimeoutHandler(handler, opts, ex, next, ms, scope, untilHeaders).start();
  };
}
