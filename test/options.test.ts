import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Agent } from 'undici';
import {
  bulkhead,
  circuitBreaker,
  InvalidOptionError,
  isInvalidOptionError,
  pipeline,
  resilient,
  retry,
  standardPipeline,
  timeout,
} from '../src/index.js';

// Every bad option throws at construction, naming the path, what was expected and what was given.
const cases: Array<[string, () => unknown, string]> = [
  [
    'bulkhead.maxConcurrent 0',
    () => bulkhead({ maxConcurrent: 0, maxQueue: 1 }),
    "expected bulkhead.maxConcurrent to be an integer >= 1 or 'adaptive', got 0",
  ],
  [
    'bulkhead.maxConcurrent 1.5',
    () => bulkhead({ maxConcurrent: 1.5, maxQueue: 1 }),
    'bulkhead.maxConcurrent',
  ],
  [
    'bulkhead.maxQueue missing',
    () => bulkhead({ maxConcurrent: 1 } as never),
    'expected bulkhead.maxQueue to be an integer >= 0, got undefined',
  ],
  ['bulkhead.maxQueue -1', () => bulkhead({ maxConcurrent: 1, maxQueue: -1 }), 'bulkhead.maxQueue'],
  [
    'bulkhead unknown key',
    () => bulkhead({ maxConcurrent: 1, maxQueue: 1, maxConcurent: 2 } as never),
    'bulkhead.maxConcurent',
  ],
  ['timeout 0', () => timeout(0), 'expected timeout.ms to be'],
  ['timeout NaN', () => timeout(Number.NaN), 'timeout.ms'],
  ['timeout Infinity', () => timeout(Number.POSITIVE_INFINITY), 'timeout.ms'],
  ['timeout above 2^31-1', () => timeout(2 ** 31), 'timeout.ms'],
  ['timeout string', () => timeout('100' as never), 'got "100"'],
  [
    'timeout until',
    () => timeout(100, { until: 'body' as never }),
    "expected timeout.until to be one of 'end', 'headers', got \"body\"",
  ],
  [
    'retry.maxAttempts 0',
    () => retry({ maxAttempts: 0 }),
    'expected retry.maxAttempts to be an integer >= 1, got 0',
  ],
  [
    'retry.backoff.initialDelay -1',
    () => retry({ backoff: { initialDelay: -1 } }),
    'retry.backoff.initialDelay',
  ],
  [
    'retry.backoff max < initial',
    () => retry({ backoff: { initialDelay: 500, maxDelay: 100 } }),
    'retry.backoff.maxDelay',
  ],
  ['retry.statuses not array', () => retry({ statuses: 503 as never }), 'retry.statuses'],
  ['retry.statuses[1] 700', () => retry({ statuses: [503, 700] }), 'retry.statuses[1]'],
  ['retry.methods[0] empty', () => retry({ methods: [''] }), 'retry.methods[0]'],
  ['retry.maxRetryAfter -5', () => retry({ maxRetryAfter: -5 }), 'retry.maxRetryAfter'],
  ['retry.budget.ratio 2', () => retry({ budget: { ratio: 2 } }), 'retry.budget.ratio'],
  ['retry.budget.window 0', () => retry({ budget: { window: 0 } }), 'retry.budget.window'],
  [
    'retry.budget.minPerSecond -1',
    () => retry({ budget: { minPerSecond: -1 } }),
    'retry.budget.minPerSecond',
  ],
  ['retry.budget true', () => retry({ budget: true as never }), 'retry.budget'],
  [
    'circuitBreaker.consecutiveFailures 0',
    () => circuitBreaker({ consecutiveFailures: 0 }),
    'circuitBreaker.consecutiveFailures',
  ],
  [
    'circuitBreaker.failureRatio 1.5',
    () => circuitBreaker({ failureRatio: 1.5 }),
    'circuitBreaker.failureRatio',
  ],
  [
    'circuitBreaker both triggers off',
    () => circuitBreaker({ failureRatio: false, consecutiveFailures: false }),
    'circuitBreaker',
  ],
  ['circuitBreaker.window 0', () => circuitBreaker({ window: 0 }), 'circuitBreaker.window'],
  [
    'circuitBreaker.minimumThroughput 0',
    () => circuitBreaker({ minimumThroughput: 0 }),
    'circuitBreaker.minimumThroughput',
  ],
  [
    'circuitBreaker.halfOpenAfter -1',
    () => circuitBreaker({ halfOpenAfter: -1 }),
    'circuitBreaker.halfOpenAfter',
  ],
  [
    'circuitBreaker.halfOpenAfter.max < initial',
    () => circuitBreaker({ halfOpenAfter: { initial: 10, max: 5 } }),
    'circuitBreaker.halfOpenAfter.max',
  ],
  [
    'circuitBreaker.halfOpenProbes 0',
    () => circuitBreaker({ halfOpenProbes: 0 }),
    'circuitBreaker.halfOpenProbes',
  ],
  ['circuitBreaker.maxKeys 0', () => circuitBreaker({ maxKeys: 0 }), 'circuitBreaker.maxKeys'],
  ['pipeline stages not an array', () => pipeline({} as never), 'stages'],
  ['pipeline stage not a stage', () => pipeline([{ kind: 'retry' } as never]), 'stages[0]'],
  ['pipeline.key not a function', () => pipeline([], { key: 'origin' as never }), 'pipeline.key'],
  ['pipeline.metrics not metrics', () => pipeline([], { metrics: {} as never }), 'pipeline.metrics'],
  ['pipeline unknown option', () => pipeline([], { metric: {} } as never), 'pipeline.metric'],
  [
    'standardPipeline.attemptTimeout > totalTimeout',
    () => standardPipeline({ totalTimeout: 1_000, attemptTimeout: 2_000 }),
    'attemptTimeout',
  ],
  ['standardPipeline.totalTimeout 0', () => standardPipeline({ totalTimeout: 0 }), 'totalTimeout'],
  [
    'standardPipeline.retry.maxAttempts 0',
    () => standardPipeline({ retry: { maxAttempts: 0 } }),
    'retry.maxAttempts',
  ],
  [
    'standardPipeline.bulkhead.maxQueue -1',
    () => standardPipeline({ bulkhead: { maxQueue: -1 } }),
    'bulkhead.maxQueue',
  ],
  ['standardPipeline unknown option', () => standardPipeline({ retries: 3 } as never), 'retries'],
  ['resilient without a dispatcher', () => resilient({} as never, pipeline([])), 'dispatcher'],
  ['resilient without an interceptor', () => resilient(new Agent(), {} as never), 'interceptor'],
];

describe('options are validated at construction', () => {
  for (const [name, build, message] of cases) {
    test(name, () => {
      assert.throws(build, (err: unknown) => {
        assert.ok(err instanceof InvalidOptionError, `threw ${String(err)}`);
        assert.ok(isInvalidOptionError(err));
        assert.equal(err.code, 'BREAKWATER_INVALID_OPTION');
        assert.ok(err.message.includes(message), `message "${err.message}" should include "${message}"`);
        return true;
      });
    });
  }

  test('good options construct without throwing', () => {
    assert.doesNotThrow(() =>
      pipeline([
        timeout(1_000),
        retry({ maxAttempts: 5, budget: false, statuses: [503] }),
        circuitBreaker({ failureRatio: false, halfOpenAfter: { initial: 10, max: 100 } }),
        bulkhead({ maxConcurrent: 1, maxQueue: 0 }),
        timeout(100, { until: 'headers' }),
      ]),
    );
    assert.doesNotThrow(() =>
      standardPipeline({
        retry: false,
        circuitBreaker: false,
        bulkhead: false,
        totalTimeout: false,
        attemptTimeout: false,
      }),
    );
  });
});
