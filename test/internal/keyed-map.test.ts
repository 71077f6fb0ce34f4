import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KeyedMap } from '../../src/internal/keyed-map.js';

interface Entry {
  key: string;
  busy: boolean;
}

const make = (capacity: number) =>
  new KeyedMap<Entry>(
    capacity,
    (key) => ({ key, busy: false }),
    (e) => !e.busy,
  );

describe('KeyedMap', () => {
  test('creates on first use and returns the same entry after', () => {
    const map = make(3);
    const a = map.get('a');
    assert.equal(map.get('a'), a);
    map.get('b');
    assert.equal(map.get('a'), a);
    assert.equal(map.size, 2);
  });

  test('evicts the least recently used idle entry beyond capacity', () => {
    const map = make(3);
    map.get('a');
    map.get('b');
    map.get('c');
    map.get('a'); // a is now more recent than b and c
    map.get('d');
    assert.deepEqual([...map.entries()].map(([k]) => k).sort(), ['a', 'c', 'd']);
  });

  test('never evicts a busy entry; grows past capacity only by busy ones', () => {
    const map = make(2);
    map.get('a').busy = true;
    map.get('b').busy = true;
    map.get('c');
    assert.equal(map.size, 3);
    map.get('d');
    assert.deepEqual([...map.entries()].map(([k]) => k).sort(), ['a', 'b', 'd']);
  });

  test('the remembered last entry never outlives its eviction', () => {
    const map = make(1);
    const a = map.get('a');
    map.get('b'); // evicts a
    assert.equal(map.peek('a'), undefined);
    const again = map.get('a');
    assert.notEqual(again, a, 'a fresh entry, not the evicted one');
    map.delete('a');
    assert.notEqual(map.get('a'), again);
  });
});
