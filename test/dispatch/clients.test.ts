import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  Agent,
  Client,
  type Dispatcher,
  getGlobalDispatcher,
  Pool,
  request,
  setGlobalDispatcher,
  stream,
  fetch as undiciFetch,
} from 'undici';
import { bulkhead, pipeline, resilient, retry, timeout } from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Every client API undici offers, on every dispatcher kind, through both integration paths:
// the pipeline must be invisible except for what it adds.

let upstream: Upstream;
let flakyCalls = 0;
before(async () => {
  // /flaky alternates 503, 200, 503, 200…: every logical request needs exactly one retry.
  upstream = await startUpstream((req) =>
    req.path === '/flaky' && flakyCalls++ % 2 === 0
      ? { kind: 'respond', status: 503, body: 'busy' }
      : { kind: 'respond', status: 200, headers: { 'x-path': req.path }, body: `hello ${req.method}` },
  );
});
after(() => upstream.close());

const makeStages = () =>
  pipeline([
    timeout(5_000),
    retry({ maxAttempts: 2, backoff: { initialDelay: 1, maxDelay: 5 } }),
    bulkhead({ maxConcurrent: 4, maxQueue: 10 }),
  ]);

type Kind = 'Agent' | 'Pool' | 'Client';
const makeBase = (kind: Kind): Dispatcher =>
  kind === 'Agent' ? new Agent() : kind === 'Pool' ? new Pool(upstream.origin) : new Client(upstream.origin);

for (const kind of ['Agent', 'Pool', 'Client'] as const) {
  for (const path of ['compose', 'resilient'] as const) {
    describe(`${kind} through ${path}`, () => {
      let base: Dispatcher;
      let dispatcher: Dispatcher;
      before(() => {
        base = makeBase(kind);
        dispatcher = path === 'compose' ? base.compose(makeStages()) : resilient(base, makeStages());
      });
      after(() => dispatcher.close());

      test('request() gets status, headers and body', async () => {
        const before = upstream.count();
        const res = await request(upstream.url('/a'), { dispatcher });
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['x-path'], '/a');
        assert.equal(await res.body.text(), 'hello GET');
        assert.equal(upstream.count() - before, 1);
      });

      test('request() retries a 503 and the caller sees only the 200', async () => {
        const before = upstream.count({ path: '/flaky' });
        const res = await request(upstream.url('/flaky'), { dispatcher });
        assert.equal(res.statusCode, 200);
        assert.equal(await res.body.text(), 'hello GET');
        assert.equal(upstream.count({ path: '/flaky' }) - before, 2);
      });

      test('stream() writes the body to the factory stream', async () => {
        const chunks: Buffer[] = [];
        await stream(upstream.url('/s'), { dispatcher, method: 'POST', body: 'x' }, ({ statusCode }) => {
          assert.equal(statusCode, 200);
          return new Writable({
            write(chunk, _enc, cb) {
              chunks.push(chunk);
              cb();
            },
          });
        });
        assert.equal(Buffer.concat(chunks).toString(), 'hello POST');
      });

      test('undici fetch() reads the response', async () => {
        const res = await undiciFetch(upstream.url('/f'), { dispatcher });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('x-path'), '/f');
        assert.equal(await res.text(), 'hello GET');
      });
    });
  }
}

describe("Node's global fetch after setGlobalDispatcher", () => {
  test('goes through the pipeline (a 503 is retried)', async (t) => {
    const previous = getGlobalDispatcher();
    const dispatcher = resilient(new Agent(), makeStages());
    setGlobalDispatcher(dispatcher);
    t.after(async () => {
      setGlobalDispatcher(previous);
      await dispatcher.close();
    });
    const before = upstream.count({ path: '/flaky' });
    const res = await globalThis.fetch(upstream.url('/flaky'));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello GET');
    assert.equal(upstream.count({ path: '/flaky' }) - before, 2, 'the 503 was retried by our pipeline');
  });
});
