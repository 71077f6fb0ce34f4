/*
 * `breakwater/otel`: OpenTelemetry metrics and tracing for Breakwater's pipelines. A separate entry
 * point so that `breakwater` itself never imports `@opentelemetry/api`, an optional peer dependency.
 */
export { OpenTelemetryMetrics, type OpenTelemetryMetricsOptions, openTelemetryMetrics } from './metrics.js';
export {
  type OpenTelemetryTracing,
  type OpenTelemetryTracingOptions,
  openTelemetryTracing,
} from './tracing.js';
