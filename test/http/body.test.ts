import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Agent, type Dispatcher, fetch, request, FormData as UndiciFormData } from 'undici';
import { isReplayableBody } from '../../src/http/body.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

describe('isReplayableBody', () => {
  const cases: Array<[string, unknown, boolean]> = [
    ['undefined', undefined, true],
    ['null', null, true],
    ['string', 'payload', true],
    ['empty string', '', true],
    ['Buffer', Buffer.from('payload'), true],
    ['Uint8Array', new Uint8Array([1, 2, 3]), true],
    ['DataView', new DataView(new ArrayBuffer(4)), true],
    ['Float64Array', new Float64Array(2), true],
    ['ArrayBuffer', new ArrayBuffer(8), true],
    ['Blob', new Blob(['payload']), true],
    ['File', new File(['payload'], 'a.txt'), true],
    ['Readable', Readable.from(['payload']), false],
    ['ReadableStream', new ReadableStream(), false],
    [
      'async generator',
      (async function* () {
        yield 'payload';
      })(),
      false,
    ],
    [
      'sync generator',
      (function* () {
        yield 'payload';
      })(),
      false,
    ],
    ['array of chunks (an iterable)', ['a', 'b'], false],
    ['Set of chunks (an iterable)', new Set(['a']), false],
    ['global FormData', new FormData(), false],
    ["undici's FormData", new UndiciFormData(), false],
    [
      'Blob-like object',
      { [Symbol.toStringTag]: 'Blob', size: 1, stream: () => new ReadableStream(), arrayBuffer: () => 0 },
      false,
    ],
    ['number', 42, false],
    ['plain object', { a: 1 }, false],
  ];
  for (const [name, body, expected] of cases) {
    test(`${name} → ${expected}`, () => assert.equal(isReplayableBody(body), expected));
  }
});

describe('isReplayableBody agrees with what undici sends twice', () => {
  let upstream: Upstream;
  let agent: Agent;
  before(async () => {
    upstream = await startUpstream();
    agent = new Agent();
  });
  after(async () => {
    await agent.close();
    await upstream.close();
  });

  async function postTwice(body: unknown): Promise<string[]> {
    upstream.reset();
    for (let i = 0; i < 2; i++) {
      // undici's types omit Blob from `body`, though its runtime accepts one (lib/core/request.js).
      const options = {
        method: 'POST',
        body: body as Dispatcher.RequestOptions['body'],
        dispatcher: agent,
      } as const;
      const response = await request(upstream.url('/'), options);
      await response.body.dump();
    }
    return upstream.requests.map((r) => r.body.toString());
  }

  test('the same Blob sent twice arrives twice, whole', async () => {
    const blob = new Blob(['the same bytes']);
    assert.equal(isReplayableBody(blob), true);
    assert.deepEqual(await postTwice(blob), ['the same bytes', 'the same bytes']);
  });

  test('the same Buffer sent twice arrives twice, whole', async () => {
    const buffer = Buffer.from('the same bytes');
    assert.equal(isReplayableBody(buffer), true);
    assert.deepEqual(await postTwice(buffer), ['the same bytes', 'the same bytes']);
  });

  test('regression: a Readable sent twice arrives empty the second time, silently', async () => {
    const stream = Readable.from(['first and only']);
    assert.equal(isReplayableBody(stream), false);
    assert.deepEqual(await postTwice(stream), ['first and only', '']);
  });

  test('fetch() hands the dispatcher a one-shot async iterable, even for a string body', async () => {
    const seen: unknown[] = [];
    const spying = agent.compose((dispatch) => (opts, handler) => {
      seen.push(opts.body);
      return dispatch(opts, handler);
    });
    const response = await fetch(upstream.url('/'), { method: 'POST', body: 'text', dispatcher: spying });
    await response.arrayBuffer();
    assert.equal(seen.length, 1);
    assert.equal(typeof (seen[0] as AsyncIterable<unknown>)[Symbol.asyncIterator], 'function');
    assert.equal(isReplayableBody(seen[0]), false);
  });
});
