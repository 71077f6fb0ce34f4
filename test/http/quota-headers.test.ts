import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { quotaSignal } from '../../src/http/quota-headers.js';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const headers = (h: Record<string, string>) => (name: string) => h[name];

describe('quotaSignal: what a response says about the upstream quota', () => {
  test('429 or 503 with Retry-After pauses for it, in either form', () => {
    assert.deepEqual(quotaSignal(429, headers({ 'retry-after': '2' }), NOW), {
      pauseMs: 2_000,
      exhausted: true,
    });
    assert.deepEqual(quotaSignal(503, headers({ 'retry-after': 'Thu, 01 Jan 2026 12:00:03 GMT' }), NOW), {
      pauseMs: 3_000,
      exhausted: true,
    });
    // Retry-After on another status is the retry stage's business, not the quota's.
    assert.equal(quotaSignal(500, headers({ 'retry-after': '2' }), NOW), undefined);
    assert.equal(quotaSignal(200, headers({}), NOW), undefined);
  });

  test('a 429 without any quota field empties the bucket without a pause', () => {
    assert.deepEqual(quotaSignal(429, headers({ 'retry-after': 'soon' }), NOW), {
      pauseMs: 0,
      exhausted: true,
    });
  });

  test('RateLimit-Remaining 0 with RateLimit-Reset (delta-seconds), on any status', () => {
    assert.deepEqual(quotaSignal(200, headers({ 'ratelimit-remaining': '0', 'ratelimit-reset': '7' }), NOW), {
      pauseMs: 7_000,
      exhausted: true,
    });
    assert.equal(
      quotaSignal(200, headers({ 'ratelimit-remaining': '3', 'ratelimit-reset': '7' }), NOW),
      undefined,
    );
    assert.deepEqual(quotaSignal(200, headers({ 'ratelimit-remaining': '0' }), NOW), {
      pauseMs: 0,
      exhausted: true,
    });
  });

  test('the later draft single field: RateLimit: "name";r=0;t=5', () => {
    assert.deepEqual(quotaSignal(200, headers({ ratelimit: '"default";r=0;t=5' }), NOW), {
      pauseMs: 5_000,
      exhausted: true,
    });
    assert.equal(quotaSignal(200, headers({ ratelimit: '"default";r=12;t=5' }), NOW), undefined);
  });

  test('X-RateLimit-Reset: at least 1e9 is epoch seconds, below it delta-seconds', () => {
    const epoch = String(NOW / 1000 + 4);
    assert.deepEqual(
      quotaSignal(200, headers({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': epoch }), NOW),
      { pauseMs: 4_000, exhausted: true },
    );
    assert.deepEqual(
      quotaSignal(200, headers({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '4' }), NOW),
      {
        pauseMs: 4_000,
        exhausted: true,
      },
    );
    // An epoch reset in the past: spent, but nothing to wait for.
    assert.deepEqual(
      quotaSignal(
        200,
        headers({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(NOW / 1000 - 10) }),
        NOW,
      ),
      { pauseMs: 0, exhausted: true },
    );
  });

  test('garbage is ignored', () => {
    assert.equal(
      quotaSignal(200, headers({ 'x-ratelimit-remaining': 'none', 'x-ratelimit-reset': '4' }), NOW),
      undefined,
    );
    assert.deepEqual(
      quotaSignal(200, headers({ 'ratelimit-remaining': '0', 'ratelimit-reset': '-4' }), NOW),
      {
        pauseMs: 0,
        exhausted: true,
      },
    );
  });
});
