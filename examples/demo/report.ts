/**
 * The numbers of one run and the side-by-side table (or the JSON object of `--json`).
 */
import type { ClientRun } from './job.js';
import type { ProfileName } from './profiles.js';
import type { UpstreamStats } from './upstream.js';

export interface RunSummary {
  /** Logical requests that ended with a 2xx, as a share of all (0…1). */
  successRate: number;
  succeeded: number;
  failed: number;
  /** Latency of every logical request as its caller saw it, failures included, in ms. */
  latencyMs: { p50: number; p95: number; p99: number };
  /** Requests the upstream received, retries included. */
  upstreamRequests: number;
  upstreamRequestsPerLogical: number;
  /** Logical POSTs the upstream executed more than once. */
  postsExecutedTwice: number;
  circuitOpens: number;
  peakQueueDepth: number;
  hedgesSent: number;
  hedgesWon: number;
  wallMs: number;
  retries: number;
  /** Failures that were not retried, by reason: `attempts` (all used), `budget`, `not-idempotent`, … */
  notRetried: Record<string, number>;
  /** Failed logical requests by method and what the caller got, e.g. `POST 503`. */
  failures: Record<string, number>;
  /** How the upstream answered, by kind. */
  upstreamAnswers: Record<string, number>;
}

export interface DemoResult {
  profile: ProfileName;
  seed: number;
  requests: number;
  concurrency: number;
  plain: RunSummary;
  breakwater: RunSummary;
}

export function summarize(run: ClientRun, upstream: UpstreamStats, logical: number): RunSummary {
  const sorted = Float64Array.from(run.job.latencies).sort();
  return {
    successRate: logical === 0 ? 1 : round(run.job.succeeded / logical, 4),
    succeeded: run.job.succeeded,
    failed: run.job.failed,
    latencyMs: {
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
    },
    upstreamRequests: upstream.requests,
    upstreamRequestsPerLogical: logical === 0 ? 0 : round(upstream.requests / logical, 3),
    postsExecutedTwice: upstream.postsExecutedTwice,
    circuitOpens: run.circuitOpens,
    peakQueueDepth: run.peakQueueDepth,
    hedgesSent: run.hedgesSent,
    hedgesWon: run.hedgesWon,
    wallMs: Math.round(run.job.wallMs),
    retries: run.retries,
    notRetried: run.notRetried,
    failures: run.job.failures,
    upstreamAnswers: upstream.answers,
  };
}

/** Nearest-rank percentile of sorted values, rounded to 0.1 ms. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return round(sorted[rank - 1]!, 1);
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function formatTable(result: DemoResult): string {
  const { plain: a, breakwater: b } = result;
  const rows: Array<[string, string, string]> = [
    ['', 'plain client', 'Breakwater'],
    ['logical success rate', pct(a.successRate), pct(b.successRate)],
    ['latency p50', ms(a.latencyMs.p50), ms(b.latencyMs.p50)],
    ['latency p95', ms(a.latencyMs.p95), ms(b.latencyMs.p95)],
    ['latency p99', ms(a.latencyMs.p99), ms(b.latencyMs.p99)],
    [
      'upstream requests per logical request',
      a.upstreamRequestsPerLogical.toFixed(2),
      b.upstreamRequestsPerLogical.toFixed(2),
    ],
    ['POSTs executed twice', String(a.postsExecutedTwice), String(b.postsExecutedTwice)],
    ['hedges sent / won', '— (no hedging)', `${b.hedgesSent} / ${b.hedgesWon}`],
    ['circuit opens', '— (no breaker)', String(b.circuitOpens)],
    ['peak queue depth', String(a.peakQueueDepth), String(b.peakQueueDepth)],
    ['wall time', ms(a.wallMs), ms(b.wallMs)],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const w2 = Math.max(...rows.map((r) => r[2].length));
  const line = (r: [string, string, string]): string =>
    `  ${r[0].padEnd(w0)}   ${r[1].padStart(w1)}   ${r[2].padStart(w2)}`;
  const rule = `  ${'─'.repeat(w0 + w1 + w2 + 6)}`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

/** A few lines per run: what its failures were, what was not retried, what the upstream answered. */
export function formatBreakdown(label: string, s: RunSummary): string {
  const pieces: string[] = [`${s.succeeded} ok,`];
  const failures = items(s.failures);
  if (failures.length === 0) pieces.push(`${s.failed} failed.`);
  else pieces.push(`${s.failed} failed:`, ...list(failures));
  const notRetried = items(s.notRetried);
  if (notRetried.length === 0) pieces.push(`${s.retries} retries.`);
  else pieces.push(`${s.retries} retries; not retried:`, ...list(notRetried));
  pieces.push('The upstream answered', ...list(items(s.upstreamAnswers, ANSWER_NAMES)));
  return wrap(`  ${label.padEnd(12)}`, pieces, 110, ' '.repeat(14));
}

/** Failed logical POSTs: the ones Breakwater would not repeat once they may have run. */
export function failedPosts(s: RunSummary): number {
  return Object.entries(s.failures).reduce((sum, [kind, n]) => (kind.startsWith('POST ') ? sum + n : sum), 0);
}

/**
 * Joins `pieces` with spaces after `prefix`, breaking lines before `width` columns; a piece is
 * never split. Continuation lines start with `indent`.
 */
export function wrap(prefix: string, pieces: readonly string[], width: number, indent: string): string {
  const lines: string[] = [];
  let line = prefix;
  let empty = true;
  for (const piece of pieces) {
    if (!empty && line.length + 1 + piece.length > width) {
      lines.push(line);
      line = indent + piece;
    } else {
      line = empty ? line + piece : `${line} ${piece}`;
    }
    empty = false;
  }
  lines.push(line);
  return lines.join('\n');
}

/** `['a ×3', 'b ×1']`, largest first, with optional display names. */
function items(byKind: Record<string, number>, names: Record<string, string> = {}): string[] {
  return Object.entries(byKind)
    .sort((x, y) => y[1] - x[1])
    .map(([kind, n]) => `${names[kind] ?? kind} ×${n}`);
}

/** A comma after every item but the last, a full stop after that. */
function list(values: readonly string[]): string[] {
  return values.map((v, i) => (i === values.length - 1 ? `${v}.` : `${v},`));
}

const ANSWER_NAMES: Record<string, string> = {
  '200': '200',
  '503': '503',
  '429': '429',
  reset: 'reset after work',
  'outage-503': '503 (outage)',
  'outage-reset': 'reset (outage)',
  'client-gone': 'abandoned by the client',
};

function pct(share: number): string {
  return `${(share * 100).toFixed(1)} %`;
}

export function ms(value: number): string {
  if (value < 1) return `${value.toFixed(1)} ms`;
  if (value < 1_000) return `${Math.round(value)} ms`;
  return `${(value / 1_000).toFixed(2)} s`;
}
