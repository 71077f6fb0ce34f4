/*
 * `openTelemetryTracing()`: a CLIENT span per attempt, as a child of the span that was active when
 * the caller dispatched the request. It listens on Breakwater's diagnostics channels, the way
 * OpenTelemetry's instrumentations listen on undici's, so no pipeline has to be told about it.
 * Waits are events, not spans: a backoff is an event on the attempt that follows it, a wait for a
 * bulkhead slot an event on the attempt that waited (a wait before the retry stage goes on the
 * first attempt).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  type Attributes,
  type Context,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { InvalidOptionError } from '../errors.js';
import { knownKeys, optionalObject } from '../internal/validate.js';
import type {
  AttemptEndMessage,
  AttemptStartMessage,
  QueueWaitMessage,
  RequestEndMessage,
  RequestStartMessage,
  RetryMessage,
} from '../telemetry/channels.js';
import { errorType, methodAttributes, serverAttributes } from './attributes.js';

export interface OpenTelemetryTracingOptions {
  /**
   * Where the spans are made.
   * @default the global tracer provider (spans go to whichever provider is registered when they start)
   */
  tracerProvider?: TracerProvider;
}

/** What `openTelemetryTracing()` returns: the subscription to the diagnostics channels. */
export interface OpenTelemetryTracing {
  /** Stops making spans: unsubscribes, and ends the spans still open. */
  disable(): void;
}

const SCOPE = 'breakwater';
/**
 * Requests followed at once. Every request that starts also ends, and its state goes then; the
 * bound only keeps a request whose end was never published from holding memory for good.
 */
const MAX_REQUESTS = 100_000;

/** A wait that happened before the attempt it belongs to started. */
interface PendingEvent {
  readonly name: string;
  readonly attributes: Attributes;
  /** The attempt it goes on; 0 for the next attempt that starts. */
  readonly attempt: number;
}

/** What is known of one logical request between its start and its end. */
interface RequestState {
  readonly parent: Context;
  readonly server: Attributes;
  readonly spans: Map<number, Span>;
  pending: PendingEvent[] | null;
}

class Tracing implements OpenTelemetryTracing {
  readonly #tracer: Tracer;
  readonly #requests = new Map<number, RequestState>();
  readonly #listeners: Array<[string, (message: unknown) => void]>;

  constructor(tracer: Tracer) {
    this.#tracer = tracer;
    this.#listeners = [
      ['breakwater:request:start', (m) => this.#requestStart(m as RequestStartMessage)],
      ['breakwater:attempt:start', (m) => this.#attemptStart(m as AttemptStartMessage)],
      ['breakwater:attempt:end', (m) => this.#attemptEnd(m as AttemptEndMessage)],
      ['breakwater:retry', (m) => this.#retry(m as RetryMessage)],
      ['breakwater:queue:wait', (m) => this.#queueWait(m as QueueWaitMessage)],
      ['breakwater:request:end', (m) => this.#requestEnd(m as RequestEndMessage)],
    ];
    for (const [name, listener] of this.#listeners) subscribe(name, listener);
  }

  disable(): void {
    for (const [name, listener] of this.#listeners) unsubscribe(name, listener);
    for (const state of this.#requests.values()) for (const span of state.spans.values()) span.end();
    this.#requests.clear();
  }

  #requestStart(m: RequestStartMessage): void {
    if (this.#requests.size >= MAX_REQUESTS) this.#forgetOldest();
    // Published inside the caller's dispatch(): the active context is the caller's.
    this.#requests.set(m.requestId, {
      parent: context.active(),
      server: serverAttributes(m.origin),
      spans: new Map(),
      pending: null,
    });
  }

  #forgetOldest(): void {
    for (const [id, state] of this.#requests) {
      this.#requests.delete(id);
      for (const span of state.spans.values()) span.end();
      return;
    }
  }

  #attemptStart(m: AttemptStartMessage): void {
    const state = this.#requests.get(m.requestId);
    // A request that started before this subscription has no parent to hang spans on.
    if (state === undefined) return;
    const attributes = methodAttributes(m.method, { ...state.server });
    if (m.attempt > 1) attributes['http.request.resend_count'] = m.attempt - 1;
    if (m.hedge) attributes['breakwater.attempt.hedge'] = true;
    const span = this.#tracer.startSpan(
      attributes['http.request.method'] === '_OTHER' ? 'HTTP' : String(attributes['http.request.method']),
      { kind: SpanKind.CLIENT, attributes },
      state.parent,
    );
    state.spans.set(m.attempt, span);
    const pending = state.pending;
    if (pending !== null) {
      state.pending = pending.filter((e) => {
        if (e.attempt !== 0 && e.attempt !== m.attempt) return true;
        // A hedge is not what a backoff waited for, nor what waited for the request's gates.
        if (e.attempt === 0 && m.hedge) return true;
        span.addEvent(e.name, e.attributes);
        return false;
      });
      if (state.pending.length === 0) state.pending = null;
    }
  }

  #attemptEnd(m: AttemptEndMessage): void {
    const state = this.#requests.get(m.requestId);
    const span = state?.spans.get(m.attempt);
    if (state === undefined || span === undefined) return;
    state.spans.delete(m.attempt);
    if (m.statusCode !== undefined) span.setAttribute('http.response.status_code', m.statusCode);
    const type = errorType(m.statusCode, m.error);
    if (type !== undefined) {
      span.setAttribute('error.type', type);
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }

  #retry(m: RetryMessage): void {
    this.#pend(m.requestId, {
      name: 'breakwater.backoff',
      attributes: { 'breakwater.backoff.duration': m.delayMs / 1000, 'breakwater.retry.reason': m.reason },
      attempt: 0,
    });
  }

  #queueWait(m: QueueWaitMessage): void {
    this.#pend(m.requestId, {
      name: 'breakwater.queue.wait',
      attributes: { 'breakwater.queue.wait.duration': m.waitedMs / 1000 },
      attempt: m.attempt,
    });
  }

  #pend(requestId: number, event: PendingEvent): void {
    const state = this.#requests.get(requestId);
    if (state === undefined) return;
    if (state.pending === null) state.pending = [event];
    else state.pending.push(event);
  }

  #requestEnd(m: RequestEndMessage): void {
    const state = this.#requests.get(m.requestId);
    if (state === undefined) return;
    this.#requests.delete(m.requestId);
    // Attempts still open when the caller has its answer (a hedge that lost, an attempt whose
    // failure was not reported) end with the request.
    for (const span of state.spans.values()) {
      span.setAttribute('breakwater.attempt.abandoned', true);
      span.end();
    }
  }
}

/**
 * Makes a CLIENT span per attempt under the caller's active span, with `http.request.resend_count`
 * on every attempt after the first, for every pipeline in the process. Returns a handle whose
 * `disable()` stops it.
 */
export function openTelemetryTracing(options: OpenTelemetryTracingOptions = {}): OpenTelemetryTracing {
  const o = optionalObject('openTelemetryTracing', options);
  knownKeys('openTelemetryTracing', o, ['tracerProvider']);
  const provider = o?.tracerProvider as TracerProvider | undefined;
  if (provider !== undefined && typeof provider?.getTracer !== 'function') {
    throw new InvalidOptionError(
      'openTelemetryTracing.tracerProvider',
      'an OpenTelemetry TracerProvider',
      provider,
    );
  }
  return new Tracing(provider === undefined ? trace.getTracer(SCOPE) : provider.getTracer(SCOPE));
}
