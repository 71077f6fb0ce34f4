/**
 * A Map bounded to `capacity` entries that evicts the least recently used entry that is idle.
 * Per-key state (bulkheads, breakers, budgets) lives here, so a client that talks to 10,000
 * origins holds at most `capacity` of them; an entry that is busy (requests in flight, an open
 * breaker) is never dropped, so the map may exceed its bound only by the number of busy keys.
 */
export class KeyedMap<V> {
  readonly #entries = new Map<string, V>();
  readonly #capacity: number;
  readonly #create: (key: string) => V;
  readonly #isIdle: (value: V) => boolean;

  constructor(capacity: number, create: (key: string) => V, isIdle: (value: V) => boolean) {
    this.#capacity = capacity;
    this.#create = create;
    this.#isIdle = isIdle;
  }

  /** The entry for `key`, created on first use; marks it most recently used. */
  get(key: string): V {
    const entries = this.#entries;
    let value = entries.get(key);
    if (value !== undefined) {
      // Re-inserting moves the key to the end of Map's insertion order: the LRU order for free.
      // Skipped when already last, which is the common case of one hot origin.
      if (entries.size > 1) {
        entries.delete(key);
        entries.set(key, value);
      }
      return value;
    }
    value = this.#create(key);
    entries.set(key, value);
    if (entries.size > this.#capacity) this.#evictOne();
    return value;
  }

  /** The entry for `key` without creating it or touching its recency. */
  peek(key: string): V | undefined {
    return this.#entries.get(key);
  }

  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.#capacity) this.#evictOne();
  }

  delete(key: string): boolean {
    return this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  entries(): IterableIterator<[string, V]> {
    return this.#entries.entries();
  }

  #evictOne(): void {
    for (const [key, value] of this.#entries) {
      if (this.#isIdle(value)) {
        this.#entries.delete(key);
        return;
      }
    }
  }
}
