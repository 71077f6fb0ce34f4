// The timeout stage: how long, and up to where (`until`). The dispatch code arms its deadlines.

import { InvalidOptionError } from '../errors.js';
import { duration, knownKeys, oneOf, optionalObject } from '../internal/validate.js';

export interface TimeoutOptions {
  /**
   * What the time bounds: `'end'` runs through the last byte of the response body,
   * `'headers'` stops at the response headers.
   * @default 'end'
   */
  until?: 'end' | 'headers';
}

/**
 * A timeout stage. It bounds everything inside it (queueing, attempts, backoff, the response) and
 * aborts the request under it when it fires, so the socket is released. Placed inside a retry
 * stage it bounds one attempt (`scope: 'attempt'`), otherwise the whole exchange (`'total'`).
 */
export class TimeoutStage {
  readonly kind = 'timeout';
  readonly ms: number;
  readonly until: 'end' | 'headers';

  constructor(ms: number, options?: TimeoutOptions) {
    if (typeof ms === 'object' && ms !== null) {
      throw new InvalidOptionError('timeout.ms', 'a number of milliseconds (timeout(ms, options))', ms);
    }
    this.ms = duration('timeout.ms', ms);
    const o = optionalObject('timeout.options', options);
    knownKeys('timeout', o, ['until']);
    this.until = oneOf('timeout.until', o?.until, ['end', 'headers'] as const, 'end');
  }
}

/** Fails the request with `TimeoutError` when `ms` elapse before the response ends (or its headers arrive). */
export function timeout(ms: number, options?: TimeoutOptions): TimeoutStage {
  return new TimeoutStage(ms, options);
}
