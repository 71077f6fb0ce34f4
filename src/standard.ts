// `standardPipeline()`: the preset (total timeout → retry → circuit breaker → bulkhead → attempt
// timeout), its defaults and the checks across its stages.

import { InvalidOptionError } from './errors.js';
import { duration, knownKeys, optionalObject } from './internal/validate.js';
import { type PipelineOptions, pipeline, type ResilienceInterceptor, type Stage } from './pipeline.js';
import { type BulkheadOptions, bulkhead } from './policies/bulkhead.js';
import { type CircuitBreakerOptions, circuitBreaker } from './policies/circuit-breaker.js';
import { type RateLimitOptions, rateLimit } from './policies/rate-limit.js';
import { type RetryOptions, retry } from './policies/retry.js';
import { type TimeoutOptions, timeout } from './policies/timeout.js';

/** A timeout stage's settings in the preset: milliseconds, or milliseconds with `until`. */
export type PresetTimeout = number | ({ ms: number } & TimeoutOptions);

export interface StandardPipelineOptions extends PipelineOptions {
  /**
   * Bounds the whole exchange, queueing, retries and body included. `false` drops it.
   * @default 30_000 (through the end of the body)
   */
  totalTimeout?: PresetTimeout | false;
  /**
   * The retry stage. `false` drops it.
   * @default { maxAttempts: 3 } and retry()'s other defaults
   */
  retry?: RetryOptions | false;
  /**
   * The per-key circuit breaker. `false` drops it.
   * @default circuitBreaker()'s defaults, with halfOpenAfter growing from 5 s to 60 s
   */
  circuitBreaker?: CircuitBreakerOptions | false;
  /**
   * A per-key rate limit on attempts, between the circuit breaker and the bulkhead: an upstream's
   * quota counts every attempt, retries included; an open circuit refuses before a token is
   * spent; a request waiting for its turn holds no bulkhead slot. `false` or absent: none.
   * @default none
   */
  rateLimit?: RateLimitOptions | false;
  /**
   * The per-key bulkhead. `false` drops it.
   * @default { maxConcurrent: 64, maxQueue: 1024 }
   */
  bulkhead?: Partial<BulkheadOptions> | false;
  /**
   * Bounds each attempt. `false` drops it.
   * @default 10_000 (to the response headers)
   */
  attemptTimeout?: PresetTimeout | false;
}

const PRESET_KEYS = [
  'totalTimeout',
  'retry',
  'circuitBreaker',
  'rateLimit',
  'bulkhead',
  'attemptTimeout',
  'metrics',
  'key',
  'store',
];

/**
 * The preset, like Polly's standard resilience handler: total timeout → retry → circuit breaker
 * → (rate limit, when asked for) → bulkhead → attempt timeout, each with production defaults, each
 * replaceable or droppable.
 */
export function standardPipeline(options: StandardPipelineOptions = {}): ResilienceInterceptor {
  const o = optionalObject('standardPipeline', options) ?? {};
  knownKeys('', o, PRESET_KEYS);
  const total = presetTimeout('totalTimeout', options.totalTimeout, { ms: 30_000, until: 'end' });
  const attempt = presetTimeout('attemptTimeout', options.attemptTimeout, { ms: 10_000, until: 'headers' });
  if (total !== false && attempt !== false && attempt.ms > total.ms) {
    throw new InvalidOptionError('attemptTimeout', `at most totalTimeout (${total.ms} ms)`, attempt.ms);
  }

  const stages: Stage[] = [];
  if (total !== false) stages.push(timeout(total.ms, { until: total.until }));
  if (options.retry !== false) stages.push(retry(options.retry ?? {}));
  if (options.circuitBreaker !== false) {
    stages.push(
      circuitBreaker({ halfOpenAfter: { initial: 5_000, max: 60_000 }, ...(options.circuitBreaker ?? {}) }),
    );
  }
  if (options.rateLimit !== undefined && options.rateLimit !== false)
    stages.push(rateLimit(options.rateLimit));
  if (options.bulkhead !== false)
    stages.push(bulkhead({ maxConcurrent: 64, maxQueue: 1024, ...(options.bulkhead ?? {}) }));
  if (attempt !== false) stages.push(timeout(attempt.ms, { until: attempt.until }));
  return pipeline(stages, { metrics: options.metrics, key: options.key, store: options.store });
}

function presetTimeout(
  path: string,
  value: PresetTimeout | false | undefined,
  fallback: { ms: number; until: 'end' | 'headers' },
): { ms: number; until: 'end' | 'headers' } | false {
  if (value === false) return false;
  if (value === undefined) return fallback;
  if (typeof value === 'number') return { ms: duration(path, value), until: fallback.until };
  const o = optionalObject(path, value);
  knownKeys(path, o, ['ms', 'until']);
  // timeout() validates `until` itself; `ms` is checked here so the error names the preset's path.
  return { ms: duration(`${path}.ms`, value.ms), until: value.until ?? fallback.until };
}
