// An upstream with a capacity knee, on 127.0.0.1: `workers` requests are served at once, each for
// a service time drawn from [serviceMin, serviceMax] ms; the rest wait in the server's own FIFO
// queue, up to `maxQueue`, and beyond it get a 503 at once. It records how long admitted requests
// waited in its queue and how long that queue was, which is what a client-side limit is meant to
// keep short, and how busy its workers were: the share of its real capacity that was used, timers
// running late on a busy machine included. The worker count can change mid-run (the upstream scales down or degrades).

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from './prng.js';

export interface KneeOptions {
  workers: number;
  /** **Default:** `10` */
  serviceMin?: number;
  /** **Default:** `20` */
  serviceMax?: number;
  /** **Default:** `500` */
  maxQueue?: number;
  /** **Default:** `1` */
  seed?: number;
}

export interface KneeStats {
  served: number;
  refused: number;
  /** Queue waits of served requests, ms, in arrival order. */
  waits: number[];
  /** The queue's length seen by each arrival, in arrival order. */
  queueSeen: number[];
  maxQueue: number;
  /** Milliseconds workers spent serving, and worker-milliseconds available, since the last reset. */
  busyMs: number;
  capacityMs: number;
}

export interface KneeUpstream {
  readonly origin: string;
  readonly stats: KneeStats;
  setWorkers(workers: number): void;
  /** Forgets what was recorded so far (a warm-up ends). */
  reset(): void;
  close(): Promise<void>;
}

interface Waiting {
  res: ServerResponse;
  arrivedAt: number;
}

export async function startKneeUpstream(options: KneeOptions): Promise<KneeUpstream> {
  const random = mulberry32(options.seed ?? 1);
  const serviceMin = options.serviceMin ?? 10;
  const serviceMax = options.serviceMax ?? 20;
  const maxQueue = options.maxQueue ?? 500;
  let workers = options.workers;
  let busy = 0;
  const queue: Waiting[] = [];
  let head = 0;
  const fresh = (): KneeStats => ({
    served: 0,
    refused: 0,
    waits: [],
    queueSeen: [],
    maxQueue: 0,
    busyMs: 0,
    capacityMs: 0,
  });
  let stats = fresh();
  // Worker-milliseconds available are added up whenever the worker count changes or is read.
  let countedUntil = performance.now();
  const countCapacity = (): void => {
    const now = performance.now();
    stats.capacityMs += workers * (now - countedUntil);
    countedUntil = now;
  };

  const queued = (): number => queue.length - head;

  const serve = (res: ServerResponse, arrivedAt: number): void => {
    busy++;
    const startedAt = performance.now();
    stats.waits.push(startedAt - arrivedAt);
    setTimeout(
      () => {
        res.end('ok');
        stats.served++;
        stats.busyMs += performance.now() - startedAt;
        busy--;
        next();
      },
      serviceMin + (serviceMax - serviceMin) * random(),
    );
  };

  const next = (): void => {
    while (busy < workers && queued() > 0) {
      const waiting = queue[head++]!;
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head);
        head = 0;
      }
      if (!waiting.res.destroyed) serve(waiting.res, waiting.arrivedAt);
    }
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const length = queued();
    stats.queueSeen.push(length);
    if (length > stats.maxQueue) stats.maxQueue = length;
    if (busy < workers && length === 0) {
      serve(res, performance.now());
    } else if (length < maxQueue) {
      queue.push({ res, arrivedAt: performance.now() });
    } else {
      stats.refused++;
      res.statusCode = 503;
      res.end('full');
    }
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    get stats() {
      countCapacity();
      return stats;
    },
    setWorkers(n: number) {
      countCapacity();
      workers = n;
      next();
    },
    reset() {
      stats = fresh();
      countedUntil = performance.now();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The `q` quantile (0–1) of `values`, or NaN for none. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
