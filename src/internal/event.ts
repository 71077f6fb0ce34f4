// The typed event the stages use for their listeners (`onRetry`, `onStateChange`, …).

/** What subscribing returns: call `dispose()` to stop listening. */
export interface Disposable {
  dispose(): void;
}

/**
 * A tiny typed event, cockatiel's idiom: `stage.onRetry(listener) → { dispose() }`. Emitters check
 * `hasListeners` first, so an event nobody listens to costs no object allocation.
 */
export class Event<T> {
  #listeners: Array<(event: T) => void> = [];

  get hasListeners(): boolean {
    return this.#listeners.length > 0;
  }

  readonly subscribe = (listener: (event: T) => void): Disposable => {
    this.#listeners = [...this.#listeners, listener];
    return {
      dispose: () => {
        this.#listeners = this.#listeners.filter((l) => l !== listener);
      },
    };
  };

  emit(event: T): void {
    // The array is replaced, never mutated, so a listener that disposes during emit is safe.
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        // A logging listener must not break a request; surface it without throwing into undici.
        process.emitWarning(`breakwater: an event listener threw: ${String(err)}`);
      }
    }
  }
}
