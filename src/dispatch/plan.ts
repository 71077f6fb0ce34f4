// Compiles a pipeline's list of stages, once, into the plan every request runs: the steps before
// the retry stage, the attempt policy, and the steps after it.

import { InvalidOptionError } from '../errors.js';
import type { StoreLink } from '../fleet/store-link.js';
import { DeadlineQueue } from '../internal/deadline-queue.js';
import { BulkheadStage } from '../policies/bulkhead.js';
import { CircuitBreakerStage } from '../policies/circuit-breaker.js';
import { RateLimitStage } from '../policies/rate-limit.js';
import { DEFAULT_RETRY_STATUSES, RetryStage } from '../policies/retry.js';
import { TimeoutStage } from '../policies/timeout.js';
import { AdaptiveBulkheadGate } from './adaptive-bulkhead-gate.js';
import { BreakerGate } from './breaker-gate.js';
import { BulkheadGate } from './bulkhead-gate.js';
import { GateStage } from './gate.js';
import type { Step, TimeoutStep } from './passage.js';
import { RateLimitGate } from './rate-limit-gate.js';

/** Any stage a pipeline accepts. */
export type Stage =
  | TimeoutStage
  | RetryStage
  | CircuitBreakerStage
  | BulkheadStage
  | RateLimitStage
  | GateStage;

/**
 * A pipeline's stages compiled once, for every request and every dispatcher it wraps: the steps
 * a request passes once (stages before the retry stage), the attempt policy, and the steps each
 * attempt passes (stages after it). Without a retry stage every stage runs once per request and
 * the request makes a single attempt.
 */
export interface Plan {
  /** A timeout listed first: it bounds the whole exchange, and the request itself keeps it. */
  readonly total: TimeoutStep | null;
  /** The other stages before the retry stage: gates the request passes once. */
  readonly requestSteps: readonly Step[];
  readonly retry: RetryStage | null;
  readonly attemptSteps: readonly Step[];
  /**
   * Indexed by status: the statuses that mean the upstream failed. One definition serves the
   * breaker, the gates' outcome and the request's metrics: the retry stage's statuses, or the
   * default ones without a retry stage.
   */
  readonly failureStatus: readonly boolean[];
}

export function isStage(value: unknown): value is Stage {
  return (
    value instanceof TimeoutStage ||
    value instanceof RetryStage ||
    value instanceof CircuitBreakerStage ||
    value instanceof BulkheadStage ||
    value instanceof RateLimitStage ||
    value instanceof GateStage
  );
}

/**
 * Compiles validated stages (outermost first) into a plan; two retry stages are refused. With a
 * fleet store, rate limits and circuit breakers share their state through it.
 */
export function compilePlan(stages: readonly Stage[], store: StoreLink | null = null): Plan {
  const retryIndex = stages.findIndex((s) => s instanceof RetryStage);
  const second = stages.findIndex((s, i) => i > retryIndex && s instanceof RetryStage);
  if (retryIndex !== -1 && second !== -1) {
    throw new InvalidOptionError(`stages[${second}]`, 'at most one retry stage per pipeline', 'a second one');
  }
  const retry = retryIndex === -1 ? null : (stages[retryIndex] as RetryStage);
  const before = (retryIndex === -1 ? stages : stages.slice(0, retryIndex)).map((s) =>
    toStep(s, 'total', store),
  );
  const total = before[0]?.kind === 'timeout' ? before[0] : null;
  const rest = total === null ? before : before.slice(1);
  if (retry === null) {
    // One attempt per request: the stages run once either way, so they run as the attempt's,
    // which saves the request a passage of its own. Their timeouts keep the `total` scope.
    return {
      total,
      requestSteps: [],
      retry,
      attemptSteps: rest,
      failureStatus: statusTable(DEFAULT_RETRY_STATUSES),
    };
  }
  return {
    total,
    requestSteps: rest,
    retry,
    attemptSteps: stages.slice(retryIndex + 1).map((s) => toStep(s, 'attempt', store)),
    failureStatus: retry.retryableStatus,
  };
}

function toStep(stage: Stage, scope: 'total' | 'attempt', store: StoreLink | null): Step {
  if (stage instanceof TimeoutStage) {
    return {
      kind: 'timeout',
      ms: stage.ms,
      scope,
      untilHeaders: stage.until === 'headers',
      queue: new DeadlineQueue(stage.ms),
    };
  }
  if (stage instanceof CircuitBreakerStage) return { kind: 'gate', gate: new BreakerGate(stage, store) };
  if (stage instanceof BulkheadStage) {
    const gate = stage.adaptive === null ? new BulkheadGate(stage) : new AdaptiveBulkheadGate(stage);
    return { kind: 'gate', gate };
  }
  if (stage instanceof RateLimitStage) return { kind: 'gate', gate: new RateLimitGate(stage, store) };
  return { kind: 'gate', gate: (stage as GateStage).gate };
}

function statusTable(statuses: readonly number[]): boolean[] {
  const table: boolean[] = new Array(600).fill(false);
  for (const status of statuses) table[status] = true;
  return table;
}
