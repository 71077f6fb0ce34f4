import { getEventListeners } from 'node:events';

/**
 * How many `'abort'` listeners are currently registered on `signal`. A test uses it to prove that
 * a finished request left nothing behind on a caller's (possibly long-lived) signal.
 */
export function listenerCount(signal: AbortSignal): number {
  return getEventListeners(signal, 'abort').length;
}

/** What {@link captureWarnings} returns. */
export interface CapturedWarnings {
  /** Every `process` warning emitted since capture started, in order. */
  readonly warnings: Error[];
  /** Stops collecting (removes the `process` listener). Safe to call more than once. */
  dispose(): void;
}

/**
 * Collects every warning the process emits (for example `MaxListenersExceededWarning`) until
 * `dispose()` is called. Warnings are emitted asynchronously, so let a tick pass before asserting.
 */
export function captureWarnings(): CapturedWarnings {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(warning);
  };
  process.on('warning', onWarning);
  return {
    warnings,
    dispose() {
      process.off('warning', onWarning);
    },
  };
}
