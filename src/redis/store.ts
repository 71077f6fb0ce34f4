// The Redis fleet store: its options, its connections, and the store operations on the scripts.

import { InvalidOptionError } from '../errors.js';
import type { CircuitBroadcast, FleetStore, RateGrant, StoreErrorEvent } from '../fleet/store.js';
import { type Disposable, Event } from '../internal/event.js';
import { duration, integer, knownKeys, optionalObject } from '../internal/validate.js';
import { ACQUIRE, LOCK, PAUSE, PUBLISH, READ, type Script, UNLOCK } from './scripts.js';

/**
 * The part of a node-redis client (`createClient()` from `redis`, v5 or later) the store uses:
 * raw commands, readiness, and a duplicate connection for pub/sub.
 */
export interface RedisClientLike {
  sendCommand(args: string[]): Promise<unknown>;
  readonly isReady: boolean;
  duplicate(): RedisClientLike;
  connect(): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
  off?(event: 'ready', listener: () => void): unknown;
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
}

export interface RedisStoreOptions {
  /** A Redis URL (`redis://host:6379/0`): the store opens and owns its connections. */
  url?: string;
  /** A connected node-redis client of yours: the store uses it and never closes it. */
  client?: RedisClientLike;
  /**
   * Put before every key and channel name, so that several applications can share one Redis.
   * @default 'breakwater:'
   */
  prefix?: string;
  /**
   * The longest a request waits for the store, in milliseconds; then it uses local state.
   * @default 50
   */
  timeoutMs?: number;
  /**
   * Extra rate limit tokens taken per round trip when they are free, used by this process's
   * next requests without asking again (for a bounded time). `0` asks once per request (requests
   * that arrive together share one round trip either way).
   * @default 0
   */
  lease?: number;
}

/** Reconnect at once, then back off to at most this many milliseconds between attempts. */
const MAX_RECONNECT_DELAY = 1_000;

/**
 * A fleet store on Redis: rate limits as GCRA in one Lua script per admission, circuit changes
 * broadcast with PUBLISH to every process's subscriber connection, half-open probes behind a lock
 * with an expiry (SET NX PX). Keys carry the prefix and an expiry.
 */
export class RedisStore implements FleetStore {
  readonly timeoutMs: number;
  readonly lease: number;
  readonly prefix: string;
  readonly #client: RedisClientLike | null;
  readonly #owned: boolean;
  /** The 'ready' listener that reloads the scripts, removed on close (a client you passed lives on). */
  #loadOnReady: (() => void) | null = null;
  #commands: RedisClientLike | null = null;
  #subscriber: RedisClientLike | null = null;
  #subscribing: Promise<void> | null = null;
  readonly #ready: Promise<void>;
  readonly #onError = new Event<StoreErrorEvent>();
  readonly #onCircuit = new Event<CircuitBroadcast>();
  #closed = false;

  constructor(options: RedisStoreOptions) {
    const o = optionalObject('redisStore', options);
    if (o === undefined) throw new InvalidOptionError('redisStore', 'an object with url or client', options);
    knownKeys('redisStore', o, ['url', 'client', 'prefix', 'timeoutMs', 'lease']);
    if ((o.url === undefined) === (o.client === undefined)) {
      throw new InvalidOptionError('redisStore', 'exactly one of url and client', 'both or neither');
    }
    if (o.url !== undefined && (typeof o.url !== 'string' || !/^rediss?:\/\//.test(o.url))) {
      throw new InvalidOptionError('redisStore.url', 'a redis:// or rediss:// URL', o.url);
    }
    const client = o.client as RedisClientLike | undefined;
    if (
      client !== undefined &&
      (client === null ||
        typeof client !== 'object' ||
        typeof client.sendCommand !== 'function' ||
        typeof client.duplicate !== 'function')
    ) {
      throw new InvalidOptionError(
        'redisStore.client',
        "a node-redis client (createClient() from 'redis')",
        client,
      );
    }
    if (o.prefix !== undefined && typeof o.prefix !== 'string') {
      throw new InvalidOptionError('redisStore.prefix', 'a string', o.prefix);
    }
    this.prefix = (o.prefix as string | undefined) ?? 'breakwater:';
    this.timeoutMs = duration('redisStore.timeoutMs', o.timeoutMs, 50);
    this.lease = integer('redisStore.lease', o.lease, 0, 0);
    this.#owned = client === undefined;
    this.#client = client ?? null;
    this.#ready = client === undefined ? this.#open(o.url as string) : Promise.resolve();
    if (client !== undefined) {
      this.#commands = client;
      this.#loadScripts(client);
    }
    // A store nobody awaits must not leave an unhandled rejection behind.
    this.#ready.catch(() => {});
  }

  /** Connected and able to answer now. */
  get available(): boolean {
    return this.#commands?.isReady === true && !this.#closed;
  }

  /** Resolves once the store's own connection is up (at once for a client you passed). */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** Subscribes to store faults: a call failed or was late, and a pipeline used its local state. */
  onError(listener: (event: StoreErrorEvent) => void): Disposable {
    return this.#onError.subscribe(listener);
  }

  reportError(event: StoreErrorEvent): void {
    if (this.#onError.hasListeners) this.#onError.emit(event);
  }

  async acquireRate(
    key: string,
    intervalMs: number,
    burst: number,
    maxWaitMs: number,
    count: number,
    lease: number,
  ): Promise<RateGrant> {
    const reply = (await this.#eval(ACQUIRE, `${this.prefix}rate:${key}`, [
      String(intervalMs),
      String(burst),
      String(maxWaitMs),
      String(count),
      String(lease),
    ])) as [number, string];
    return { granted: Number(reply[0]), baseMs: Number(reply[1]) };
  }

  async pauseRate(key: string, intervalMs: number, burst: number, pauseMs: number): Promise<void> {
    await this.#eval(PAUSE, `${this.prefix}rate:${key}`, [
      String(intervalMs),
      String(burst),
      String(pauseMs),
    ]);
  }

  async lockProbe(key: string, owner: string, ms: number): Promise<number> {
    return Number(await this.#eval(LOCK, `${this.prefix}probe:${key}`, [owner, String(Math.ceil(ms))]));
  }

  async unlockProbe(key: string, owner: string): Promise<void> {
    await this.#eval(UNLOCK, `${this.prefix}probe:${key}`, [owner]);
  }

  async publishCircuit(message: CircuitBroadcast): Promise<void> {
    await this.#eval(PUBLISH, `${this.prefix}circuit:${message.key}`, [
      `${this.prefix}circuit`,
      JSON.stringify(message),
      message.state,
      String(message.retryAfterMs),
    ]);
  }

  async readCircuit(key: string): Promise<CircuitBroadcast | null> {
    const [text, left] = (await this.#eval(READ, `${this.prefix}circuit:${key}`, [])) as [
      string | null,
      number,
    ];
    if (typeof text !== 'string' || !(Number(left) > 0)) return null;
    const message = parseBroadcast(text);
    return message === null || message.state !== 'open' ? null : { ...message, retryAfterMs: Number(left) };
  }

  subscribeCircuit(listener: (message: CircuitBroadcast) => void): Disposable {
    const subscription = this.#onCircuit.subscribe(listener);
    if (this.#subscribing === null) {
      this.#subscribing = this.#subscribe();
      this.#subscribing.catch(() => {});
    }
    return subscription;
  }

  /** Closes the connections the store opened (a client you passed stays open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#loadOnReady !== null) this.#commands?.off?.('ready', this.#loadOnReady);
    // Not waiting for the connections to come up: against a Redis that is down node-redis keeps
    // reconnecting, so they never would. Closing them ends that loop; the pending connect() and
    // subscribe() then reject, and nothing awaits them.
    const owned = [this.#subscriber, this.#owned ? this.#commands : null];
    await Promise.all(owned.map((c) => (c === null ? undefined : closeClient(c))));
  }

  async #open(url: string): Promise<void> {
    // Loaded here, not at the top: a store given a client needs no `redis` package of ours.
    const { createClient } = await import('redis');
    const client = createClient({
      url,
      // A command sent while disconnected fails at once instead of queueing: the pipeline has
      // already fallen back to local state, and a late admission would count twice.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: 1_000,
        reconnectStrategy: (retries: number) => Math.min(retries * 50, MAX_RECONNECT_DELAY),
      },
    }) as unknown as RedisClientLike;
    // node-redis emits 'error' on every lost connection; it reconnects by itself, and the
    // pipeline counts what failed. Unlistened, the event would crash the process.
    client.on('error', () => {});
    this.#commands = client;
    if (this.#closed) return;
    await client.connect();
    this.#loadScripts(client);
  }

  /**
   * Loads the scripts into the server, so that the first admission is one round trip (EVALSHA)
   * rather than two (EVALSHA, then EVAL on NOSCRIPT). Done again after every reconnection: a
   * restarted server has forgotten them. Best effort: #eval falls back to EVAL anyway.
   */
  #loadScripts(client: RedisClientLike): void {
    const load = (): void => {
      for (const s of [ACQUIRE, PAUSE, LOCK, UNLOCK, PUBLISH, READ]) {
        client.sendCommand(['SCRIPT', 'LOAD', s.source]).catch(() => {});
      }
    };
    if (client.isReady) load();
    client.on('ready', load);
    this.#loadOnReady = load;
  }

  async #subscribe(): Promise<void> {
    await this.#ready;
    if (this.#closed) return;
    const subscriber = this.#commands!.duplicate();
    subscriber.on('error', () => {});
    this.#subscriber = subscriber;
    await subscriber.connect();
    // node-redis subscribes again by itself after a reconnection.
    await subscriber.subscribe(`${this.prefix}circuit`, (text: string) => {
      const message = parseBroadcast(text);
      if (message !== null) this.#onCircuit.emit(message);
    });
  }

  /** EVALSHA, or EVAL when the server does not know the script (first use, restart, flush). */
  async #eval(script: Script, key: string, args: string[]): Promise<unknown> {
    const client = this.#commands;
    if (client === null || this.#closed) throw new Error('breakwater: the Redis store is not connected');
    try {
      return await client.sendCommand(['EVALSHA', script.sha, '1', key, ...args]);
    } catch (err) {
      if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err;
      return client.sendCommand(['EVAL', script.source, '1', key, ...args]);
    }
  }
}

/** A broadcast read back from Redis, or null when it is not one. */
function parseBroadcast(text: string): CircuitBroadcast | null {
  let message: CircuitBroadcast;
  try {
    message = JSON.parse(text) as CircuitBroadcast;
  } catch {
    return null;
  }
  const ok =
    typeof message?.key === 'string' &&
    (message.state === 'open' || message.state === 'closed') &&
    Number.isFinite(message.retryAfterMs) &&
    Number.isInteger(message.reopenCount);
  return ok ? message : null;
}

async function closeClient(client: RedisClientLike): Promise<void> {
  try {
    if (typeof client.close === 'function') await client.close();
    else await client.quit?.();
  } catch {
    // Already closed, or never connected.
  }
}

/**
 * A fleet store on Redis for `pipeline(stages, { store })` and `standardPipeline({ store })`:
 * `redisStore({ url })` opens and owns its connections, `redisStore({ client })` uses a connected
 * node-redis client of yours.
 */
export function redisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}
