import { AttemptRecorder } from './attempt-recorder.js';
import { CoreBridge } from './core-bridge.js';
import type { Layer } from './exchange.js';
import type { DispatchFn, Handler } from './types.js';
import { CORE_SPEAKS_LEGACY } from './undici-version.js';

/**
 * The real dispatcher under one pipeline, and which handler API to speak to it. On undici 7 that
 * is the legacy API its core runs, so no UnwrapHandler sits in between; if the dispatcher turns
 * out to reject legacy handlers (an undici 8 dispatcher handed to a process that resolved undici
 * 7), `legacy` turns false for good and every later attempt speaks the current API.
 */
export class CoreLink {
  readonly dispatch: DispatchFn;
  /** Attempts are timed to their response headers (metrics are on). */
  readonly record: boolean;
  legacy = CORE_SPEAKS_LEGACY;

  constructor(dispatch: DispatchFn, record: boolean) {
    this.dispatch = dispatch;
    this.record = record;
  }
}

/** undici 8 refuses a handler without the current API before it calls any of its methods. */
export function rejectsLegacyHandlers(err: unknown): boolean {
  return (
    (err as { code?: string })?.code === 'UND_ERR_INVALID_ARG' &&
    /onRequestStart|onResponse/.test(String((err as Error).message))
  );
}

/**
 * The innermost step of a pipeline built stage by stage: hands the attempt to the real dispatcher
 * through a CoreBridge (legacy API) or, failing that, as it is. With metrics on, the attempt is
 * timed (by the bridge, or by an AttemptRecorder).
 */
export function terminalLayer(core: CoreLink): Layer {
  const { dispatch, record } = core;
  return function send(opts, handler, ex) {
    if (core.legacy) {
      try {
        dispatch(opts, new CoreBridge(handler, record ? ex : null) as unknown as Handler);
        return;
      } catch (err) {
        if (!rejectsLegacyHandlers(err)) throw err;
        core.legacy = false;
      }
    }
    dispatch(opts, record ? new AttemptRecorder(handler, ex) : handler);
  };
}
