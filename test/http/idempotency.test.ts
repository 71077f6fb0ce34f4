import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { hasIdempotencyKey, IDEMPOTENT_METHODS } from '../../src/http/idempotency.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

describe('IDEMPOTENT_METHODS', () => {
  test('lists the idempotent methods, upper-case, and cannot be changed', () => {
    assert.deepEqual(IDEMPOTENT_METHODS, ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE', 'QUERY']);
    assert.ok(!IDEMPOTENT_METHODS.includes('POST'));
    assert.ok(!IDEMPOTENT_METHODS.includes('PATCH'));
    assert.ok(Object.isFrozen(IDEMPOTENT_METHODS));
  });
});

describe('hasIdempotencyKey', () => {
  const cases: Array<[string, unknown, boolean]> = [
    ['undefined', undefined, false],
    ['null', null, false],
    ['a string', 'idempotency-key: abc', false],
    // plain object, as fetch() and most callers pass it
    ['object, canonical case', { 'Idempotency-Key': 'abc' }, true],
    ['object, lower case', { 'idempotency-key': 'abc' }, true],
    ['object, odd case', { 'IDEMPOTENCY-key': 'abc' }, true],
    ['object, array value', { 'idempotency-key': ['abc'] }, true],
    ['object, number value', { 'idempotency-key': 42 }, true],
    ['object, empty value', { 'idempotency-key': '' }, false],
    ['object, blank value', { 'idempotency-key': '  ' }, false],
    ['object, empty array value', { 'idempotency-key': [] }, false],
    ['object, array of blanks', { 'idempotency-key': ['', ' '] }, false],
    ['object, null value', { 'idempotency-key': null }, false],
    ['object, undefined value', { 'idempotency-key': undefined }, false],
    ['object, other headers only', { 'content-type': 'application/json', 'x-idempotency-key': 'a' }, false],
    ['object, a similar name of the same length', { 'idempotency-kez': 'abc' }, false],
    ['empty object', {}, false],
    // flat array
    ['flat array', ['content-type', 'text/plain', 'Idempotency-Key', 'abc'], true],
    ['flat array, empty value', ['idempotency-key', ''], false],
    ['flat array, the name as a value', ['x-note', 'idempotency-key', 'x-other', 'abc'], false],
    ['flat array, dangling name', ['idempotency-key'], false],
    ['empty array', [], false],
    // array of pairs
    [
      'pairs',
      [
        ['accept', '*/*'],
        ['IDEMPOTENCY-KEY', 'abc'],
      ],
      true,
    ],
    ['pairs, empty value', [['idempotency-key', '']], false],
    // iterables of pairs
    ['Map', new Map([['Idempotency-Key', 'abc']]), true],
    ['Map, other headers', new Map([['accept', '*/*']]), false],
    ['WHATWG Headers', new Headers({ 'Idempotency-Key': 'abc' }), true],
    ['WHATWG Headers, empty value', new Headers({ 'Idempotency-Key': '' }), false],
  ];

  for (const [name, headers, expected] of cases) {
    test(`${name} → ${expected}`, () => assert.equal(hasIdempotencyKey(headers), expected));
  }

  test('an own property only: an inherited one is not a header undici would send', () => {
    const headers = Object.create({ 'idempotency-key': 'abc' });
    assert.equal(hasIdempotencyKey(headers), false);
  });

  test('an iterator planted on Object.prototype does not turn a plain object into pairs', () => {
    const proto = Object.prototype as { [Symbol.iterator]?: unknown };
    proto[Symbol.iterator] = function* () {
      yield ['idempotency-key', 'planted'];
    };
    try {
      assert.equal(hasIdempotencyKey({ accept: '*/*' }), false);
      assert.equal(hasIdempotencyKey({ 'idempotency-key': 'abc' }), true);
    } finally {
      delete proto[Symbol.iterator];
    }
  });
});

describe('hasIdempotencyKey agrees with what undici sends', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream();
  });
  after(() => upstream.close());

  // Each shape undici accepts for `headers`: the server must receive the key we detected.
  const shapes: Array<[string, unknown, string]> = [
    ['object', { 'Idempotency-Key': 'k-object' }, 'k-object'],
    ['flat array', ['Idempotency-Key', 'k-flat'], 'k-flat'],
    ['Map', new Map([['Idempotency-Key', 'k-map']]), 'k-map'],
    ['object, array value', { 'Idempotency-Key': ['k-array'] }, 'k-array'],
  ];
  for (const [name, headers, key] of shapes) {
    test(name, async () => {
      assert.equal(hasIdempotencyKey(headers), true);
      const response = await request(upstream.url('/'), {
        method: 'POST',
        headers: headers as Record<string, string>,
        body: 'x',
      });
      await response.body.dump();
      assert.equal(upstream.requests.at(-1)?.headers['idempotency-key'], key);
    });
  }
});
