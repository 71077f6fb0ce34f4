/*
 * The real OpenTelemetry SDK, in memory: a meter provider whose in-memory exporter is read after a
 * forced collection, a tracer provider with an in-memory span exporter, and the async-hooks
 * context manager, so the caller's active span is what a real application would have.
 */
import { type Context, context, type Span, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

export interface OtelSdk {
  readonly meterProvider: MeterProvider;
  readonly tracerProvider: BasicTracerProvider;
  readonly spans: InMemorySpanExporter;
  /** Collects now and returns the data points of `name` (empty when it has none). */
  points(name: string): Promise<Array<DataPoint<number | Histogram>>>;
  /** Runs `fn` inside a span of the caller's, as an application's handler would. */
  inCallerSpan<T>(fn: (span: Span) => Promise<T>): Promise<T>;
  shutdown(): Promise<void>;
}

export function startSdk(): OtelSdk {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  // Never exports by itself within a test: collections are forced.
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const caller = tracerProvider.getTracer('the-application');
  return {
    meterProvider,
    tracerProvider,
    spans,
    async points(name) {
      exporter.reset();
      await reader.forceFlush();
      const out: Array<DataPoint<number | Histogram>> = [];
      for (const batch of exporter.getMetrics()) {
        for (const scope of batch.scopeMetrics) {
          for (const metric of scope.metrics) {
            if (metric.descriptor.name === name)
              out.push(...(metric.dataPoints as Array<DataPoint<number | Histogram>>));
          }
        }
      }
      return out;
    },
    inCallerSpan(fn) {
      return caller.startActiveSpan('caller', async (span) => {
        try {
          return await fn(span);
        } finally {
          span.end();
        }
      });
    },
    async shutdown() {
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
      context.disable();
      trace.disable();
    },
  };
}

export type { Context };
