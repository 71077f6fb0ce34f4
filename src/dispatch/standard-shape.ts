import { DeadlineQueue } from '../internal/deadline-queue.js';
import { BulkheadStage } from '../policies/bulkhead.js';
import { CircuitBreakerStage } from '../policies/circuit-breaker.js';
import { RetryStage } from '../policies/retry.js';
import { TimeoutStage } from '../policies/timeout.js';
import type { CoreLink } from './core-link.js';
import type { Layer } from './exchange.js';
import { type AttemptPlan, newFusedAttempt } from './fused-attempt.js';
import { type AttemptFactory, RetryHandler, type RunTimeout } from './retry-handler.js';

/**
 * The standard preset's order: total timeout → retry → circuit breaker → bulkhead → attempt
 * timeout, each at most once, with the retry stage present and any other stage left out.
 */
export interface StandardShape {
  total: TimeoutStage | null;
  retry: RetryStage;
  breaker: CircuitBreakerStage | null;
  bulkhead: BulkheadStage | null;
  attempt: TimeoutStage | null;
}

/**
 * `stages` as a StandardShape, or null when they are in another order or number. A pipeline of
 * that shape runs as two objects per request (the retry run, carrying the total timeout, and a
 * fused attempt) instead of one handler per stage; any other pipeline is built stage by stage.
 */
export function standardShape(stages: readonly unknown[]): StandardShape | null {
  const shape: Partial<StandardShape> = {};
  // Each stage must come later in the standard order than the one before it.
  let position = -1;
  for (const stage of stages) {
    let at: number;
    if (stage instanceof TimeoutStage) {
      at = shape.retry === undefined ? 0 : 4;
      if (at === 0) shape.total = stage;
      else shape.attempt = stage;
    } else if (stage instanceof RetryStage) {
      at = 1;
      shape.retry = stage;
    } else if (stage instanceof CircuitBreakerStage) {
      at = 2;
      shape.breaker = stage;
    } else if (stage instanceof BulkheadStage) {
      at = 3;
      shape.bulkhead = stage;
    } else {
      return null;
    }
    if (at <= position) return null;
    position = at;
  }
  if (shape.retry === undefined) return null;
  return {
    total: shape.total ?? null,
    retry: shape.retry,
    breaker: shape.breaker ?? null,
    bulkhead: shape.bulkhead ?? null,
    attempt: shape.attempt ?? null,
  };
}

/** The dispatch step of a whole pipeline of the standard shape, down to the real dispatcher. */
export function standardShapeLayer(
  shape: StandardShape,
  core: CoreLink,
  failureStatus: readonly boolean[],
): Layer {
  const total: RunTimeout | null =
    shape.total === null
      ? null
      : {
          ms: shape.total.ms,
          untilHeaders: shape.total.until === 'headers',
          queue: new DeadlineQueue(shape.total.ms),
        };
  const plan: AttemptPlan = {
    core,
    breaker: shape.breaker,
    failureStatus,
    bulkhead: shape.bulkhead,
    timeout:
      shape.attempt === null
        ? null
        : {
            ms: shape.attempt.ms,
            untilHeaders: shape.attempt.until === 'headers',
            queue: new DeadlineQueue(shape.attempt.ms),
          },
  };
  const newAttempt: AttemptFactory = (run, ex) => newFusedAttempt(plan, run, ex);
  const retry = shape.retry;
  return function standardStep(opts, handler, ex) {
    new RetryHandler(handler, opts, ex, retry, newAttempt, total).start();
  };
}
