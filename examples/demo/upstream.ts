/**
 * The embedded upstream: a real HTTP server on 127.0.0.1 whose faults are real — 503s and 429s
 * with Retry-After headers, connections reset with TCP RST, responses that take seconds. It
 * counts what it received and what it executed, so the table reports what the server saw.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type FaultProfile, FaultScript } from './profiles.js';

/** Requests the embedded upstream works on at once; the rest wait in its accept queue. */
export const UPSTREAM_WORKERS = 10;

export interface UpstreamOptions {
  profile: FaultProfile;
  seed: number;
  /** Logical requests the job will make: places the mid-run outage. */
  expectedRequests: number;
  /** Requests the upstream works on at once; the rest wait in its accept queue. */
  workers: number;
}

/** What the upstream saw during one run. */
export interface UpstreamStats {
  /** Every request that reached the server, retries included. */
  requests: number;
  /** Requests whose work was done (the handler ran), whatever happened to the response. */
  executed: number;
  /** Logical POSTs (by `x-request-id`) whose work was done more than once. */
  postsExecutedTwice: number;
  /** How requests were answered: `200`, `503`, `429`, `reset`, `outage-503`, `outage-reset`, `client-gone`. */
  answers: Record<string, number>;
}

export class Upstream {
  readonly url: string;
  readonly #server: Server;
  readonly #profile: FaultProfile;
  readonly #script: FaultScript;
  readonly #workers: Workers;
  readonly #outageAt: number;
  readonly #startedAt = performance.now();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #postExecutions = new Map<string, number>();
  readonly #answers: Record<string, number> = {};
  #requests = 0;
  #executed = 0;
  #outageStartedAt = -1;
  #rateWindow = -1;
  #rateCount = 0;

  private constructor(server: Server, url: string, options: UpstreamOptions) {
    this.#server = server;
    this.url = url;
    this.#profile = options.profile;
    this.#script = new FaultScript(options.profile, options.seed);
    this.#workers = new Workers(options.workers);
    const outage = options.profile.outage;
    this.#outageAt =
      outage === undefined ? -1 : Math.max(1, Math.floor(outage.atShare * options.expectedRequests));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res));
  }

  /** Starts a fresh upstream (its own port, counters and fault script) on 127.0.0.1. */
  static async start(options: UpstreamOptions): Promise<Upstream> {
    const server = createServer({ keepAliveTimeout: 10_000 });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    return new Upstream(server, `http://127.0.0.1:${port}`, options);
  }

  stats(): UpstreamStats {
    let twice = 0;
    for (const count of this.#postExecutions.values()) if (count > 1) twice++;
    return {
      requests: this.#requests,
      executed: this.#executed,
      postsExecutedTwice: twice,
      answers: { ...this.#answers },
    };
  }

  /** Stops listening, drops every connection and clears every timer. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    // Decided on arrival, in arrival order: request number n meets the same fault in every run.
    const { fault, outage } = this.#script.next();
    const seq = ++this.#requests;
    req.resume(); // the body's content does not matter; reading it keeps the connection usable

    if (this.#rateLimited()) {
      this.#reply(res, 429, '429', { 'retry-after': '1' });
      return;
    }
    if (this.#inOutage(seq)) {
      if (outage.kind === 'unavailable') {
        this.#reply(res, 503, 'outage-503', {
          'retry-after': String(outage.retryAfter),
        });
      } else {
        this.#count('outage-reset');
        req.socket.resetAndDestroy();
      }
      return;
    }
    if (fault.kind === 'unavailable') {
      this.#reply(res, 503, '503', { 'retry-after': String(fault.retryAfter) });
      return;
    }

    let holding = false;
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      finished = true;
      if (timer !== undefined) this.#timers.delete(timer);
      if (holding) this.#workers.release();
      holding = false;
    };
    const cancelWait = this.#workers.acquire(() => {
      holding = true;
      this.#execute(req);
      timer = setTimeout(() => {
        finish();
        if (fault.kind === 'reset-after-work') {
          // The work is done, the answer is lost: the case that makes a blind retry run a POST twice.
          this.#count('reset');
          req.socket.resetAndDestroy();
        } else {
          this.#reply(res, 200, '200', { 'content-type': 'application/json' }, `{"ok":true,"seq":${seq}}`);
        }
      }, fault.ms);
      this.#timers.add(timer);
    });
    // A client that gave up (an attempt timeout) frees its worker, as a server noticing the
    // closed connection would. Work already done stays done.
    res.once('close', () => {
      if (finished) return;
      cancelWait();
      if (timer !== undefined) clearTimeout(timer);
      this.#count('client-gone');
      finish();
    });
  }

  #execute(req: IncomingMessage): void {
    this.#executed++;
    if (req.method !== 'POST') return;
    const id = req.headers['x-request-id'];
    if (typeof id !== 'string') return;
    this.#postExecutions.set(id, (this.#postExecutions.get(id) ?? 0) + 1);
  }

  #inOutage(seq: number): boolean {
    const outage = this.#profile.outage;
    if (outage === undefined) return false;
    if (this.#outageStartedAt < 0) {
      if (seq < this.#outageAt) return false;
      this.#outageStartedAt = performance.now();
    }
    return performance.now() - this.#outageStartedAt < outage.ms;
  }

  #rateLimited(): boolean {
    const limit = this.#profile.rateLimit;
    if (limit === undefined) return false;
    const window = Math.floor((performance.now() - this.#startedAt) / 1_000);
    if (window !== this.#rateWindow) {
      this.#rateWindow = window;
      this.#rateCount = 0;
    }
    return ++this.#rateCount > limit.perSecond;
  }

  #reply(
    res: ServerResponse,
    status: number,
    answer: string,
    headers: Record<string, string>,
    body = '',
  ): void {
    this.#count(answer);
    res.writeHead(status, {
      ...headers,
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  #count(answer: string): void {
    this.#answers[answer] = (this.#answers[answer] ?? 0) + 1;
  }
}

/** The upstream's worker pool: at most `size` requests worked on at once, the rest wait in order. */
class Workers {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Runs `work` when a worker is free; returns a function that cancels the wait. */
  acquire(work: () => void): () => void {
    if (this.#free > 0) {
      this.#free--;
      work();
      return noop;
    }
    this.#waiting.push(work);
    return () => {
      const i = this.#waiting.indexOf(work);
      if (i !== -1) this.#waiting.splice(i, 1);
    };
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#free++;
    else next();
  }
}

function noop(): void {}
