/**
 * The admission interface every stage but retry is built on, and that users implement to write
 * a policy of their own: a gate admits, refuses or holds a request (or an attempt), sees its
 * response headers, and is told once how it ended. It knows nothing of undici.
 */

import { InvalidOptionError } from '../errors.js';

/** What a passage's ending says about the upstream, as a gate hears it in `exit()`. */
export type GateOutcome =
  /** Response headers arrived with a status that is not a failure. */
  | 'success'
  /** A failing status (the retry stage's statuses), a network error or a timeout inside this gate. */
  | 'failure'
  /** Nobody's verdict on the upstream: the caller aborted, an outer timeout fired, a gate refused. */
  | 'neutral';

/**
 * One request (at a gate placed before the retry stage) or one attempt (after it) passing a
 * gate. The same ticket is handed to `enter`, `response` and `exit`; a gate may keep it in its
 * own collections while it waits.
 */
export interface GateTicket {
  /** The isolation key (the origin, unless the pipeline's `key` option says otherwise). */
  readonly key: string;
  /** The request's method, upper case. */
  readonly method: string;
  /**
   * 0 at a gate before the retry stage, which sees the request once; else the attempt, from 1
   * (a pipeline without a retry stage makes one attempt per request).
   */
  readonly attempt: number;
  /**
   * This attempt is a hedge, sent while an earlier one still waits for headers. A gate that would
   * hold it (no free slot) or make it a probe should refuse it instead: a hedge must never queue
   * behind real traffic, and the engine then simply does not send it.
   */
  readonly hedge: boolean;
  /** A request header's value as the caller sent it (`name` in any case); several are joined with `, `. */
  header(name: string): string | undefined;
  /**
   * A response header's value (`name` in lower case) once headers arrived, in `response()`;
   * `undefined` before, or when absent. Several are joined with `, `.
   */
  responseHeader(name: string): string | undefined;
  /** Lets the passage through now or, after `wait()`, later. `permit` comes back to `exit()`. */
  admit(permit?: unknown): void;
  /** Holds the passage until `admit()` or `refuse()`; `cancel()` is called if it leaves first. */
  wait(permit?: unknown): void;
  /** Turns the passage away: the caller (or the retry stage) gets `error`. */
  refuse(error: Error): void;
  /** The response status once headers arrived; 0 before, or when none came. */
  readonly statusCode: number;
  /** What the ending means for the upstream; read it in `response()` and `exit()`. */
  readonly outcome: GateOutcome;
}

/**
 * An admission policy. `enter` must call exactly one of `ticket.admit()`, `ticket.wait()` or
 * `ticket.refuse()`; after a wait, exactly one of `admit()` or `refuse()` follows unless the
 * engine calls `cancel()` first. Every admitted ticket gets exactly one `exit()`, in the reverse
 * order of entry, on every path: response body done, error, timeout, abort, or a response the
 * retry stage discarded.
 */
export interface Gate<P = unknown> {
  enter(ticket: GateTicket): void;
  /** Response headers arrived for an admitted ticket (`ticket.statusCode`, `ticket.outcome`). */
  response?(ticket: GateTicket, permit: P): void;
  /** An admitted ticket's passage ended. */
  exit(ticket: GateTicket, permit: P): void;
  /** A waiting ticket left before being admitted or refused (abort, deadline). */
  cancel?(ticket: GateTicket, permit: P): void;
  /**
   * Asked of every gate a ticket already passed when it leaves a later gate's wait: an error
   * refuses it now (a circuit that opened while the request was queued), `undefined` lets it on.
   */
  recheck?(ticket: GateTicket, permit: P): Error | undefined;
}

/** A user-written gate, as a pipeline stage. */
export class GateStage {
  readonly kind = 'gate';
  readonly gate: Gate;

  constructor(gate: Gate) {
    if (gate === null || typeof gate !== 'object') {
      throw new InvalidOptionError('gate', 'an object with enter() and exit()', gate);
    }
    for (const name of ['enter', 'exit'] as const) {
      if (typeof gate[name] !== 'function')
        throw new InvalidOptionError(`gate.${name}`, 'a function', gate[name]);
    }
    for (const name of ['response', 'cancel', 'recheck'] as const) {
      if (gate[name] !== undefined && typeof gate[name] !== 'function') {
        throw new InvalidOptionError(`gate.${name}`, 'a function or undefined', gate[name]);
      }
    }
    this.gate = gate;
  }
}

/**
 * Makes a pipeline stage of an admission policy of your own. Placed before `retry()` it sees each
 * request once; after it, each attempt.
 */
export function gate<P = unknown>(definition: Gate<P>): GateStage {
  return new GateStage(definition as Gate);
}
