import { BulkheadRejectedError } from '../errors.js';
import { monotonicNow } from '../internal/clock.js';
import type { BulkheadStage, BulkheadState, BulkheadWaiter } from '../policies/bulkhead.js';
import type { Exchange, Layer } from './exchange.js';
import { StageHandler } from './stage-handler.js';
import type { DispatchOptions, Handler } from './types.js';

/**
 * Holds a bulkhead slot for one attempt: taken before dispatch (or after waiting in the queue),
 * given back exactly once when the attempt ends — body read, error, abort or timeout.
 */
class BulkheadHandler extends StageHandler implements BulkheadWaiter {
  queuePrev: BulkheadWaiter | null = null;
  queueNext: BulkheadWaiter | null = null;
  queued = false;
  readonly #state: BulkheadState;
  #holdsSlot = false;
  #queuedAt = 0;

  constructor(outer: Handler, opts: DispatchOptions, ex: Exchange, next: Layer, state: BulkheadState) {
    super(outer, opts, ex, next);
    this.#state = state;
  }

  start(stage: BulkheadStage): void {
    if (!this.announce()) return;
    const verdict = this.#state.acquire(this);
    if (verdict === 'acquired') {
      this.#holdsSlot = true;
      this.dispatchInner();
    } else if (verdict === 'queued') {
      this.#queuedAt = this.ex.dispatchTime;
    } else {
      this.ex.observer?.bulkheadRejected();
      this.fail(new BulkheadRejectedError(this.ex.key, stage.maxConcurrent, stage.maxQueue));
    }
  }

  /** Called by the bulkhead when a slot frees up for this waiter. */
  admit(): void {
    this.#holdsSlot = true;
    const now = monotonicNow();
    this.ex.dispatchTime = now;
    this.ex.observer?.queueWaited((now - this.#queuedAt) / 1000);
    this.dispatchInner();
  }

  protected override release(): void {
    if (this.#holdsSlot) {
      this.#holdsSlot = false;
      this.#state.release();
    } else if (this.queued) {
      // Aborted or timed out while waiting: leave the queue now, not when reaching its front.
      this.#state.leave(this);
    }
  }
}

export function bulkheadLayer(stage: BulkheadStage, next: Layer): Layer {
  return function bulkheadStep(opts, handler, ex) {
    const state = stage.states.get(ex.key);
    new BulkheadHandler(handler, opts, ex, next, state).start(stage);
  };
}
