// Type tests for the public API. Nothing here runs: `npm run typecheck` (tsconfig.json includes
// test/) checks it, and every `@ts-expect-error` must still be an error or the check fails.
// The packed declarations (dist/*.d.ts) are checked from a scratch project in pack.test.ts.
import { expectTypeOf } from 'expect-type';
import { Registry } from 'prom-client';
import { Agent, type Dispatcher, request } from 'undici';
import {
  type BodyFactory,
  type BulkheadOptions,
  BulkheadRejectedError,
  type BulkheadStage,
  bulkhead,
  type CircuitBreakerStage,
  CircuitOpenError,
  type CircuitState,
  circuitBreaker,
  type GateStage,
  getResilienceError,
  InvalidOptionError,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isInvalidOptionError,
  isRateLimitedError,
  isResilienceError,
  isTimeoutError,
  type KeyHealth,
  type MetricsServer,
  type PipelineObserver,
  type PipelineOptions,
  type PrometheusMetrics,
  type PrometheusMetricsOptions,
  pipeline,
  prometheusMetrics,
  RateLimitedError,
  type RateLimitOptions,
  type RateLimitStage,
  type RequestOverrides,
  type ResilienceError,
  type ResilienceErrorCode,
  type ResilienceInterceptor,
  type ResilientDispatcher,
  type RetryStage,
  rateLimit,
  resilient,
  retry,
  type ServeMetricsOptions,
  type Stage,
  type StandardPipelineOptions,
  serveMetrics,
  standardPipeline,
  TimeoutError,
  type TimeoutOptions,
  type TimeoutScope,
  type TimeoutStage,
  timeout,
} from '../../src/index.js';

// --- factories ------------------------------------------------------------------------------------

expectTypeOf(standardPipeline).parameters.toEqualTypeOf<[options?: StandardPipelineOptions]>();
expectTypeOf(standardPipeline).returns.toEqualTypeOf<ResilienceInterceptor>();
expectTypeOf(pipeline).parameters.toEqualTypeOf<[stages: readonly Stage[], options?: PipelineOptions]>();
expectTypeOf(pipeline).returns.toEqualTypeOf<ResilienceInterceptor>();
expectTypeOf(timeout).parameters.toEqualTypeOf<[ms: number, options?: TimeoutOptions]>();
expectTypeOf(timeout).returns.toEqualTypeOf<TimeoutStage>();
expectTypeOf(retry).returns.toEqualTypeOf<RetryStage>();
expectTypeOf(circuitBreaker).returns.toEqualTypeOf<CircuitBreakerStage>();
expectTypeOf(bulkhead).parameters.toEqualTypeOf<[options: BulkheadOptions]>();
expectTypeOf(bulkhead).returns.toEqualTypeOf<BulkheadStage>();
expectTypeOf(rateLimit).parameters.toEqualTypeOf<[options: RateLimitOptions]>();
expectTypeOf(rateLimit).returns.toEqualTypeOf<RateLimitStage>();
expectTypeOf<Stage>().toEqualTypeOf<
  TimeoutStage | RetryStage | CircuitBreakerStage | BulkheadStage | RateLimitStage | GateStage
>();

expectTypeOf(resilient).parameter(0).toEqualTypeOf<Dispatcher>();
expectTypeOf(resilient).returns.toEqualTypeOf<ResilientDispatcher>();
expectTypeOf<ResilientDispatcher>().toExtend<Dispatcher>();
expectTypeOf<ResilientDispatcher['dispatcher']>().toEqualTypeOf<Dispatcher>();

expectTypeOf(prometheusMetrics).parameters.toEqualTypeOf<[options: PrometheusMetricsOptions]>();
expectTypeOf(prometheusMetrics).returns.toEqualTypeOf<PrometheusMetrics>();
expectTypeOf<PrometheusMetrics>().toExtend<PipelineObserver>();
expectTypeOf<PrometheusMetrics>().toExtend<NonNullable<PipelineOptions['metrics']>>();
expectTypeOf(serveMetrics).parameters.toEqualTypeOf<[options: ServeMetricsOptions]>();
expectTypeOf(serveMetrics).returns.toEqualTypeOf<Promise<MetricsServer>>();

// --- the interceptor is undici's --------------------------------------------------------------------

expectTypeOf<ResilienceInterceptor>().toExtend<Dispatcher.DispatcherComposeInterceptor>();
expectTypeOf<ResilienceInterceptor>().toExtend<Parameters<Dispatcher['compose']>[0]>();
expectTypeOf(new Agent().compose(standardPipeline())).toExtend<Dispatcher>();
expectTypeOf(new Agent().compose(standardPipeline(), pipeline([retry()]))).toExtend<Dispatcher>();
expectTypeOf(resilient(new Agent(), standardPipeline())).toExtend<Dispatcher>();
// resilient() also takes any undici compose interceptor, not only ours.
expectTypeOf(resilient)
  .parameter(1)
  .toExtend<ResilienceInterceptor | Dispatcher.DispatcherComposeInterceptor>();
expectTypeOf<Dispatcher.DispatcherComposeInterceptor>().toExtend<Parameters<typeof resilient>[1]>();

expectTypeOf<ResilienceInterceptor['stages']>().toEqualTypeOf<readonly Stage[]>();
expectTypeOf<ResilienceInterceptor['health']>().toEqualTypeOf<() => Record<string, KeyHealth>>();
expectTypeOf<ResilienceInterceptor['close']>().toEqualTypeOf<() => Promise<void>>();
expectTypeOf<ResilienceInterceptor['destroy']>().toEqualTypeOf<(error?: Error) => void>();
expectTypeOf<KeyHealth>().toEqualTypeOf<{
  circuit?: CircuitState;
  inFlight: number;
  queued: number;
  concurrencyLimit?: number;
  retryBudgetLeft?: number;
  hedgeDelayMs?: number;
}>();

// --- stages expose their settings read-only ---------------------------------------------------------

expectTypeOf<TimeoutStage['ms']>().toEqualTypeOf<number>();
expectTypeOf<TimeoutStage['until']>().toEqualTypeOf<'end' | 'headers'>();
expectTypeOf<RetryStage['maxAttempts']>().toEqualTypeOf<number>();
expectTypeOf<RetryStage['statuses']>().toEqualTypeOf<readonly number[]>();
expectTypeOf<BulkheadStage['maxConcurrent']>().toEqualTypeOf<number>();
declare const someTimeout: TimeoutStage;
// @ts-expect-error a stage's settings are read-only
someTimeout.ms = 5;

// --- options accept what the README shows ------------------------------------------------------------

standardPipeline();
standardPipeline({});
standardPipeline({
  totalTimeout: { ms: 60_000, until: 'headers' },
  attemptTimeout: 5_000,
  retry: { maxAttempts: 5, backoff: { initialDelay: 50 }, statuses: [503], budget: false },
  circuitBreaker: { consecutiveFailures: false, halfOpenAfter: { initial: 1_000, max: 30_000 } },
  bulkhead: { maxConcurrent: 8 },
  metrics: prometheusMetrics({ registry: new Registry() }),
  key: (opts) => String(opts.origin),
});
standardPipeline({
  totalTimeout: false,
  retry: false,
  circuitBreaker: false,
  bulkhead: false,
  attemptTimeout: false,
});
pipeline([timeout(10_000), retry({ maxAttempts: 3 }), bulkhead({ maxConcurrent: 64, maxQueue: 1024 })]);

// --- and reject bad shapes --------------------------------------------------------------------------

// @ts-expect-error a timeout is milliseconds, not a string
standardPipeline({ totalTimeout: '30s' });
// @ts-expect-error until is 'end' or 'headers'
standardPipeline({ attemptTimeout: { ms: 100, until: 'body' } });
// @ts-expect-error { ms } is required in the object form
standardPipeline({ attemptTimeout: { until: 'headers' } });
// @ts-expect-error maxAttempts is a number
standardPipeline({ retry: { maxAttempts: '3' } });
// @ts-expect-error `true` is not a way to say "defaults": omit the option
standardPipeline({ retry: true });
// @ts-expect-error there is no `retries` option
standardPipeline({ retries: 3 });
// @ts-expect-error halfOpenAfter's object form needs both initial and max
standardPipeline({ circuitBreaker: { halfOpenAfter: { initial: 1_000 } } });
// @ts-expect-error statuses are numbers
retry({ statuses: ['503'] });
// @ts-expect-error the budget is an object or false
retry({ budget: true });
// @ts-expect-error bulkhead() needs maxQueue
bulkhead({ maxConcurrent: 1 });
// @ts-expect-error bulkhead() needs its options
bulkhead();
// @ts-expect-error timeout() takes ms first, options second
timeout({ ms: 100 });
// @ts-expect-error key returns a string
pipeline([], { key: () => 1 });
// @ts-expect-error stages are made by the factories
pipeline([{ maxAttempts: 3 }]);
// @ts-expect-error resilient() wraps a Dispatcher
resilient('http://localhost', standardPipeline());

// --- per-request overrides -----------------------------------------------------------------------------

expectTypeOf<RequestOverrides>().toEqualTypeOf<{
  idempotent?: boolean;
  maxAttempts?: number;
  totalTimeout?: number;
  attemptTimeout?: number;
  body?: BodyFactory;
}>();
// @ts-expect-error maxAttempts is a number
export const badOverride: RequestOverrides = { maxAttempts: '1' };
// undici's request options do not declare `breakwater`, so the option travels in a typed variable.
const overrides: { breakwater: RequestOverrides } = { breakwater: { maxAttempts: 1, idempotent: true } };
export const call = (): ReturnType<typeof request> =>
  request('http://127.0.0.1/', { dispatcher: resilient(new Agent(), standardPipeline()), ...overrides });

// --- errors ---------------------------------------------------------------------------------------------

expectTypeOf<ResilienceErrorCode>().toEqualTypeOf<
  | 'BREAKWATER_BULKHEAD_REJECTED'
  | 'BREAKWATER_CIRCUIT_OPEN'
  | 'BREAKWATER_TIMEOUT'
  | 'BREAKWATER_RATE_LIMITED'
  | 'BREAKWATER_INVALID_OPTION'
>();
expectTypeOf<ResilienceError>().toExtend<Error>();
expectTypeOf<ResilienceError['code']>().toEqualTypeOf<ResilienceErrorCode>();
for (const E of [
  BulkheadRejectedError,
  CircuitOpenError,
  TimeoutError,
  RateLimitedError,
  InvalidOptionError,
]) {
  expectTypeOf<InstanceType<typeof E>>().toExtend<ResilienceError>();
}

expectTypeOf<TimeoutScope>().toEqualTypeOf<'attempt' | 'total'>();
expectTypeOf(TimeoutError).constructorParameters.toEqualTypeOf<[scope: TimeoutScope, ms: number]>();
expectTypeOf<TimeoutError>().toHaveProperty('scope').toEqualTypeOf<TimeoutScope>();
expectTypeOf<TimeoutError>().toHaveProperty('ms').toEqualTypeOf<number>();

expectTypeOf<CircuitState>().toEqualTypeOf<'closed' | 'open' | 'half_open'>();
expectTypeOf<CircuitOpenError>().toHaveProperty('key').toEqualTypeOf<string>();
expectTypeOf<CircuitOpenError>().toHaveProperty('state').toEqualTypeOf<CircuitState>();
expectTypeOf<CircuitOpenError>().toHaveProperty('retryAfterMs').toEqualTypeOf<number>();

expectTypeOf<BulkheadRejectedError>().toHaveProperty('key').toEqualTypeOf<string>();
expectTypeOf<BulkheadRejectedError>().toHaveProperty('maxConcurrent').toEqualTypeOf<number>();
expectTypeOf<BulkheadRejectedError>().toHaveProperty('maxQueue').toEqualTypeOf<number>();

expectTypeOf<InvalidOptionError>().toHaveProperty('path').toEqualTypeOf<string>();
expectTypeOf<InvalidOptionError>().toHaveProperty('message').toEqualTypeOf<string>();

declare const timeoutError: TimeoutError;
// @ts-expect-error an error's fields are read-only
timeoutError.ms = 1;

// The guards search the `cause` chain (fetch wraps errors), so they answer a boolean rather than
// narrow their argument; getResilienceError() returns the error it found.
for (const guard of [
  isBulkheadRejectedError,
  isCircuitOpenError,
  isTimeoutError,
  isInvalidOptionError,
  isRateLimitedError,
  isResilienceError,
]) {
  expectTypeOf(guard).toEqualTypeOf<(err: unknown) => boolean>();
}
expectTypeOf(getResilienceError).toEqualTypeOf<(err: unknown) => ResilienceError | undefined>();
