import { InvalidOptionError } from '../errors.js';

/*
 * One helper per shape of option. Each either returns the value (typed) or throws an
 * InvalidOptionError naming the path, what was expected and what was given. Factories call them
 * once, at construction. The per-request overrides (the `breakwater` dispatch option) arrive with
 * each request, so the exchange checks those with the same helpers when it reads them.
 */

export function optionalObject(path: string, value: unknown): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(path, 'an object', value);
  }
  return value as Record<string, unknown>;
}

export function integer(path: string, value: unknown, min: number, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidOptionError(path, `an integer >= ${min}`, value);
  }
  return value;
}

/** A duration in milliseconds: finite, > 0 (or >= 0 when `allowZero`), at most 2^31-1. */
export function duration(path: string, value: unknown, fallback?: number, allowZero = false): number {
  if (value === undefined && fallback !== undefined) return fallback;
  const low = allowZero ? 0 : Number.MIN_VALUE;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < low || value > MAX_TIMER_MS) {
    throw new InvalidOptionError(
      path,
      `a number of milliseconds ${allowZero ? '>= 0' : '> 0'} and <= ${MAX_TIMER_MS}`,
      value,
    );
  }
  return value;
}

export function ratio(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new InvalidOptionError(path, 'a number between 0 and 1', value);
  }
  return value;
}

export function numberBetween(
  path: string,
  value: unknown,
  low: number,
  high: number,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < low || value > high) {
    throw new InvalidOptionError(path, `a number between ${low} and ${high}`, value);
  }
  return value;
}

export function oneOf<T extends string>(path: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new InvalidOptionError(path, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
  }
  return value as T;
}

export function optionalFunction<F extends Function>(path: string, value: unknown): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new InvalidOptionError(path, 'a function', value);
  return value as F;
}

export function integerList(
  path: string,
  value: unknown,
  min: number,
  max: number,
  fallback: readonly number[],
): number[] {
  if (value === undefined) return [...fallback];
  if (!Array.isArray(value)) throw new InvalidOptionError(path, 'an array of integers', value);
  value.forEach((item, i) => {
    if (typeof item !== 'number' || !Number.isInteger(item) || item < min || item > max) {
      throw new InvalidOptionError(`${path}[${i}]`, `an integer between ${min} and ${max}`, item);
    }
  });
  return [...value];
}

export function stringList(path: string, value: unknown, fallback: readonly string[]): string[] {
  if (value === undefined) return [...fallback];
  if (!Array.isArray(value)) throw new InvalidOptionError(path, 'an array of strings', value);
  value.forEach((item, i) => {
    if (typeof item !== 'string' || item.length === 0) {
      throw new InvalidOptionError(`${path}[${i}]`, 'a non-empty string', item);
    }
  });
  return [...value];
}

/** Rejects keys that are not part of an options type: a typo must not silently mean "default". */
export function knownKeys(
  path: string,
  value: Record<string, unknown> | undefined,
  keys: readonly string[],
): void {
  if (value === undefined) return;
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) {
      throw new InvalidOptionError(
        path ? `${path}.${key}` : key,
        `absent (known options: ${keys.join(', ')})`,
        value[key],
      );
    }
  }
}

/** setTimeout fires at once for delays above 2^31-1 ms, so every timer is clamped to this. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
