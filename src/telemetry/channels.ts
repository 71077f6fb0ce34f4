/**
 * Breakwater's diagnostics channels (`node:diagnostics_channel`), the way Node libraries report
 * what they do to whoever listens: APM agents, OpenTelemetry instrumentations, loggers. Every
 * publisher checks `hasSubscribers` first, so a channel nobody listens to costs one property read
 * and builds no message. Messages carry keys, origins (scheme://host:port), methods, statuses, error
 * objects, durations and counts: never a URL's path, query or credentials, and never a header value.
 * `requestId` ties the messages of one logical request together (with `attempt`, one attempt's).
 */

import { channel } from 'node:diagnostics_channel';
import type { RequestOutcome, RetryReason } from '../dispatch/observer.js';
import type { CircuitState } from '../errors.js';

/** `breakwater:request:start`: a logical request entered a pipeline, in its caller's context. */
export interface RequestStartMessage {
  /** Unique in the process; the same in every message about this request. */
  requestId: number;
  key: string;
  /** `scheme://host:port` of the request (`unknown` if it has none), never credentials or a path. */
  origin: string;
  method: string;
}

/** `breakwater:request:end`: a logical request settled, as its caller saw it. */
export interface RequestEndMessage {
  requestId: number;
  key: string;
  method: string;
  outcome: RequestOutcome;
  /** The answer's status; absent when the request ended with an error. */
  statusCode?: number;
  error?: Error;
  /** Attempts sent, hedges included. */
  attempts: number;
  durationMs: number;
}

/** `breakwater:attempt:start`: an attempt passed its gates and goes to the dispatcher. */
export interface AttemptStartMessage {
  requestId: number;
  key: string;
  method: string;
  /** 1 for the first attempt. */
  attempt: number;
  hedge: boolean;
}

/** `breakwater:attempt:end`: an attempt got its response headers, or failed before them. */
export interface AttemptEndMessage extends AttemptStartMessage {
  statusCode?: number;
  error?: Error;
  /** From dispatch to the headers (or the failure). */
  durationMs: number;
}

/** `breakwater:retry`: a retry was scheduled. */
export interface RetryMessage {
  requestId: number;
  key: string;
  /** The attempt that failed. */
  attempt: number;
  delayMs: number;
  reason: RetryReason;
}

/** `breakwater:hedge`: a hedge was sent. */
export interface HedgeMessage {
  requestId: number;
  key: string;
  /** The hedge's attempt number. */
  attempt: number;
  /** How long the request had waited for headers. */
  delayMs: number;
}

/** `breakwater:queue:wait`: a request (attempt 0) or an attempt waited at a gate, such as a full bulkhead. */
export interface QueueWaitMessage {
  requestId: number;
  key: string;
  /** 0 for a gate before the retry stage (the request's), else the attempt's number. */
  attempt: number;
  waitedMs: number;
}

/** `breakwater:circuit:state`: a key's circuit changed state. */
export interface CircuitStateMessage {
  key: string;
  from: CircuitState;
  to: CircuitState;
}

/** `breakwater:rejected`: the library turned a request or attempt away itself. */
export interface RejectedMessage {
  key: string;
  reason: 'bulkhead' | 'circuit' | 'rate_limit';
}

/** Gives each request that is published about an id, on first use: nothing is counted unheard. */
let lastRequestId = 0;

export function nextRequestId(): number {
  return ++lastRequestId;
}

export const channels = {
  requestStart: channel('breakwater:request:start'),
  requestEnd: channel('breakwater:request:end'),
  attemptStart: channel('breakwater:attempt:start'),
  attemptEnd: channel('breakwater:attempt:end'),
  retry: channel('breakwater:retry'),
  hedge: channel('breakwater:hedge'),
  queueWait: channel('breakwater:queue:wait'),
  circuitState: channel('breakwater:circuit:state'),
  rejected: channel('breakwater:rejected'),
} as const;
