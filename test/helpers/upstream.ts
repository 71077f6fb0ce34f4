// The project's real test upstream: a fault-injecting HTTP/1.1 server on 127.0.0.1 that records
// exactly what it received, so tests assert on the wire (attempts, bodies, connections,
// concurrency, who closed a socket) instead of on mocks. Loopback only, port 0, keep-alive on.

import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { mulberry32 } from './prng.js';

/** Answer normally: status, headers and a body, optionally after a delay. */
export interface RespondBehaviour {
  kind: 'respond';
  /** Response status, 200–599. **Default:** `200` */
  status?: number;
  /** Extra response headers; an array sends the header once per value (e.g. `set-cookie`). */
  headers?: Readonly<Record<string, string | readonly string[]>>;
  /** Response body; `content-length` is set from it. **Default:** `''` */
  body?: string | Buffer;
  /** Milliseconds to wait, after the request body was read, before sending the headers. **Default:** `0` */
  delayMs?: number;
}

/** Read the request and never answer; the socket stays open until the client or `close()` closes it. */
export interface HangBehaviour {
  kind: 'hang';
}

/** Destroy the socket before any response byte, with a TCP RST (`socket.resetAndDestroy()`). */
export interface ResetBehaviour {
  kind: 'reset';
}

/**
 * Send the headers, announcing a `content-length` larger than what follows, then the partial
 * body, then reset the socket: the client sees a response whose body fails.
 */
export interface ResetMidBodyBehaviour {
  kind: 'reset-mid-body';
  /** **Default:** `200` */
  status?: number;
  /** The bytes actually sent before the reset. */
  body: string | Buffer;
  /** The announced length; must exceed the byte length of `body`. **Default:** byte length of `body` + 1 */
  contentLength?: number;
  /**
   * Milliseconds between the partial body reaching the kernel and the reset, so the client has
   * parsed the headers before the RST arrives (on loopback an RST can overtake unread data).
   * **Default:** `20`
   */
  resetAfterMs?: number;
}

/**
 * Send the headers at once (chunked encoding), then one chunk every `intervalMs`. With `count`
 * the response ends after that many chunks; without it the trickle is endless and stops only
 * when the socket closes (its timer is cleared then).
 */
export interface TrickleBehaviour {
  kind: 'trickle';
  /** **Default:** `200` */
  status?: number;
  /** **Default:** `'x'` */
  chunk?: string;
  /** Milliseconds between chunks; the first chunk comes one interval after the headers. */
  intervalMs: number;
  /** Chunks to send before ending the response. **Default:** endless */
  count?: number;
}

/**
 * Answer with keep-alive semantics (no `connection: close`), then destroy the socket as soon as
 * the response has been flushed, so a client that reuses the connection races a dead socket.
 */
export interface CloseAfterResponseBehaviour {
  kind: 'close-after-response';
  /** **Default:** `200` */
  status?: number;
  /** **Default:** `''` */
  body?: string;
  /**
   * Milliseconds between the response being flushed and the socket being destroyed; a client
   * that sends its next request on the socket around then races the close. **Default:** `0`
   */
  closeDelayMs?: number;
}

/**
 * Send the headers (chunked encoding), then an endless body as fast as the client reads it:
 * each chunk is written only once the previous one drained, so the server itself never buffers
 * more than one chunk and whatever piles up does so on the client's side. Stops only when the
 * socket closes. The bytes written are counted in {@link Upstream.floodedBytes}.
 */
export interface FloodBehaviour {
  kind: 'flood';
  /** **Default:** `200` */
  status?: number;
  /** Extra response headers. */
  headers?: Readonly<Record<string, string>>;
  /** Bytes per chunk, 1–1 MiB. **Default:** `16384` */
  chunkSize?: number;
}

/** What the upstream does with one request. */
export type Behaviour =
  | RespondBehaviour
  | HangBehaviour
  | ResetBehaviour
  | ResetMidBodyBehaviour
  | TrickleBehaviour
  | CloseAfterResponseBehaviour
  | FloodBehaviour;

/**
 * How the upstream chooses a behaviour: one for every request; an array, where the i-th request
 * since the script was set (or since `reset()`) gets `behaviours[i]` and later ones get the
 * last; or a function of the received request.
 */
export type Script = Behaviour | readonly Behaviour[] | ((req: ReceivedRequest) => Behaviour);

/** One request as the server received it (headers and the complete body). */
export interface ReceivedRequest {
  /** 0-based position in {@link Upstream.requests}: the order in which requests were fully received. */
  index: number;
  method: string;
  /** The request target as sent, query string included. */
  path: string;
  headers: IncomingHttpHeaders;
  /** The whole request body, read before the behaviour ran. */
  body: Buffer;
  /** The TCP connection it arrived on: 1-based in accept order, unique for the server's lifetime (not restarted by `reset()`). */
  connectionId: number;
  /** `performance.now()` when its headers arrived. */
  receivedAt: number;
}

/** A running fault-injecting upstream. Every counter reflects what happened on the server side. */
export interface Upstream {
  /** `'http://127.0.0.1:PORT'` */
  readonly origin: string;
  readonly port: number;
  /** `origin + path`. **Default path:** `'/'` */
  url(path?: string): string;
  /** Every request fully received since start or the last `reset()`, in order. */
  readonly requests: ReceivedRequest[];
  /** How many received requests match `filter` (method compared case-insensitively, path exactly). */
  count(filter?: { method?: string; path?: string }): number;
  /** TCP connections accepted since start or the last `reset()`. */
  readonly connections: number;
  /** Server-side sockets open right now. */
  openSockets(): number;
  /**
   * The `connectionId`s of the sockets open right now, ascending. Lets a test prove that the
   * connection a request used was closed even when the client has since opened another one.
   */
  openConnectionIds(): number[];
  /**
   * The highest number of requests (received since start or the last `reset()`) being handled at
   * the same time. A request is in flight from the moment its headers arrive until its response
   * has finished or its socket has closed.
   */
  readonly maxConcurrent: number;
  /** Requests in flight right now (whenever they arrived). */
  inFlight(): number;
  /**
   * Requests (since start or the last `reset()`) whose socket the client closed or reset before
   * the server finished answering. Sockets the server itself destroys (`reset`, `reset-mid-body`,
   * `close-after-response`, `close()`) never count.
   */
  readonly closedByClient: number;
  /** Errors thrown by a script function or invalid behaviours it returned; such requests get a 500. */
  readonly errors: readonly Error[];
  /** Behaviour timers (delays, trickles, pending resets) currently scheduled. */
  activeTimers(): number;
  /** Body bytes written by `flood` behaviours since start or the last `reset()`. */
  readonly floodedBytes: number;
  /**
   * Resolves as soon as `predicate(this)` holds (checked now and after every server-side event);
   * rejects after `timeoutMs` or when the upstream closes first. The timeout timer is not
   * unref'd, so a test waiting here cannot exit silently. **Default timeout:** `2000`
   */
  waitFor(predicate: (upstream: Upstream) => boolean, timeoutMs?: number): Promise<void>;
  /** Resolves when `openSockets() === 0`; rejects after `timeoutMs`. **Default:** `2000` */
  waitForSocketsClosed(timeoutMs?: number): Promise<void>;
  /** Resolves when at least `n` requests were received; rejects after `timeoutMs`. **Default:** `2000` */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /** Resolves when `closedByClient >= n`; rejects after `timeoutMs`. **Default:** `2000` */
  waitForClosedByClient(n: number, timeoutMs?: number): Promise<void>;
  /** Replaces the script for requests received from now on (an array starts again at its first entry). Throws on an invalid behaviour. */
  setScript(script: Script): void;
  /**
   * Clears `requests`, `connections`, `maxConcurrent`, `closedByClient`, `errors` and the array
   * script position. Open sockets and requests in flight are left alone (they no longer count).
   */
  reset(): void;
  /** Stops listening, destroys every socket, clears every timer. Idempotent. */
  close(): Promise<void>;
}

const DEFAULT_WAIT_MS = 2_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
const DEFAULT_RESET_AFTER_MS = 20;

interface Connection {
  readonly id: number;
  readonly socket: Socket;
  /** Behaviour timers on this socket, cleared when it closes. */
  readonly timers: Set<NodeJS.Timeout>;
  readonly exchanges: Set<Exchange>;
  /** Set before the server destroys the socket itself, so its close is not blamed on the client. */
  closedByServer: boolean;
}

interface Exchange {
  readonly epoch: number;
  readonly connection: Connection;
  done: boolean;
}

interface Waiter {
  readonly predicate: (upstream: Upstream) => boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

const toBuffer = (body: string | Buffer | undefined): Buffer =>
  body === undefined ? Buffer.alloc(0) : typeof body === 'string' ? Buffer.from(body) : body;

const isInteger = (value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;

const isDuration = (value: unknown): value is number =>
  typeof value === 'number' && Number.isFinite(value) && value >= 0;

function checkStatus(status: unknown, kind: string): void {
  if (status !== undefined && !isInteger(status, 200, 599)) {
    throw new RangeError(`${kind}: status must be an integer in 200–599, got ${String(status)}`);
  }
}

/** Throws a descriptive error when `behaviour` cannot be performed. */
function validateBehaviour(behaviour: Behaviour): void {
  if (behaviour === null || typeof behaviour !== 'object') {
    throw new TypeError(`behaviour must be an object, got ${String(behaviour)}`);
  }
  switch (behaviour.kind) {
    case 'respond':
      checkStatus(behaviour.status, behaviour.kind);
      if (behaviour.delayMs !== undefined && !isDuration(behaviour.delayMs)) {
        throw new RangeError(
          `respond: delayMs must be a finite number >= 0, got ${String(behaviour.delayMs)}`,
        );
      }
      return;
    case 'hang':
    case 'reset':
      return;
    case 'reset-mid-body': {
      checkStatus(behaviour.status, behaviour.kind);
      const sent = toBuffer(behaviour.body).length;
      if (behaviour.contentLength !== undefined && !isInteger(behaviour.contentLength, sent + 1)) {
        throw new RangeError(
          `reset-mid-body: contentLength must be an integer > ${sent} (the body's byte length), got ${String(behaviour.contentLength)}`,
        );
      }
      if (behaviour.resetAfterMs !== undefined && !isDuration(behaviour.resetAfterMs)) {
        throw new RangeError(`reset-mid-body: resetAfterMs must be a finite number >= 0`);
      }
      return;
    }
    case 'trickle':
      checkStatus(behaviour.status, behaviour.kind);
      if (!isDuration(behaviour.intervalMs) || behaviour.intervalMs < 1) {
        throw new RangeError(
          `trickle: intervalMs must be a finite number >= 1, got ${String(behaviour.intervalMs)}`,
        );
      }
      if (behaviour.count !== undefined && !isInteger(behaviour.count, 0)) {
        throw new RangeError(`trickle: count must be an integer >= 0, got ${String(behaviour.count)}`);
      }
      return;
    case 'close-after-response':
      checkStatus(behaviour.status, behaviour.kind);
      if (behaviour.closeDelayMs !== undefined && !isDuration(behaviour.closeDelayMs)) {
        throw new RangeError(
          `close-after-response: closeDelayMs must be a finite number >= 0, got ${String(behaviour.closeDelayMs)}`,
        );
      }
      return;
    case 'flood':
      checkStatus(behaviour.status, behaviour.kind);
      if (behaviour.chunkSize !== undefined && !isInteger(behaviour.chunkSize, 1, 1 << 20)) {
        throw new RangeError(
          `flood: chunkSize must be an integer in 1–1048576, got ${String(behaviour.chunkSize)}`,
        );
      }
      return;
    default:
      throw new TypeError(
        `unknown behaviour kind: ${JSON.stringify((behaviour as { kind?: unknown }).kind)}`,
      );
  }
}

function validateScript(script: Script): void {
  if (typeof script === 'function') return;
  if (Array.isArray(script)) {
    if (script.length === 0) throw new RangeError('a script array needs at least one behaviour');
    for (const behaviour of script) validateBehaviour(behaviour);
    return;
  }
  validateBehaviour(script as Behaviour);
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

class ScriptedUpstream implements Upstream {
  readonly origin: string;
  readonly port: number;
  readonly #server: ReturnType<typeof createServer>;
  #script: Script;
  #position = 0;
  #requests: ReceivedRequest[] = [];
  #errors: Error[] = [];
  /** Incremented by `reset()`; exchanges from an older epoch no longer count. */
  #epoch = 0;
  #connectionsSinceReset = 0;
  #lastConnectionId = 0;
  readonly #open = new Map<Socket, Connection>();
  #inFlightTotal = 0;
  #inFlightEpoch = 0;
  #maxConcurrent = 0;
  #closedByClient = 0;
  #floodedBytes = 0;
  readonly #waiters = new Set<Waiter>();
  #closing: Promise<void> | undefined;

  constructor(server: ReturnType<typeof createServer>, port: number, script: Script) {
    this.#server = server;
    this.port = port;
    this.origin = `http://127.0.0.1:${port}`;
    this.#script = script;
    server.on('connection', (socket: Socket) => this.#onConnection(socket));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) =>
      this.#onClientError(error, socket),
    );
  }

  url(path = '/'): string {
    return this.origin + (path.startsWith('/') ? path : `/${path}`);
  }

  get requests(): ReceivedRequest[] {
    return this.#requests;
  }

  count(filter: { method?: string; path?: string } = {}): number {
    const method = filter.method?.toUpperCase();
    let n = 0;
    for (const req of this.#requests) {
      if (method !== undefined && req.method.toUpperCase() !== method) continue;
      if (filter.path !== undefined && req.path !== filter.path) continue;
      n++;
    }
    return n;
  }

  get connections(): number {
    return this.#connectionsSinceReset;
  }

  openSockets(): number {
    return this.#open.size;
  }

  openConnectionIds(): number[] {
    return [...this.#open.values()].map((connection) => connection.id).sort((a, b) => a - b);
  }

  get maxConcurrent(): number {
    return this.#maxConcurrent;
  }

  inFlight(): number {
    return this.#inFlightTotal;
  }

  get closedByClient(): number {
    return this.#closedByClient;
  }

  get errors(): readonly Error[] {
    return this.#errors;
  }

  get floodedBytes(): number {
    return this.#floodedBytes;
  }

  activeTimers(): number {
    let n = 0;
    for (const connection of this.#open.values()) n += connection.timers.size;
    return n;
  }

  waitFor(predicate: (upstream: Upstream) => boolean, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.#wait(predicate, timeoutMs, () => 'waitFor(predicate)');
  }

  waitForSocketsClosed(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.#wait(
      () => this.#open.size === 0,
      timeoutMs,
      () => `waitForSocketsClosed(): ${this.#open.size} socket(s) still open`,
    );
  }

  waitForRequests(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.#wait(
      () => this.#requests.length >= n,
      timeoutMs,
      () => `waitForRequests(${n}): ${this.#requests.length} received`,
    );
  }

  waitForClosedByClient(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    return this.#wait(
      () => this.#closedByClient >= n,
      timeoutMs,
      () => `waitForClosedByClient(${n}): closedByClient is ${this.#closedByClient}`,
    );
  }

  setScript(script: Script): void {
    validateScript(script);
    this.#script = script;
    this.#position = 0;
  }

  reset(): void {
    this.#epoch++;
    this.#requests = [];
    this.#errors = [];
    this.#connectionsSinceReset = 0;
    this.#inFlightEpoch = 0;
    this.#maxConcurrent = 0;
    this.#closedByClient = 0;
    this.#floodedBytes = 0;
    this.#position = 0;
    this.#notify();
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const connection of this.#open.values()) {
        this.#clearTimers(connection);
        connection.closedByServer = true;
        connection.socket.destroy();
      }
    }).then(() => {
      this.#notify();
      for (const waiter of this.#waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error('the upstream was closed while waiting'));
      }
      this.#waiters.clear();
    });
    return this.#closing;
  }

  #wait(
    predicate: (upstream: Upstream) => boolean,
    timeoutMs: number,
    describe: () => string,
  ): Promise<void> {
    try {
      if (predicate(this)) return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closing) return Promise.reject(new Error(`${describe()}: the upstream is closed`));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new Error(`${describe()} after ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Re-checks every waiter; called after each server-side state change. */
  #notify(): void {
    for (const waiter of this.#waiters) {
      let settled = false;
      try {
        if (waiter.predicate(this)) {
          settled = true;
          waiter.resolve();
        }
      } catch (error) {
        settled = true;
        waiter.reject(error);
      }
      if (settled) {
        clearTimeout(waiter.timer);
        this.#waiters.delete(waiter);
      }
    }
  }

  #onConnection(socket: Socket): void {
    socket.setNoDelay(true);
    const connection: Connection = {
      id: ++this.#lastConnectionId,
      socket,
      timers: new Set(),
      exchanges: new Set(),
      closedByServer: false,
    };
    this.#connectionsSinceReset++;
    this.#open.set(socket, connection);
    socket.once('close', () => {
      this.#open.delete(socket);
      this.#clearTimers(connection);
      for (const exchange of connection.exchanges) this.#settle(exchange, !connection.closedByServer);
      this.#notify();
    });
    this.#notify();
  }

  #onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    // Quietly: no log, no crash. A malformed request gets a bare 400; a vanished client nothing.
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    const connection = this.#open.get(socket as Socket);
    if (connection) connection.closedByServer = true;
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const receivedAt = performance.now();
    const connection = this.#open.get(req.socket);
    if (!connection) {
      // Only possible if the socket closed between accept and parse; nothing to answer.
      req.socket.destroy();
      return;
    }
    const exchange: Exchange = { epoch: this.#epoch, connection, done: false };
    connection.exchanges.add(exchange);
    this.#inFlightTotal++;
    this.#inFlightEpoch++;
    if (this.#inFlightEpoch > this.#maxConcurrent) this.#maxConcurrent = this.#inFlightEpoch;
    this.#notify();
    res.once('finish', () => this.#settle(exchange, false));
    // A write racing a socket the client just closed must not crash the test process.
    res.on('error', () => {});

    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    // The client went away mid-body: the socket's 'close' settles the exchange.
    req.on('error', () => {});
    req.once('end', () => {
      const record: ReceivedRequest = {
        index: this.#requests.length,
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
        connectionId: connection.id,
        receivedAt,
      };
      this.#requests.push(record);
      const behaviour = this.#choose(record);
      this.#notify();
      if (exchange.done) return;
      try {
        this.#perform(behaviour, res, connection, exchange);
      } catch (error) {
        this.#errors.push(asError(error));
        this.#kill(connection, 'destroy');
      }
    });
  }

  #choose(req: ReceivedRequest): Behaviour {
    const script = this.#script;
    const position = this.#position++;
    try {
      let behaviour: Behaviour;
      if (typeof script === 'function') {
        behaviour = script(req);
        validateBehaviour(behaviour);
      } else if (Array.isArray(script)) {
        behaviour = script[Math.min(position, script.length - 1)] as Behaviour;
      } else {
        behaviour = script as Behaviour;
      }
      return behaviour;
    } catch (error) {
      const err = asError(error);
      this.#errors.push(err);
      return {
        kind: 'respond',
        status: 500,
        headers: { 'x-upstream-error': 'script' },
        body: err.message,
      };
    }
  }

  #perform(behaviour: Behaviour, res: ServerResponse, connection: Connection, exchange: Exchange): void {
    switch (behaviour.kind) {
      case 'respond': {
        const send = (): void => {
          if (exchange.done || connection.socket.destroyed) return;
          res.statusCode = behaviour.status ?? 200;
          for (const [name, value] of Object.entries(behaviour.headers ?? {})) {
            res.setHeader(name, typeof value === 'string' ? value : [...value]);
          }
          res.end(toBuffer(behaviour.body));
        };
        if (behaviour.delayMs) this.#after(connection, behaviour.delayMs, send);
        else send();
        return;
      }
      case 'hang':
        return;
      case 'reset':
        this.#kill(connection, 'reset');
        return;
      case 'reset-mid-body': {
        const body = toBuffer(behaviour.body);
        res.writeHead(behaviour.status ?? 200, {
          'content-length': String(behaviour.contentLength ?? body.length + 1),
        });
        // The write callback fires once headers and partial body are in the kernel; the short
        // pause lets the client parse them before the RST arrives.
        res.write(body, () => {
          this.#after(connection, behaviour.resetAfterMs ?? DEFAULT_RESET_AFTER_MS, () =>
            this.#kill(connection, 'reset'),
          );
        });
        return;
      }
      case 'trickle': {
        const { count, intervalMs } = behaviour;
        const chunk = behaviour.chunk ?? 'x';
        res.writeHead(behaviour.status ?? 200, {
          'content-type': 'text/plain',
        });
        if (count === 0) {
          res.end();
          return;
        }
        res.flushHeaders();
        let sent = 0;
        const stop = this.#every(connection, intervalMs, () => {
          if (exchange.done || connection.socket.destroyed) {
            stop();
            return;
          }
          res.write(chunk);
          sent++;
          if (count !== undefined && sent >= count) {
            stop();
            res.end();
          }
        });
        return;
      }
      case 'close-after-response':
        res.statusCode = behaviour.status ?? 200;
        // 'finish' means the last byte reached the kernel: destroying now still delivers it
        // (a plain close sends FIN after queued data), but the connection is dead for reuse.
        res.end(behaviour.body ?? '', () => {
          if (behaviour.closeDelayMs)
            this.#after(connection, behaviour.closeDelayMs, () => this.#kill(connection, 'destroy'));
          else this.#kill(connection, 'destroy');
        });
        return;
      case 'flood': {
        const chunk = Buffer.alloc(behaviour.chunkSize ?? 16_384, 0x78);
        res.writeHead(behaviour.status ?? 200, {
          'content-type': 'application/octet-stream',
          ...behaviour.headers,
        });
        const epoch = exchange.epoch;
        // Write while the socket takes it, then wait for 'drain': never more than one chunk
        // buffered here, so a client that stops reading stops the flood.
        // On loopback the kernel may take a few MB before write() says no; yielding every 64
        // chunks keeps one flood from holding the (shared, in-process) event loop.
        const pump = (): void => {
          for (let i = 0; i < 64; i++) {
            if (exchange.done || connection.socket.destroyed) return;
            if (epoch === this.#epoch) this.#floodedBytes += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
          setImmediate(pump);
        };
        pump();
        return;
      }
    }
  }

  #settle(exchange: Exchange, byClient: boolean): void {
    if (exchange.done) return;
    exchange.done = true;
    exchange.connection.exchanges.delete(exchange);
    this.#inFlightTotal--;
    if (exchange.epoch === this.#epoch) {
      this.#inFlightEpoch--;
      if (byClient) this.#closedByClient++;
    }
    this.#notify();
  }

  /** The server closes the socket itself; `reset` sends an RST where the platform allows. */
  #kill(connection: Connection, how: 'reset' | 'destroy'): void {
    const { socket } = connection;
    if (socket.destroyed) return;
    connection.closedByServer = true;
    if (how === 'reset' && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
    else socket.destroy();
  }

  #after(connection: Connection, ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      connection.timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    connection.timers.add(timer);
  }

  #every(connection: Connection, ms: number, fn: () => void): () => void {
    const timer = setInterval(fn, ms);
    timer.unref();
    connection.timers.add(timer);
    return () => {
      clearInterval(timer);
      connection.timers.delete(timer);
    };
  }

  #clearTimers(connection: Connection): void {
    for (const timer of connection.timers) clearTimeout(timer);
    connection.timers.clear();
  }
}

/**
 * Starts a fault-injecting upstream on `127.0.0.1`, port 0 (keep-alive on, 5 s idle timeout).
 * Close it with `close()` in `after`.
 *
 * @param script - what to do with each request. **Default:** `{ kind: 'respond', status: 200, body: 'ok' }`
 */
export async function startUpstream(
  script: Script = { kind: 'respond', status: 200, body: 'ok' },
): Promise<Upstream> {
  validateScript(script);
  const server = createServer({ noDelay: true });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return new ScriptedUpstream(server, port, script);
}

/**
 * An origin on 127.0.0.1 where nothing listens: binds port 0, notes the port and closes it, so a
 * connection attempt fails with `ECONNREFUSED` (unless another process grabs the port meanwhile).
 */
export async function refusedOrigin(): Promise<string> {
  const server = createTcpServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** Relative weights for {@link seededScript}; omitted outcomes have weight 0. */
export interface SeededWeights {
  /** 200 `'ok'` at once. */
  ok: number;
  /** 503 `'busy'` (with `retry-after` when `opts.retryAfter` is set). */
  status503?: number;
  /** 429 `'slow down'` (with `retry-after` when `opts.retryAfter` is set). */
  status429?: number;
  /** `{ kind: 'reset' }` */
  reset?: number;
  /** 200 `'ok'` after `opts.slowMs`. */
  slow?: number;
  /** `{ kind: 'hang' }` */
  hang?: number;
}

/** Options for {@link seededScript}. */
export interface SeededOptions {
  /** `retry-after` value sent with the 503 and 429 outcomes. **Default:** none */
  retryAfter?: string;
  /** Delay of the `slow` outcome. **Default:** `200` */
  slowMs?: number;
}

/**
 * A reproducible random script: the n-th call draws the n-th number of `mulberry32(seed)` and
 * picks an outcome in proportion to `weights`. Two scripts built with the same arguments return
 * the same sequence of behaviours (call order, i.e. arrival order, decides; the request itself is
 * ignored). Build a fresh one per run: it keeps its position.
 */
export function seededScript(
  seed: number,
  weights: SeededWeights,
  opts: SeededOptions = {},
): (req: ReceivedRequest) => Behaviour {
  const failure = (status: number, body: string): Behaviour =>
    opts.retryAfter === undefined
      ? { kind: 'respond', status, body }
      : {
          kind: 'respond',
          status,
          headers: { 'retry-after': opts.retryAfter },
          body,
        };
  const slowMs = opts.slowMs ?? 200;
  if (!isDuration(slowMs)) throw new RangeError(`seededScript: slowMs must be a finite number >= 0`);
  const table: Array<[weight: number, behaviour: Behaviour]> = [
    [weights.ok, { kind: 'respond', status: 200, body: 'ok' }],
    [weights.status503 ?? 0, failure(503, 'busy')],
    [weights.status429 ?? 0, failure(429, 'slow down')],
    [weights.reset ?? 0, { kind: 'reset' }],
    [weights.slow ?? 0, { kind: 'respond', status: 200, body: 'ok', delayMs: slowMs }],
    [weights.hang ?? 0, { kind: 'hang' }],
  ];
  let total = 0;
  for (const [weight] of table) {
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) {
      throw new RangeError(`seededScript: every weight must be a finite number >= 0, got ${String(weight)}`);
    }
    total += weight;
  }
  if (total <= 0) throw new RangeError('seededScript: the weights must not all be 0');
  const random = mulberry32(seed);
  return function seeded(): Behaviour {
    let roll = random() * total;
    for (const [weight, behaviour] of table) {
      if (weight > 0 && roll < weight) return behaviour;
      roll -= weight;
    }
    // Floating-point leftovers land on the last outcome that can occur.
    return [...table].reverse().find(([weight]) => weight > 0)![1];
  };
}
