import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BulkheadRejectedError,
  CircuitOpenError,
  getResilienceError,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isResilienceError,
  isTimeoutError,
  ResilienceError,
  TimeoutError,
} from '../src/index.js';

describe('errors', () => {
  test('each has a stable code and extends ResilienceError', () => {
    const cases: Array<[ResilienceError, string]> = [
      [new BulkheadRejectedError('k', 1, 0), 'BREAKWATER_BULKHEAD_REJECTED'],
      [new CircuitOpenError('k', 'open', 1_000), 'BREAKWATER_CIRCUIT_OPEN'],
      [new TimeoutError('attempt', 5), 'BREAKWATER_TIMEOUT'],
    ];
    for (const [error, code] of cases) {
      assert.equal(error.code, code);
      assert.ok(error instanceof ResilienceError);
      assert.ok(error instanceof Error);
    }
  });

  test("guards see through fetch's TypeError('fetch failed', { cause })", () => {
    const wrapped = new TypeError('fetch failed', { cause: new CircuitOpenError('http://a:1', 'open', 10) });
    assert.ok(isCircuitOpenError(wrapped));
    assert.ok(isResilienceError(wrapped));
    assert.ok(!isTimeoutError(wrapped));
    assert.ok(!isBulkheadRejectedError(wrapped));
    assert.equal(getResilienceError(wrapped)?.code, 'BREAKWATER_CIRCUIT_OPEN');
  });

  test('a cyclic cause chain does not hang the guards', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    assert.equal(isTimeoutError(a), false);
  });

  test('instanceof works across two copies of the class and after renaming (brand, not identity or name)', () => {
    // A second copy of the package would define its own class with the same name and brand.
    // Its name is irrelevant (a minifier renames it): the brands are what is compared.
    class Renamed extends Error {
      get [Symbol.for('breakwater.error')]() {
        return true;
      }
      get [Symbol.for('breakwater.error.circuit-open')]() {
        return true;
      }
    }
    const CircuitOpenErrorCopy = Renamed;
    const foreign = new CircuitOpenErrorCopy('x');
    assert.ok(foreign instanceof CircuitOpenError);
    assert.ok(foreign instanceof ResilienceError);
    assert.ok(!(foreign instanceof TimeoutError));
    assert.ok(!(new Error('plain') instanceof ResilienceError));
  });

  test('messages name the key and the numbers, never a path or query', () => {
    const e = new CircuitOpenError('http://api.example:443', 'open', 1234.5);
    assert.equal(e.message, 'circuit open for http://api.example:443: next probe in 1235 ms');
    assert.equal(e.retryAfterMs, 1234.5);
    assert.equal(new TimeoutError('total', 30_000).message, 'total timeout of 30000 ms exceeded');
  });
});
