import { requestHeader } from '../http/headers.js';
import type { Attempt } from './attempt.js';
import type { Exchange } from './exchange.js';
import type { OriginObserver } from './observer.js';
import { Passage, type Step, type TimeoutStep } from './passage.js';
import type { DispatchOptions } from './types.js';

/**
 * A request's passage through the stages listed before the retry stage (after its total
 * deadline): gates it passes once, and any further timeout among them. Made only for a pipeline
 * that has such stages; the exchange hears when they are all passed or one ended the request.
 */
export class RequestGates extends Passage {
  readonly #exchange: Exchange;
  readonly #opts: DispatchOptions;
  /** The attempt whose response is the answer, once headers arrived. */
  #answer: Attempt | null = null;

  constructor(exchange: Exchange, steps: readonly Step[], opts: DispatchOptions, now: number) {
    super(steps);
    this.#exchange = exchange;
    this.#opts = opts;
    this.time = now;
  }

  get key(): string {
    return this.#exchange.key;
  }

  get method(): string {
    return this.#exchange.method;
  }

  get requestId(): number {
    return this.#exchange.requestId;
  }

  /** A gate before the retry stage sees the request, not an attempt. */
  get attempt(): number {
    return 0;
  }

  get hedge(): boolean {
    return false;
  }

  get observer(): OriginObserver | undefined {
    return this.#exchange.observer;
  }

  protected get failureStatus(): readonly boolean[] {
    return this.#exchange.failureStatus;
  }

  header(name: string): string | undefined {
    return requestHeader(this.#opts.headers, name);
  }

  start(): void {
    this.proceed();
  }

  responseHeader(name: string): string | undefined {
    return this.#answer?.responseHeader(name);
  }

  /** The answer's headers arrived (at `now`): the gates hear them. */
  respond(answer: Attempt, statusCode: number, now: number): void {
    this.#answer = answer;
    this.responded(statusCode, now);
  }

  /** The request ended: every gate lets go, with what `error` (at step `atStep`) means to it. */
  release(error: Error | null, atStep: number): void {
    this.ended = true;
    this.releaseSteps(error, atStep);
  }

  protected timeoutMs(step: TimeoutStep): number {
    return this.#exchange.timeoutMs(step, this.time);
  }

  protected passed(): void {
    this.#exchange.gatesPassed(this.time);
  }

  protected fail(error: Error, atStep: number): void {
    this.#exchange.gatesFailed(error, atStep);
  }
}
