// Shared machinery of the reliability suite: run one logical request the way a caller does (body
// read to the end or discarded, time measured to the last byte), count what the client opened,
// watch the process for warnings and unhandled rejections, and check what must hold once
// everything is closed.

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Agent, buildConnector, type Dispatcher, request } from 'undici';
import type { ResilienceInterceptor } from '../../src/index.js';
import { type CapturedWarnings, captureWarnings } from '../helpers/signals.js';
import type { Upstream } from '../helpers/upstream.js';

/** Collects process warnings and unhandled rejections until disposed. */
export class ProcessGuard {
  readonly rejections: unknown[] = [];
  readonly #warnings: CapturedWarnings;
  readonly #onRejection = (reason: unknown): void => {
    this.rejections.push(reason);
  };

  constructor() {
    this.#warnings = captureWarnings();
    process.on('unhandledRejection', this.#onRejection);
  }

  get warnings(): readonly Error[] {
    return this.#warnings.warnings;
  }

  /** Lets pending warnings and rejections surface (both are emitted a tick or two late), then asserts none came. */
  async assertClean(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(
      this.warnings.map((w) => `${w.name}: ${w.message}`),
      [],
      'no process warning',
    );
    assert.deepEqual(
      this.rejections.map((r) => String((r as Error)?.stack ?? r)),
      [],
      'no unhandled rejection',
    );
  }

  dispose(): void {
    this.#warnings.dispose();
    process.off('unhandledRejection', this.#onRejection);
  }
}

/** How one logical request ended, as its caller saw it. */
export interface Outcome {
  /** Status of the response handed to the caller, when one was. */
  status?: number;
  /** The error that ended the request: before headers, or while the body was read. */
  error?: unknown;
  /** True when the error came while reading the body (headers had been received). */
  inBody: boolean;
  /** Body bytes received. */
  bytes: number;
  /** Milliseconds from the call to the last byte or the error. */
  ms: number;
  /** `performance.now()` of the call. */
  startedAt: number;
}

export type RequestOptions = NonNullable<Parameters<typeof request>[1]> & {
  /** Per-request overrides of the pipeline. */
  breakwater?: Record<string, unknown>;
};

/**
 * Runs `request(url, opts)` and reads the body to its end, discarding it (so even an endless body
 * costs no memory here). Never rejects: the outcome says what happened and when.
 */
export async function exchange(url: string, opts: RequestOptions): Promise<Outcome> {
  const started = performance.now();
  let status: number | undefined;
  let bytes = 0;
  try {
    const res = await request(url, opts);
    status = res.statusCode;
    try {
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
    } catch (error) {
      return { status, error, inBody: true, bytes, ms: performance.now() - started, startedAt: started };
    }
    return { status, inBody: false, bytes, ms: performance.now() - started, startedAt: started };
  } catch (error) {
    return { error, inBody: false, bytes, ms: performance.now() - started, startedAt: started };
  }
}

/**
 * Records when this process's event loop stalled (a 1 ms ticker that ran late), so a timing
 * assertion can tell the pipeline being late from the process not being scheduled: on a shared
 * 2-core machine another program can take the CPU for hundreds of milliseconds, and no timer of
 * anyone's fires meanwhile. An assertion allows `bound + stalledDuring(from, to)`. The pipeline's
 * own synchronous work also shows up as a stall, which is why the overload test bounds the event
 * loop delay separately.
 */
export class StallRecorder {
  readonly #stalls: Array<[from: number, to: number]> = [];
  #last = performance.now();
  readonly #timer: NodeJS.Timeout;

  constructor() {
    this.#timer = setInterval(() => {
      const now = performance.now();
      if (now - this.#last > 5) this.#stalls.push([this.#last, now]);
      this.#last = now;
    }, 1);
    this.#timer.unref();
  }

  /** Milliseconds of stalls (beyond the ticker's own period) overlapping `[from, to]`. */
  stalledDuring(from: number, to: number): number {
    let total = 0;
    for (const [a, b] of this.#stalls) {
      const overlap = Math.min(b, to) - Math.max(a, from);
      if (overlap > 0) total += Math.max(0, overlap - 1);
    }
    return total;
  }

  dispose(): void {
    clearInterval(this.#timer);
  }
}

/** `error.code`, or the name, of whatever ended a request, looking through `cause`. */
export function errorLabel(error: unknown): string {
  let current = error as { code?: unknown; name?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; depth < 5 && current; depth++) {
    if (typeof current.code === 'string') return current.code;
    if (current.cause === undefined) return String(current.name);
    current = current.cause as typeof current;
  }
  return String((error as Error)?.name ?? error);
}

/**
 * Codes and names a request may legitimately end with under the faults this suite injects: the
 * library's own decisions, the caller's abort, and the network errors undici reports. Anything
 * else (a TypeError, an assertion of undici's) is a bug somewhere.
 */
export const EXPECTED_ERRORS: ReadonlySet<string> = new Set([
  'BREAKWATER_TIMEOUT',
  'BREAKWATER_CIRCUIT_OPEN',
  'BREAKWATER_BULKHEAD_REJECTED',
  'AbortError',
  'UND_ERR_ABORTED',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'UND_ERR_SOCKET',
]);

/**
 * A connector for undici's `Agent({ connect })` that records every socket it opens, so a test can
 * prove the client side closed them all. `delayMs` holds each connection attempt back before it
 * starts (the "connecting" phase, which loopback otherwise skips in microseconds).
 */
export class TrackingConnector {
  /** Sockets opened and not yet closed (a closed one is forgotten, so none is kept alive here). */
  readonly #sockets = new Set<Socket>();
  /** Sockets opened in all. */
  opened = 0;
  /** Connection attempts still held back by `delayMs`. */
  pending = 0;
  readonly #base = buildConnector({});
  readonly #delayMs: number;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(delayMs = 0) {
    this.#delayMs = delayMs;
  }

  readonly connect: buildConnector.connector = (options, callback) => {
    const open = (): void => {
      this.#base(options, (error, socket) => {
        if (socket) {
          const s = socket as Socket;
          this.opened++;
          this.#sockets.add(s);
          s.once('close', () => this.#sockets.delete(s));
        }
        // undici's callback signature is a union; the base connector already honours it.
        (callback as (e: Error | null, s: unknown) => void)(error, socket);
      });
    };
    if (this.#delayMs === 0) {
      open();
      return;
    }
    this.pending++;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.pending--;
      open();
    }, this.#delayMs);
    this.#timers.add(timer);
  };

  /** Client sockets not yet destroyed. */
  open(): number {
    let n = 0;
    for (const s of this.#sockets) if (!s.destroyed) n++;
    return n;
  }

  /** Cancels held-back connection attempts (their requests were settled long ago). */
  dispose(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

/** An Agent whose sockets are tracked. */
export function trackedAgent(connectDelayMs = 0): { agent: Agent; connector: TrackingConnector } {
  const connector = new TrackingConnector(connectDelayMs);
  return { agent: new Agent({ connect: connector.connect }), connector };
}

/** Every key of the pipeline has nothing in flight and nothing queued. */
export function assertIdle(interceptor: ResilienceInterceptor): void {
  for (const [key, h] of Object.entries(interceptor.health())) {
    assert.equal(h.inFlight, 0, `${key}: nothing in flight`);
    assert.equal(h.queued, 0, `${key}: nothing queued`);
  }
}

/**
 * Closes the pipeline and the dispatcher, then checks that nothing is left: the pipeline idle,
 * no client socket open, and the upstream sees every socket closed (by the client: the upstream
 * itself is still running).
 */
export async function closeAndCheck(
  interceptor: ResilienceInterceptor,
  dispatcher: Dispatcher,
  upstream: Upstream | null,
  connector?: TrackingConnector,
): Promise<void> {
  await interceptor.close();
  await dispatcher.close();
  assertIdle(interceptor);
  if (connector !== undefined) {
    // A destroyed socket flags itself at once; give the close a turn to propagate anyway.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(connector.open(), 0, 'no client socket left open');
    connector.dispose();
  }
  if (upstream !== null) await upstream.waitForSocketsClosed(1_000);
}

/** Tears a dispatcher down whatever state a failed test left it in, so later tests start clean. */
export async function destroyQuietly(dispatcher: Dispatcher): Promise<void> {
  try {
    await dispatcher.destroy();
  } catch {
    // Already closed or destroyed.
  }
}

/** Counts, per `x-request-id`, how many times the upstream executed a request. */
export function executions(upstream: Upstream): Map<string, number> {
  const counts = new Map<string, number>();
  for (const req of upstream.requests) {
    const id = req.headers['x-request-id'];
    if (typeof id === 'string') counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

let gcFn: (() => void) | undefined;

/** `global.gc`, made available without `--expose-gc` on the command line. */
export function gc(): void {
  if (gcFn === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (typeof exposed === 'function') gcFn = exposed;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    }
  }
  gcFn();
}

/** Heap used after two full collections, in bytes. */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 2; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  gc();
  return process.memoryUsage().heapUsed;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let nextId = 0;
const ID_SUFFIX = `-${process.pid}`;
/** A unique request id for the `x-request-id` header, ending with this process's pid. */
export const requestId = (): string => `r${++nextId}${ID_SUFFIX}`;

/**
 * Requests the upstream received from this process (tagged by {@link requestId}). On a shared
 * machine a port freed by one program may be taken by another's upstream while some client still
 * aims at it; counting only our own tags keeps such strays out of the assertions.
 */
export function ownRequests(upstream: Upstream): number {
  let n = 0;
  for (const req of upstream.requests) {
    const id = req.headers['x-request-id'];
    if (typeof id === 'string' && id.endsWith(ID_SUFFIX)) n++;
  }
  return n;
}
