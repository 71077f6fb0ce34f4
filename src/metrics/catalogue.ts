/*
 * The catalogue of Prometheus metrics: names (without the prefix), types, labels and help. This is
 * the contract dashboards and alerting rules depend on; docs/metrics.md, the Grafana dashboard and
 * the alerting rules in examples/prometheus/ are checked against it by tests.
 */

export type MetricType = 'counter' | 'histogram' | 'gauge';

export interface MetricSpec {
  /** The name after the prefix (`breakwater_` by default). */
  readonly name: string;
  readonly type: MetricType;
  readonly labels: readonly string[];
  /** The `# HELP` text. */
  readonly help: string;
  /** The meaning column of the table in docs/metrics.md. */
  readonly meaning: string;
  /** Registered only when `dispatchers` are given. */
  readonly optional?: true;
}

export const CATALOGUE = {
  requests: {
    name: 'requests_total',
    type: 'counter',
    labels: ['origin', 'method', 'outcome'],
    help: 'Logical requests finished, by outcome (success, failure, bulkhead_rejected, circuit_open, rate_limited, timeout, aborted).',
    meaning:
      'logical requests finished: `success`, `failure`, `bulkhead_rejected`, `circuit_open`, `rate_limited`, `timeout`, `aborted`',
  },
  requestDuration: {
    name: 'request_duration_seconds',
    type: 'histogram',
    labels: ['origin', 'method', 'status_class'],
    help: 'Duration of whole requests as the caller saw them, queueing and retries included.',
    meaning: 'the whole exchange as the caller saw it, queue and retries included',
  },
  attempts: {
    name: 'attempts_total',
    type: 'counter',
    labels: ['origin', 'method', 'status_class'],
    help: 'Attempts sent upstream, by status class or error kind.',
    meaning: 'attempts sent upstream',
  },
  attemptDuration: {
    name: 'attempt_duration_seconds',
    type: 'histogram',
    labels: ['origin', 'method', 'status_class'],
    help: 'Duration of one attempt, from dispatch to its response headers or its failure.',
    meaning: 'one attempt, to its response headers',
  },
  retries: {
    name: 'retries_total',
    type: 'counter',
    labels: ['origin', 'reason'],
    help: 'Retries scheduled, by reason (status, network, timeout).',
    meaning: 'retries scheduled: `status`, `network`, `timeout`',
  },
  retryBudgetExhausted: {
    name: 'retry_budget_exhausted_total',
    type: 'counter',
    labels: ['origin'],
    help: 'Retries refused because the retry budget was exhausted.',
    meaning: 'retries refused by the budget',
  },
  queueDepth: {
    name: 'queue_depth',
    type: 'gauge',
    labels: ['origin'],
    help: 'Requests waiting for a bulkhead slot.',
    meaning: 'requests waiting for a bulkhead slot',
  },
  inFlight: {
    name: 'in_flight',
    type: 'gauge',
    labels: ['origin'],
    help: 'Attempts holding a bulkhead slot.',
    meaning: 'attempts holding a bulkhead slot',
  },
  queueWait: {
    name: 'queue_wait_seconds',
    type: 'histogram',
    labels: ['origin'],
    help: 'Time requests spent waiting for a bulkhead slot.',
    meaning: 'time spent queued',
  },
  bulkheadRejections: {
    name: 'bulkhead_rejections_total',
    type: 'counter',
    labels: ['origin'],
    help: 'Requests rejected because every bulkhead slot was busy and the queue was full.',
    meaning: 'rejected because the queue was full',
  },
  timeouts: {
    name: 'timeouts_total',
    type: 'counter',
    labels: ['origin', 'scope'],
    help: 'Timeouts that fired, by scope (attempt, total).',
    meaning: '`attempt` or `total`',
  },
  circuitState: {
    name: 'circuit_state',
    type: 'gauge',
    labels: ['origin', 'state'],
    help: 'Circuit breaker state: 1 for the current state (closed, open, half_open), 0 for the others.',
    meaning: '1 for the current state of `closed`, `open`, `half_open`',
  },
  circuitTransitions: {
    name: 'circuit_transitions_total',
    type: 'counter',
    labels: ['origin', 'to'],
    help: 'Circuit breaker state changes, by the state entered.',
    meaning: 'state changes',
  },
  circuitRejections: {
    name: 'circuit_rejections_total',
    type: 'counter',
    labels: ['origin'],
    help: 'Attempts refused while the circuit was open.',
    meaning: 'attempts refused while open',
  },
  hedges: {
    name: 'hedges_total',
    type: 'counter',
    labels: ['origin', 'result'],
    help: 'Hedged attempts sent, by result: won (its response was the answer) or lost.',
    meaning: 'hedges sent: `won` (the answer) or `lost`',
  },
  concurrencyLimit: {
    name: 'concurrency_limit',
    type: 'gauge',
    labels: ['origin'],
    help: "The adaptive bulkhead's concurrency limit now (summed over the keys of an origin).",
    meaning: "the adaptive bulkhead's limit now, read at scrape",
  },
  hedgeDelay: {
    name: 'hedge_delay_seconds',
    type: 'gauge',
    labels: ['origin'],
    help: 'How long a request waits for response headers before a hedge is sent.',
    meaning: 'how long a request waits for headers before a hedge, read at scrape',
  },
  storeErrors: {
    name: 'store_errors_total',
    type: 'counter',
    labels: ['operation', 'reason'],
    help: 'Fleet store calls that failed, were late or found the store unavailable; the pipeline used its local state.',
    meaning:
      'fleet store calls (`rate`, `pause`, `lock`, `unlock`, `publish`, `read`) that failed (`error`), were late (`timeout`) or found the store `unavailable`: the pipeline used its local state (docs/fleet.md)',
  },
  poolConnections: {
    name: 'pool_connections',
    type: 'gauge',
    labels: ['origin', 'state'],
    help: 'Connection pool of the undici dispatcher (connections connected and free; requests pending, queued and running).',
    meaning:
      "only with `dispatchers`: the Agent's pools, read at scrape (`connected`, `free`, `pending`, `queued`, `running`)",
    optional: true,
  },
} as const satisfies Record<string, MetricSpec>;

export type MetricId = keyof typeof CATALOGUE;
