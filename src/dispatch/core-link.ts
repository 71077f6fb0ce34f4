import { Agent } from 'undici';
import type { DispatchFn } from './types.js';

/**
 * The real dispatcher under one pipeline, and which handler API to speak to it.
 *
 * undici 7's core runs the legacy handler API (onConnect, onHeaders, …) and converts a
 * current-API handler at its door; undici 8 runs the current API and has no legacy one. Speaking
 * the core's own API saves that conversion on every attempt, so attempts start in the API the
 * undici this package loaded speaks, found by trying it once (speaksLegacy), and switch for good
 * if this particular dispatcher refuses it (one from another copy of undici).
 */
export class CoreLink {
  readonly dispatch: DispatchFn;
  /** Attempts are timed to their response headers (metrics are on). */
  readonly record: boolean;
  legacy = speaksLegacy();

  constructor(dispatch: DispatchFn, record: boolean) {
    this.dispatch = dispatch;
    this.record = record;
  }

  /**
   * Whether `err`, thrown by dispatch() for a legacy handler, means the dispatcher does not take
   * legacy handlers; if so, later attempts speak the current API. A dispatcher that takes them
   * reports a failure through the handler's onError and never throws; one that refuses them throws
   * undici's InvalidArgumentError before calling the handler at all (`called`: it did).
   */
  refusedLegacy(err: unknown, called: boolean): boolean {
    if (called || (err as { code?: unknown } | null)?.code !== 'UND_ERR_INVALID_ARG') return false;
    this.legacy = false;
    return true;
  }
}

let legacyCore: boolean | undefined;

/**
 * Whether the undici this package loaded runs the legacy handler API, found by behaviour rather
 * than by a version number (a bundle has no package.json to read): a request that fails at once
 * is reported to a legacy handler's onError by undici 7, and thrown by undici 8, which cannot call
 * a handler without onResponseError. No connection is made; the Agent holds nothing.
 */
export function speaksLegacy(): boolean {
  if (legacyCore !== undefined) return legacyCore;
  let reported = false;
  const probe = {
    onConnect() {},
    onHeaders: () => true,
    onData: () => true,
    onComplete() {},
    onError() {
      reported = true;
    },
  };
  const agent = new Agent();
  try {
    // No origin: every undici refuses this before touching the network.
    agent.dispatch({ path: '/', method: 'GET' } as never, probe as never);
  } catch {
    // undici 8: thrown, not reported.
  }
  void agent.close().catch(() => {});
  legacyCore = reported;
  return legacyCore;
}
