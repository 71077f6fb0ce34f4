/**
 * A Map bounded to `capacity` entries that evicts the least recently used entry that is idle.
 * Per-key state (bulkheads, breakers, budgets) lives here, so a client that talks to 10,000
 * origins holds at most `capacity` of them; an entry that is busy (requests in flight, an open
 * breaker) is never dropped, so the map may exceed its bound only by the number of busy keys.
 *
 * Recency is a counter stamped on each hit rather than Map re-insertion: a hit is on every
 * request's path and costs one increment, while the scan for the oldest idle entry only runs when
 * a new key arrives at a full map.
 */
export class KeyedMap<V> {
  readonly #entries = new Map<string, Slot<V>>();
  readonly #capacity: number;
  readonly #create: (key: string) => V;
  readonly #isIdle: (value: V) => boolean;
  #clock = 0;
  /**
   * The entry asked for last. Most clients talk to one upstream at a time, so the next request
   * likely wants it again, and as the most recent entry it needs no new stamp.
   */
  #last: Slot<V> | null = null;

  constructor(capacity: number, create: (key: string) => V, isIdle: (value: V) => boolean) {
    this.#capacity = capacity;
    this.#create = create;
    this.#isIdle = isIdle;
  }

  /** The entry for `key`, created on first use; marks it most recently used. */
  get(key: string): V {
    const last = this.#last;
    if (last !== null && last.key === key) return last.value;
    let slot = this.#entries.get(key);
    if (slot === undefined) {
      this.set(key, this.#create(key));
      slot = this.#entries.get(key)!;
    } else {
      slot.used = ++this.#clock;
    }
    this.#last = slot;
    return slot.value;
  }

  /** The entry for `key` without creating it or touching its recency. */
  peek(key: string): V | undefined {
    return this.#entries.get(key)?.value;
  }

  set(key: string, value: V): void {
    const slot: Slot<V> = { key, value, used: ++this.#clock };
    this.#entries.set(key, slot);
    this.#last = slot;
    if (this.#entries.size > this.#capacity) this.#evictOne(key);
  }

  delete(key: string): boolean {
    if (this.#last?.key === key) this.#last = null;
    return this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** More entries than the bound: busy ones kept the map from evicting when new keys came. */
  get oversized(): boolean {
    return this.#entries.size > this.#capacity;
  }

  /**
   * Evicts idle entries, least recently used first, down to the bound. Called when an entry goes
   * idle, so a map that grew past its bound during a burst of busy keys shrinks back after it.
   */
  trim(): void {
    while (this.#entries.size > this.#capacity) {
      if (!this.#evictOne(undefined)) return;
    }
  }

  *entries(): IterableIterator<[string, V]> {
    for (const [key, slot] of this.#entries) yield [key, slot.value];
  }

  /** Drops the least recently used idle entry other than `keep` (the one just added); false if none is idle. */
  #evictOne(keep: string | undefined): boolean {
    let oldestKey: string | undefined;
    let oldestUse = Number.POSITIVE_INFINITY;
    for (const [key, slot] of this.#entries) {
      if (key !== keep && slot.used < oldestUse && this.#isIdle(slot.value)) {
        oldestKey = key;
        oldestUse = slot.used;
      }
    }
    if (oldestKey === undefined) return false;
    this.delete(oldestKey);
    return true;
  }
}

interface Slot<V> {
  readonly key: string;
  readonly value: V;
  used: number;
}
