/*
 * The gauges read at scrape time: queue depth, in-flight attempts, the adaptive concurrency limit,
 * circuit state and hedge delay
 * come from the attached pipelines' snapshots, connection pools from the dispatchers' `stats`.
 * Nothing is tracked twice on the hot path: prom-client calls each gauge's `collect` (its public
 * hook, with the gauge as `this`) before it reads the gauge.
 */
import type { Gauge } from 'prom-client';
import type { StateSource } from '../dispatch/observer.js';
import type { CircuitState } from '../errors.js';
import type { PoolStatsSource } from './options.js';

/** One attached pipeline, as every metrics object that shares the gauge sees it. */
export interface StateBinding {
  readonly source: StateSource;
  /** Maps a snapshot's origin to the label value of the metrics object it was attached to. */
  readonly label: (origin: string) => string;
}

export interface PoolBinding {
  readonly dispatcher: PoolStatsSource;
  readonly label: (origin: string) => string;
}

export type Collect = (this: Gauge<string>) => void;

/*
 * The bindings of each gauge this module computes, kept beside prom-client's object rather than on
 * it. A gauge of the right name that is not here was registered by someone else.
 */
const bindings = new WeakMap<object, Set<unknown>>();

/** The bindings of a gauge made by `makeBound`, or undefined for anyone else's. */
export function boundTo<B>(gauge: object): Set<B> | undefined {
  return bindings.get(gauge) as Set<B> | undefined;
}

/** Records that `gauge` is computed from `set` at scrape time. */
export function bind<B>(gauge: object, set: Set<B>): void {
  bindings.set(gauge, set as Set<unknown>);
}

const POOL_STATES = ['connected', 'free', 'pending', 'queued', 'running'] as const;
type PoolState = (typeof POOL_STATES)[number];
const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half_open'];
// When several keys share an origin label, the worst state wins.
const CIRCUIT_SEVERITY: Readonly<Record<CircuitState, number>> = { closed: 0, half_open: 1, open: 2 };

function stateBindings(gauge: Gauge<string>): Iterable<StateBinding> {
  return boundTo<StateBinding>(gauge) ?? [];
}

/**
 * Sums one field of every key's snapshot per origin label, across every attached pipeline; keys
 * without the field (no adaptive bulkhead) are left out.
 */
function setTotals(gauge: Gauge<string>, field: 'queued' | 'inFlight' | 'concurrencyLimit'): void {
  const totals = new Map<string, number>();
  for (const { source, label } of stateBindings(gauge)) {
    for (const key of source.snapshot()) {
      const value = key[field];
      if (value === undefined) continue;
      const origin = label(key.origin);
      totals.set(origin, (totals.get(origin) ?? 0) + value);
    }
  }
  gauge.reset();
  for (const [origin, value] of totals) gauge.set({ origin }, value);
}

export function collectQueueDepth(this: Gauge<string>): void {
  setTotals(this, 'queued');
}

export function collectInFlight(this: Gauge<string>): void {
  setTotals(this, 'inFlight');
}

export function collectConcurrencyLimit(this: Gauge<string>): void {
  setTotals(this, 'concurrencyLimit');
}

export function collectHedgeDelay(this: Gauge<string>): void {
  // Several keys under one origin label: the longest delay stands for them.
  const delays = new Map<string, number>();
  for (const { source, label } of stateBindings(this)) {
    for (const key of source.snapshot()) {
      if (key.hedgeDelay === undefined) continue;
      const origin = label(key.origin);
      delays.set(origin, Math.max(delays.get(origin) ?? 0, key.hedgeDelay));
    }
  }
  this.reset();
  for (const [origin, seconds] of delays) this.set({ origin }, seconds);
}

export function collectCircuitState(this: Gauge<string>): void {
  const worst = new Map<string, CircuitState>();
  for (const { source, label } of stateBindings(this)) {
    for (const key of source.snapshot()) {
      if (key.circuit === undefined) continue;
      const origin = label(key.origin);
      const current = worst.get(origin);
      if (current === undefined || CIRCUIT_SEVERITY[key.circuit] > CIRCUIT_SEVERITY[current]) {
        worst.set(origin, key.circuit);
      }
    }
  }
  this.reset();
  for (const [origin, state] of worst) {
    for (const s of CIRCUIT_STATES) this.set({ origin, state: s }, s === state ? 1 : 0);
  }
}

export function collectPoolConnections(this: Gauge<string>): void {
  const totals = new Map<string, Partial<Record<PoolState, number>>>();
  for (const { dispatcher, label } of boundTo<PoolBinding>(this) ?? []) {
    const stats = dispatcher.stats;
    for (const origin of Object.keys(stats)) {
      const pool = stats[origin];
      if (pool === undefined) continue;
      const key = label(origin);
      let row = totals.get(key);
      if (row === undefined) {
        row = {};
        totals.set(key, row);
      }
      for (const state of POOL_STATES) {
        const raw = pool[state];
        // A Client reports `connected` as a boolean and has no `free` or `queued`.
        const value = typeof raw === 'boolean' ? Number(raw) : raw;
        if (typeof value === 'number' && Number.isFinite(value)) row[state] = (row[state] ?? 0) + value;
      }
    }
  }
  this.reset();
  for (const [origin, row] of totals) {
    for (const state of POOL_STATES) {
      const value = row[state];
      if (value !== undefined) this.set({ origin, state }, value);
    }
  }
}
