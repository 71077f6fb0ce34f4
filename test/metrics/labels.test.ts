import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { normalizeMethod, sanitizeOrigin } from '../../src/metrics/labels.js';

describe('sanitizeOrigin', () => {
  const cases: Array<[string | URL | undefined, string]> = [
    ['http://127.0.0.1:1234', 'http://127.0.0.1:1234'],
    ['http://example.com', 'http://example.com:80'],
    ['https://example.com', 'https://example.com:443'],
    ['https://example.com:443', 'https://example.com:443'],
    ['http://example.com:443', 'http://example.com:443'],
    ['HTTPS://API.Example.COM:8443/', 'https://api.example.com:8443'],
    ['https://user:secret@api.example.com/v1/users?token=abc#frag', 'https://api.example.com:443'],
    ['http://user@example.com:8080/path', 'http://example.com:8080'],
    ['http://[::1]:3000', 'http://[::1]:3000'],
    ['http://[2001:DB8::1]/x', 'http://[2001:db8::1]:80'],
    ['http://bücher.example', 'http://xn--bcher-kva.example:80'],
    [new URL('https://u:p@example.org/a?b=c'), 'https://example.org:443'],
    [undefined, 'unknown'],
    ['', 'unknown'],
    ['not a url', 'unknown'],
    ['example.com:80', 'unknown'],
    ['ftp://example.com', 'unknown'],
    ['file:///etc/passwd', 'unknown'],
    ['unix:/var/run/docker.sock', 'unknown'],
    ['http://', 'unknown'],
  ];
  for (const [input, expected] of cases) {
    test(`${String(input)} → ${expected}`, () => {
      assert.equal(sanitizeOrigin(input), expected);
      // Second call is served from the cache and must agree.
      assert.equal(sanitizeOrigin(input), expected);
    });
  }

  test('stays correct past the cache bound', () => {
    for (let i = 0; i < 3000; i++) {
      assert.equal(
        sanitizeOrigin(`http://host-${i}.example:${1000 + (i % 50)}/p?q=${i}`),
        `http://host-${i}.example:${1000 + (i % 50)}`,
      );
    }
    assert.equal(sanitizeOrigin('http://example.com'), 'http://example.com:80');
  });

  test('non-string garbage is unknown', () => {
    assert.equal(sanitizeOrigin(42 as never), 'unknown');
    assert.equal(sanitizeOrigin(null as never), 'unknown');
  });
});

describe('normalizeMethod', () => {
  test('known methods pass, upper-cased', () => {
    for (const m of [
      'GET',
      'HEAD',
      'POST',
      'PUT',
      'DELETE',
      'CONNECT',
      'OPTIONS',
      'TRACE',
      'PATCH',
      'QUERY',
    ]) {
      assert.equal(normalizeMethod(m), m);
      assert.equal(normalizeMethod(m.toLowerCase()), m);
    }
    assert.equal(normalizeMethod('Get'), 'GET');
  });

  test('anything else is _OTHER', () => {
    for (const m of ['PROPFIND', 'FOO', '', 'GET ', 'get\n', 'X'.repeat(10_000)]) {
      assert.equal(normalizeMethod(m), '_OTHER');
    }
    assert.equal(normalizeMethod(undefined as never), '_OTHER');
  });
});
