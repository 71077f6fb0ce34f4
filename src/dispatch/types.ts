// The undici types the dispatch code shares, and the per-request overrides carried by the
// `breakwater` dispatch option.

import type { Dispatcher } from 'undici';

/** undici's current handler API (`onRequestStart`, `onResponseStart`, …), shared by undici 7 and 8. */
export type Handler = Dispatcher.DispatchHandler;
export type Controller = Dispatcher.DispatchController;
export type DispatchOptions = Dispatcher.DispatchOptions & { breakwater?: RequestOverrides };
export type DispatchFn = (opts: DispatchOptions, handler: Handler) => boolean;
export type Headers = Record<string, string | string[] | undefined>;

/** A body that can be produced again for another attempt. */
export type BodyFactory = () => DispatchOptions['body'];

/**
 * Per-request settings, passed as the `breakwater` dispatch option (as undici passes
 * `retryOptions`): `request(url, { breakwater: { maxAttempts: 1 } })`.
 */
export interface RequestOverrides {
  /** Opt a non-idempotent request (POST, PATCH) into retries: the caller vouches that a repeat is safe. */
  idempotent?: boolean;
  /** Attempts in all for this request, overriding the retry stage's `maxAttempts`. */
  maxAttempts?: number;
  /** Milliseconds for every `total` timeout stage of this request (outside the retry stage). */
  totalTimeout?: number;
  /** Milliseconds for every `attempt` timeout stage of this request (inside the retry stage). */
  attemptTimeout?: number;
  /** Produces a fresh body for each attempt, making a stream body replayable. */
  body?: BodyFactory;
}
