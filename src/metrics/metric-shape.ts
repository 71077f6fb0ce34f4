/*
 * What a metric already in the registry was configured with: its type, label names and (for a
 * histogram) bucket bounds. prom-client 15 keeps them in the fields `type`, `labelNames` and
 * `upperBounds`, which its type declarations omit; nothing else here reads past its public API.
 * They are read once, when a metrics object is made, to refuse sharing an incompatible metric.
 * test/metrics/metric-shape.test.ts fails if a prom-client release keeps them otherwise.
 */

export interface MetricShape {
  /** `counter`, `gauge`, `histogram`, `summary`, or undefined if unknown. */
  readonly type: string | undefined;
  readonly labelNames: readonly string[];
  /** A histogram's bounds, undefined for other types or if unknown. */
  readonly upperBounds: readonly number[] | undefined;
}

export function metricShape(metric: object): MetricShape {
  const m = metric as { type?: unknown; labelNames?: unknown; upperBounds?: unknown };
  return {
    type: typeof m.type === 'string' ? m.type : undefined,
    labelNames: Array.isArray(m.labelNames) ? m.labelNames.filter((l) => typeof l === 'string') : [],
    upperBounds: Array.isArray(m.upperBounds) ? (m.upperBounds as number[]) : undefined,
  };
}
