/**
 * What an upstream says about its quota in a response, as a pause: how long no request to that key
 * should be sent. Read by the rate limit stage on every response it lets through.
 *
 * - `Retry-After` on a 429 or a 503 (delta-seconds or an HTTP-date, as the retry stage reads it).
 * - `RateLimit-Remaining: 0` with `RateLimit-Reset` (delta-seconds), the IETF httpapi draft's
 *   fields up to draft 06, and the later draft's single field, `RateLimit: "name";r=0;t=5`.
 * - `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset`. Services disagree on that reset: GitHub
 *   and Twitter send epoch seconds, others delta-seconds like the IETF draft. A value of at least
 *   1,000,000,000 (a date after 2001) is read as epoch seconds, a smaller one as delta-seconds: no
 *   quota window lasts 31 years, and no epoch date is that small.
 *
 * A remaining count of 0 without a usable reset still says the quota is spent: `pause` is 0 and
 * `exhausted` true. Garbage is ignored.
 */

import { parseRetryAfter } from './retry-after.js';

/** Reset values at or above this are epoch seconds (2001-09-09), below it delta-seconds. */
export const EPOCH_SECONDS_FROM = 1_000_000_000;

const NUMBER = /^[ \t]*(\d+(?:\.\d+)?)[ \t]*$/;

export interface QuotaSignal {
  /** Milliseconds to send nothing; 0 when none was asked. */
  pauseMs: number;
  /** The upstream said no request is left in its quota now. */
  exhausted: boolean;
}

/**
 * The pause a response asks for, or `undefined` when it says nothing about the quota.
 * @param header - a response header's value by lower-case name.
 * @param nowMs - wall-clock epoch milliseconds, for HTTP-dates and epoch resets.
 */
export function quotaSignal(
  statusCode: number,
  header: (name: string) => string | undefined,
  nowMs: number,
): QuotaSignal | undefined {
  if (statusCode === 429 || statusCode === 503) {
    const retryAfter = parseRetryAfter(header('retry-after'), nowMs);
    if (retryAfter !== undefined) return { pauseMs: retryAfter, exhausted: true };
  }
  const ietf = fromRemaining(header('ratelimit-remaining'), header('ratelimit-reset'), false, nowMs);
  if (ietf !== undefined) return ietf;
  const combined = header('ratelimit');
  if (combined !== undefined) {
    const r = /(?:^|;)[ \t]*r=(\d+)/.exec(combined);
    const t = /(?:^|;)[ \t]*t=(\d+)/.exec(combined);
    const signal = fromRemaining(r?.[1], t?.[1], false, nowMs);
    if (signal !== undefined) return signal;
  }
  const common = fromRemaining(header('x-ratelimit-remaining'), header('x-ratelimit-reset'), true, nowMs);
  if (common !== undefined) return common;
  // A 429 without any of them still says the quota is spent, for now.
  return statusCode === 429 ? { pauseMs: 0, exhausted: true } : undefined;
}

function fromRemaining(
  remaining: string | undefined,
  reset: string | undefined,
  epochAllowed: boolean,
  nowMs: number,
): QuotaSignal | undefined {
  if (remaining === undefined) return undefined;
  const left = NUMBER.exec(remaining);
  if (left === null || Number(left[1]) > 0) return undefined;
  const value = reset === undefined ? null : NUMBER.exec(reset);
  if (value === null) return { pauseMs: 0, exhausted: true };
  const seconds = Number(value[1]);
  if (epochAllowed && seconds >= EPOCH_SECONDS_FROM) {
    const ms = seconds * 1000 - nowMs;
    return { pauseMs: Math.max(ms, 0), exhausted: true };
  }
  return { pauseMs: seconds * 1000, exhausted: true };
}
