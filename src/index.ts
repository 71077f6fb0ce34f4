// The package's public surface: every export is named here, and nothing else is public.

export { type Gate, type GateOutcome, GateStage, type GateTicket, gate } from './dispatch/gate.js';
export type {
  KeySnapshot,
  OriginObserver,
  PipelineObserver,
  RequestOutcome,
  RetryReason,
  StateSource,
  StatusClass,
} from './dispatch/observer.js';
export type { BodyFactory, RequestOverrides } from './dispatch/types.js';
export {
  BulkheadRejectedError,
  CircuitOpenError,
  type CircuitState,
  getResilienceError,
  InvalidOptionError,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isInvalidOptionError,
  isRateLimitedError,
  isResilienceError,
  isTimeoutError,
  RateLimitedError,
  ResilienceError,
  type ResilienceErrorCode,
  TimeoutError,
  type TimeoutScope,
} from './errors.js';
export type { CircuitBroadcast, FleetStore, RateGrant, StoreErrorEvent } from './fleet/store.js';
export type { Disposable } from './internal/event.js';
export {
  type MetricsRegistry,
  type PoolStatsLike,
  type PoolStatsSource,
  PrometheusMetrics,
  type PrometheusMetricsOptions,
  prometheusMetrics,
} from './metrics/prometheus.js';
export {
  type MetricsHandlerOptions,
  type MetricsServer,
  metricsHandler,
  type ServeMetricsOptions,
  serveMetrics,
} from './metrics/serve.js';
export {
  type KeyHealth,
  type PipelineOptions,
  pipeline,
  type ResilienceInterceptor,
  type Stage,
} from './pipeline.js';
export { type BulkheadOptions, BulkheadStage, bulkhead } from './policies/bulkhead.js';
export {
  type CircuitBreakerOptions,
  type CircuitBreakerSnapshot,
  CircuitBreakerStage,
  type CircuitStateChange,
  circuitBreaker,
} from './policies/circuit-breaker.js';
export type { HedgeEvent, HedgeOptions } from './policies/hedge.js';
export { type RateLimitOptions, RateLimitStage, rateLimit } from './policies/rate-limit.js';
export {
  type GiveUpEvent,
  type GiveUpReason,
  type RetryEvent,
  type RetryOptions,
  RetryStage,
  retry,
} from './policies/retry.js';
export { type TimeoutOptions, TimeoutStage, timeout } from './policies/timeout.js';
export { ResilientDispatcher, resilient } from './resilient.js';
export { type PresetTimeout, type StandardPipelineOptions, standardPipeline } from './standard.js';
export type {
  AttemptEndMessage,
  AttemptStartMessage,
  CircuitStateMessage,
  HedgeMessage,
  QueueWaitMessage,
  RejectedMessage,
  RequestEndMessage,
  RequestStartMessage,
  RetryMessage,
} from './telemetry/channels.js';
