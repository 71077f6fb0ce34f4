/*
 * The options of `prometheusMetrics()`, their defaults and their validation, done once when the
 * metrics object is made. Also loads prom-client, an optional peer dependency, on first use.
 */
import { createRequire } from 'node:module';
import type { OpenMetricsContentType, PrometheusContentType, Registry } from 'prom-client';
import { InvalidOptionError } from '../errors.js';
import { integer, knownKeys, optionalObject } from '../internal/validate.js';

/** A prom-client registry, Prometheus text or OpenMetrics. */
export type MetricsRegistry = Registry<PrometheusContentType> | Registry<OpenMetricsContentType>;

/** The counts undici reports per origin in `agent.stats` (a Pool's or a Client's stats). */
export interface PoolStatsLike {
  /** Open connections (a Client reports a boolean). */
  readonly connected?: number | boolean;
  /** Open connections without an active request. */
  readonly free?: number;
  /** Requests waiting to be sent. */
  readonly pending?: number;
  /** Requests queued in the pool. */
  readonly queued?: number;
  /** Requests in flight. */
  readonly running?: number;
}

/** A dispatcher whose `stats` are keyed by origin, such as undici's `Agent`. */
export interface PoolStatsSource {
  readonly stats: Readonly<Record<string, PoolStatsLike>>;
}

export interface PrometheusMetricsOptions {
  /**
   * The registry the metrics are registered in. Required: the library never uses prom-client's
   * global registry. Two `prometheusMetrics()` calls on one registry share the metrics.
   */
  registry: MetricsRegistry;
  /**
   * Prepended to every metric name.
   * @default 'breakwater_'
   */
  prefix?: string;
  /**
   * Upper bounds, in seconds, of the duration histograms.
   * @default [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] (OpenTelemetry's HTTP client buckets)
   */
  buckets?: readonly number[];
  /**
   * Distinct `origin` label values this object hands out; requests to further origins are
   * counted under `origin="other"`.
   * @default 100
   */
  maxOrigins?: number;
  /**
   * Dispatchers (undici `Agent`s) whose connection pools are reported as
   * `breakwater_pool_connections{origin,state}`, read from `agent.stats` at scrape time.
   * @default []
   */
  dispatchers?: readonly PoolStatsSource[];
}

export type PromClient = typeof import('prom-client');

/** The options once checked, with their defaults. */
export interface ResolvedOptions {
  readonly client: PromClient;
  readonly registry: MetricsRegistry;
  readonly prefix: string;
  readonly buckets: readonly number[];
  readonly maxOrigins: number;
  readonly dispatchers: readonly PoolStatsSource[];
}

/** OpenTelemetry's recommended buckets for `http.client.request.duration`, in seconds. */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];
const DEFAULT_PREFIX = 'breakwater_';
const DEFAULT_MAX_ORIGINS = 100;
// A prefix that yields valid metric names. Colons are allowed by the data model but reserved for
// recording rules, so an exporter must not use them.
const PREFIX_PATTERN = /^(?:[a-zA-Z_][a-zA-Z0-9_]*)?$/;

// prom-client is an optional peer dependency: it is loaded when metrics are asked for, so the rest
// of the library works without it installed.
const requireFromHere = createRequire(import.meta.url);
let promClient: PromClient | undefined;

function loadPromClient(): PromClient {
  if (promClient === undefined) {
    try {
      promClient = requireFromHere('prom-client') as PromClient;
    } catch (err) {
      throw new Error('prometheusMetrics() needs prom-client 15: npm install prom-client', { cause: err });
    }
  }
  return promClient;
}

/** Checks every option, naming the first bad one in an `InvalidOptionError`. */
export function resolveOptions(options: PrometheusMetricsOptions): ResolvedOptions {
  const o = optionalObject('metrics', options);
  if (o === undefined) throw new InvalidOptionError('metrics', 'an object with a registry', options);
  knownKeys('metrics', o, ['registry', 'prefix', 'buckets', 'maxOrigins', 'dispatchers']);
  const client = loadPromClient();
  return {
    client,
    registry: checkRegistry(o.registry, client),
    prefix: checkPrefix(o.prefix),
    buckets: checkBuckets(o.buckets),
    maxOrigins: integer('metrics.maxOrigins', o.maxOrigins, 0, DEFAULT_MAX_ORIGINS),
    dispatchers: checkDispatchers(o.dispatchers),
  };
}

function checkRegistry(value: unknown, client: PromClient): MetricsRegistry {
  const r = value as Partial<Registry> | null | undefined;
  if (
    typeof r !== 'object' ||
    r === null ||
    typeof r.getSingleMetric !== 'function' ||
    typeof r.registerMetric !== 'function' ||
    typeof r.metrics !== 'function'
  ) {
    throw new InvalidOptionError('metrics.registry', 'a prom-client Registry (new Registry())', value);
  }
  if (r === client.register) {
    throw new InvalidOptionError(
      'metrics.registry',
      "a Registry of your own (new Registry()), not prom-client's global register",
      'the global register',
    );
  }
  return r as MetricsRegistry;
}

function checkPrefix(value: unknown): string {
  if (value === undefined) return DEFAULT_PREFIX;
  if (typeof value !== 'string' || !PREFIX_PATTERN.test(value)) {
    throw new InvalidOptionError(
      'metrics.prefix',
      'a Prometheus metric name prefix (letters, digits and underscores, not starting with a digit)',
      value,
    );
  }
  return value;
}

function checkBuckets(value: unknown): number[] {
  if (value === undefined) return [...DEFAULT_BUCKETS];
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidOptionError(
      'metrics.buckets',
      'a non-empty array of increasing numbers of seconds',
      value,
    );
  }
  value.forEach((bound, i) => {
    const previous = i === 0 ? 0 : (value[i - 1] as number);
    if (typeof bound !== 'number' || !Number.isFinite(bound) || bound <= previous) {
      throw new InvalidOptionError(
        `metrics.buckets[${i}]`,
        i === 0 ? 'a finite number of seconds > 0' : `a finite number of seconds > ${previous}`,
        bound,
      );
    }
  });
  return [...value];
}

function checkDispatchers(value: unknown): PoolStatsSource[] {
  if (value === undefined) return [];
  if (!Array.isArray(value))
    throw new InvalidOptionError('metrics.dispatchers', 'an array of undici Agents', value);
  value.forEach((item, i) => {
    const stats = (item as { stats?: unknown } | null)?.stats;
    // An Agent's stats are keyed by origin; a Pool's or a Client's are one object of numbers,
    // with no origin to label them by.
    if (typeof stats !== 'object' || stats === null || 'connected' in stats) {
      throw new InvalidOptionError(
        `metrics.dispatchers[${i}]`,
        'an undici Agent (its stats keyed by origin)',
        item,
      );
    }
  });
  return [...value];
}
