// Every fault the test upstream can produce (the endless `flood` body is in security.test.ts),
// sent through standardPipeline with short timeouts so the suite stays fast, once composed onto
// an Agent and once wrapped with resilient(). After each scenario the same invariants are
// checked: every request settled within its total timeout plus a margin, with an outcome from
// the expected set; no POST ran twice upstream; no warning and no unhandled rejection; once
// closed, no socket open on either side and nothing in flight or queued.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { Dispatcher } from 'undici';
import {
  type CircuitOpenError,
  isCircuitOpenError,
  isTimeoutError,
  type ResilienceInterceptor,
  resilient,
  type StandardPipelineOptions,
  standardPipeline,
  TimeoutError,
} from '../../src/index.js';
import { mulberry32 } from '../helpers/prng.js';
import {
  type Behaviour,
  refusedOrigin,
  type Script,
  seededScript,
  startUpstream,
  type Upstream,
} from '../helpers/upstream.js';
import {
  closeAndCheck,
  destroyQuietly,
  EXPECTED_ERRORS,
  errorLabel,
  exchange,
  executions,
  type Outcome,
  ProcessGuard,
  requestId,
  StallRecorder,
  sleep,
  type TrackingConnector,
  trackedAgent,
} from './harness.js';

const TOTAL = 400;
const ATTEMPT = 120;
const MAX_ATTEMPTS = 3;
/** Scheduling slack on a loaded 2-core machine running two test files at once. */
const MARGIN = 100;

interface Call {
  method?: 'GET' | 'POST' | 'PUT';
  idempotencyKey?: boolean;
  path?: string;
}

interface Result extends Outcome {
  call: Call;
  id: string;
}

type Mode = 'compose' | 'resilient';

interface Rig {
  interceptor: ResilienceInterceptor;
  dispatcher: Dispatcher;
  connector: TrackingConnector;
  guard: ProcessGuard;
  stalls: StallRecorder;
}

/** Rigs of the running test, torn down after it whatever happened (a failed assertion included). */
const live: Rig[] = [];

async function tearDown(): Promise<void> {
  for (const r of live.splice(0)) {
    r.guard.dispose();
    r.stalls.dispose();
    r.connector.dispose();
    await destroyQuietly(r.dispatcher);
  }
}

function rig(mode: Mode, options: StandardPipelineOptions = {}, connectDelayMs = 0): Rig {
  const interceptor = standardPipeline({
    totalTimeout: TOTAL,
    attemptTimeout: ATTEMPT,
    retry: { maxAttempts: MAX_ATTEMPTS, backoff: { initialDelay: 10, maxDelay: 40 } },
    // Out of the way unless a scenario is about the breaker: each scenario fails on purpose.
    circuitBreaker: { consecutiveFailures: 1_000, failureRatio: false },
    bulkhead: { maxConcurrent: 16, maxQueue: 64 },
    ...options,
  });
  const { agent, connector } = trackedAgent(connectDelayMs);
  const dispatcher = mode === 'compose' ? agent.compose(interceptor) : resilient(agent, interceptor);
  const r = { interceptor, dispatcher, connector, guard: new ProcessGuard(), stalls: new StallRecorder() };
  live.push(r);
  return r;
}

/** Sends `calls` at once (or one after another), each with a unique `x-request-id`. */
async function send(r: Rig, origin: string, calls: readonly Call[], sequential = false): Promise<Result[]> {
  const one = async (call: Call): Promise<Result> => {
    const id = requestId();
    const headers: Record<string, string> = { 'x-request-id': id };
    if (call.idempotencyKey) headers['idempotency-key'] = id;
    const method = call.method ?? 'GET';
    const outcome = await exchange(`${origin}${call.path ?? '/'}`, {
      dispatcher: r.dispatcher,
      method,
      headers,
      body: method === 'GET' ? undefined : `{"id":"${id}"}`,
    });
    return { ...outcome, call, id };
  };
  if (!sequential) return Promise.all(calls.map(one));
  const results: Result[] = [];
  for (const call of calls) results.push(await one(call));
  return results;
}

/** The invariants every scenario ends with; closes the rig. */
async function verify(
  r: Rig,
  results: readonly Result[],
  upstream: Upstream | null,
  total = TOTAL,
): Promise<void> {
  try {
    const ran = upstream === null ? new Map<string, number>() : executions(upstream);
    for (const res of results) {
      const what = `${res.call.method ?? 'GET'} ${res.id} (${res.status ?? errorLabel(res.error)})`;
      const stalled = r.stalls.stalledDuring(res.startedAt, res.startedAt + res.ms);
      assert.ok(
        res.ms <= total + MARGIN + stalled,
        `${what} settled after ${res.ms.toFixed(0)} ms (the process stalled ${stalled.toFixed(0)} ms)`,
      );
      if (res.error !== undefined) {
        assert.ok(
          EXPECTED_ERRORS.has(errorLabel(res.error)),
          `${what}: unexpected error ${String((res.error as Error)?.stack ?? res.error)}`,
        );
      }
      const count = ran.get(res.id) ?? 0;
      const safe = (res.call.method ?? 'GET') !== 'POST' || res.call.idempotencyKey === true;
      if (safe) assert.ok(count <= MAX_ATTEMPTS, `${what} ran ${count} times`);
      else {
        assert.ok(count <= 1, `${what}: a POST without Idempotency-Key ran ${count} times`);
        if (res.status !== undefined) assert.equal(count, 1, `${what}: answered, so ran exactly once`);
      }
    }
    await closeAndCheck(r.interceptor, r.dispatcher, upstream, r.connector);
    await r.guard.assertClean();
  } finally {
    await tearDown();
  }
}

const respond = (status: number, headers?: Record<string, string>, body = 'x'): Behaviour => ({
  kind: 'respond',
  status,
  headers,
  body,
});

/** A script that answers each request id's n-th arrival with `plan[n]` (the last one repeats). */
function perRequest(plan: readonly Behaviour[]): Script {
  const seen = new Map<string, number>();
  return (req) => {
    const id = String(req.headers['x-request-id']);
    const n = seen.get(id) ?? 0;
    seen.set(id, n + 1);
    return plan[Math.min(n, plan.length - 1)]!;
  };
}

const GET_AND_POST: readonly Call[] = [{ method: 'GET' }, { method: 'POST' }];

for (const mode of ['compose', 'resilient'] as const) {
  describe(`faults through standardPipeline (${mode})`, () => {
    let upstream: Upstream;
    before(async () => {
      upstream = await startUpstream();
    });
    after(() => upstream.close());
    afterEach(tearDown);

    const use = (script: Script): void => {
      upstream.reset();
      upstream.setScript(script);
    };

    test('refused connection: every method retried (it never left), ECONNREFUSED after 3 attempts', async () => {
      const r = rig(mode);
      const origin = await refusedOrigin();
      const results = await send(r, origin, [...GET_AND_POST, { method: 'PUT' }]);
      for (const res of results) {
        assert.equal(errorLabel(res.error), 'ECONNREFUSED');
        assert.equal((res.error as { attempts?: number }).attempts, MAX_ATTEMPTS);
      }
      await verify(r, results, null);
    });

    test('accepted, never answered: attempt timeouts, the POST not repeated', async () => {
      use({ kind: 'hang' });
      const r = rig(mode);
      const results = await send(r, upstream.origin, GET_AND_POST);
      const [get, post] = results as [Result, Result];
      assert.ok(isTimeoutError(get.error), 'GET timed out');
      assert.ok(post.error instanceof TimeoutError && post.error.scope === 'attempt');
      const ran = executions(upstream);
      assert.ok((ran.get(get.id) ?? 0) >= 2, 'the GET was retried');
      assert.equal(ran.get(post.id), 1);
      await verify(r, results, upstream);
    });

    test('reset before headers: GET retried to the last attempt, POST answered with the error', async () => {
      use({ kind: 'reset' });
      const r = rig(mode);
      const results = await send(r, upstream.origin, [
        ...GET_AND_POST,
        { method: 'POST', idempotencyKey: true },
      ]);
      const [get, post, keyed] = results as [Result, Result, Result];
      const ran = executions(upstream);
      assert.equal(ran.get(get.id), MAX_ATTEMPTS);
      assert.equal(ran.get(post.id), 1);
      assert.equal(ran.get(keyed.id), MAX_ATTEMPTS, 'an Idempotency-Key makes a POST retryable');
      for (const res of results) assert.ok(['ECONNRESET', 'UND_ERR_SOCKET'].includes(errorLabel(res.error)));
      await verify(r, results, upstream);
    });

    test('headers then reset mid-body: the body fails, nothing is retried after the first byte', async () => {
      use({ kind: 'reset-mid-body', body: 'partial', contentLength: 1_000 });
      const r = rig(mode);
      const results = await send(r, upstream.origin, GET_AND_POST);
      for (const res of results) {
        assert.equal(res.status, 200);
        assert.ok(res.inBody && res.error !== undefined, 'the body errored');
        assert.equal(executions(upstream).get(res.id), 1);
      }
      await verify(r, results, upstream);
    });

    test('endless trickle: the total timeout ends the body and the socket is closed', async () => {
      use({ kind: 'trickle', intervalMs: 15 });
      const r = rig(mode);
      const results = await send(r, upstream.origin, GET_AND_POST);
      for (const res of results) {
        assert.equal(res.status, 200);
        assert.ok(res.error instanceof TimeoutError, String(res.error));
        assert.equal((res.error as TimeoutError).scope, 'total');
        assert.ok(res.ms >= TOTAL - 5, `ended at ${res.ms} ms, not before the deadline`);
        assert.ok(res.bytes > 0);
      }
      await upstream.waitForClosedByClient(2, 1_000);
      await verify(r, results, upstream);
    });

    test('headers, then silence: the total timeout still ends it (the attempt one stopped at headers)', async () => {
      use({ kind: 'trickle', intervalMs: 60_000 });
      const r = rig(mode);
      const results = await send(r, upstream.origin, GET_AND_POST);
      for (const res of results) {
        assert.equal(res.status, 200);
        assert.ok(res.error instanceof TimeoutError && res.error.scope === 'total');
        assert.equal(res.bytes, 0);
      }
      await verify(r, results, upstream);
    });

    test('a slow but finite body inside the deadline arrives whole', async () => {
      use({ kind: 'trickle', intervalMs: 20, count: 5, chunk: 'ab' });
      const r = rig(mode);
      const results = await send(r, upstream.origin, GET_AND_POST);
      for (const res of results) assert.deepEqual([res.status, res.error, res.bytes], [200, undefined, 10]);
      await verify(r, results, upstream);
    });

    test('503 then 200: GET and keyed POST recover; a plain POST gets its 503, sent once', async () => {
      use(perRequest([respond(503), respond(200)]));
      const r = rig(mode);
      const results = await send(r, upstream.origin, [
        ...GET_AND_POST,
        { method: 'PUT' },
        { method: 'POST', idempotencyKey: true },
      ]);
      assert.deepEqual(
        results.map((res) => res.status),
        [200, 503, 200, 200],
      );
      await verify(r, results, upstream);
    });

    test('answers slower than the attempt timeout: retried until the deadline, then a timeout', async () => {
      use({ kind: 'respond', status: 200, body: 'late', delayMs: ATTEMPT + 80 });
      const r = rig(mode);
      const results = await send(r, upstream.origin, GET_AND_POST);
      for (const res of results) assert.ok(isTimeoutError(res.error), String(res.error));
      assert.equal(executions(upstream).get(results[1]!.id), 1);
      await verify(r, results, upstream);
    });

    test('keep-alive sockets closed while the next request is on them: no POST runs twice', async () => {
      // /a answers, then its socket dies 20 ms later; /b takes 30 ms to answer. A /b sent on a
      // socket /a left behind is received (executed) and then loses its connection: a GET may be
      // retried, a POST must come back as an error, not run again.
      use((req) =>
        req.path === '/a'
          ? { kind: 'close-after-response', status: 200, body: 'bye', closeDelayMs: 20 }
          : { kind: 'respond', status: 200, body: 'ok', delayMs: 30 },
      );
      const r = rig(mode);
      const random = mulberry32(mode === 'compose' ? 1 : 2);
      const results: Result[] = [];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = 0; i < 5; i++) {
            for (const method of ['GET', 'POST'] as const) {
              await send(r, upstream.origin, [{ path: '/a' }]);
              await sleep(random() * 25);
              results.push(...(await send(r, upstream.origin, [{ method, path: '/b' }])));
            }
          }
        }),
      );
      const ran = executions(upstream);
      const hit = results.filter((res) => res.error !== undefined || (ran.get(res.id) ?? 0) > 1);
      assert.ok(hit.length > 0, 'some requests raced a closing socket');
      assert.ok(
        results.some((res) => res.call.method === 'POST' && res.error !== undefined && ran.get(res.id) === 1),
        'a POST that reached the upstream and then lost its socket was not sent again',
      );
      await verify(r, results, upstream);
    });

    test('a connection slower than the attempt timeout: the attempt times out while connecting', async () => {
      use({ kind: 'respond', status: 200, body: 'ok' });
      const r = rig(mode, {}, ATTEMPT + 100);
      const results = await send(r, upstream.origin, GET_AND_POST);
      for (const res of results) assert.ok(isTimeoutError(res.error), String(res.error));
      // Let the held-back connections finish opening, so close() can close them.
      await sleep(ATTEMPT + 150);
      await verify(r, results, upstream);
    });

    test('a seeded mix of every fault, 150 requests at once through a small bulkhead', async () => {
      use(
        seededScript(
          9,
          { ok: 6, status503: 2, status429: 1, reset: 1, slow: 1, hang: 0.5 },
          { retryAfter: '0', slowMs: 60 },
        ),
      );
      const r = rig(mode, { bulkhead: { maxConcurrent: 8, maxQueue: 64 } });
      const calls: Call[] = [];
      for (let i = 0; i < 150; i++) {
        calls.push(
          [
            { method: 'GET' },
            { method: 'POST' },
            { method: 'PUT' },
            { method: 'POST', idempotencyKey: true },
          ][i % 4] as Call,
        );
      }
      const results = await send(r, upstream.origin, calls);
      const labels = new Set(results.map((res) => res.status ?? errorLabel(res.error)));
      assert.ok(labels.has(200), 'most succeed');
      assert.ok(labels.has('BREAKWATER_BULKHEAD_REJECTED'), 'the excess is rejected');
      assert.ok(upstream.maxConcurrent <= 8, `at most 8 in flight upstream, saw ${upstream.maxConcurrent}`);
      await verify(r, results, upstream);
    });

    test('upstream down: the breaker opens, then fails fast without touching the network', async () => {
      use({ kind: 'respond', status: 503, body: 'down' });
      const r = rig(mode, {
        retry: { maxAttempts: 1 },
        circuitBreaker: { consecutiveFailures: 5, failureRatio: false, halfOpenAfter: 60_000 },
      });
      const first = await send(r, upstream.origin, Array(5).fill({ method: 'GET' }), true);
      assert.ok(first.every((res) => res.status === 503));
      const seen = upstream.requests.length;
      const open = await send(r, upstream.origin, Array(50).fill({ method: 'GET' }), true);
      for (const res of open) {
        assert.ok(isCircuitOpenError(res.error), String(res.error));
        // A single call may catch a GC pause or a busy machine; none waits on the network.
        assert.ok(res.ms < 100, `failed fast: ${res.ms.toFixed(2)} ms`);
        assert.equal((res.error as CircuitOpenError).key, upstream.origin);
      }
      const sorted = open.map((res) => res.ms).sort((a, b) => a - b);
      assert.ok(sorted[sorted.length >> 1]! < 2, `median ${sorted[sorted.length >> 1]!.toFixed(2)} ms`);
      assert.equal(upstream.requests.length, seen, 'no request left while open');
      await verify(r, [...first, ...open], upstream);
    });

    test('close() lets requests in flight finish, refuses new ones, leaves no socket', async () => {
      use({ kind: 'respond', status: 200, body: 'ok', delayMs: 60 });
      const r = rig(mode);
      const inFlight = send(r, upstream.origin, [{ method: 'GET' }, { method: 'POST' }, { method: 'GET' }]);
      await upstream.waitForRequests(3, 1_000);
      const closing = r.interceptor.close();
      const late = await send(r, upstream.origin, [{ method: 'GET' }]);
      assert.ok(late[0]!.error instanceof Error, 'refused after close()');
      const results = await inFlight;
      assert.deepEqual(
        results.map((res) => res.status),
        [200, 200, 200],
      );
      await closing;
      await verify(r, results, upstream);
    });

    test('destroy() rejects the queued and aborts the in-flight at once', async () => {
      use({ kind: 'hang' });
      const r = rig(mode, {
        totalTimeout: 5_000,
        attemptTimeout: 5_000,
        bulkhead: { maxConcurrent: 2, maxQueue: 10 },
      });
      const pending = send(r, upstream.origin, Array(6).fill({ method: 'GET' }));
      await upstream.waitForRequests(2, 1_000);
      const started = performance.now();
      r.interceptor.destroy(new Error('shutting down'));
      const results = await pending;
      assert.ok(performance.now() - started < 50, 'settled at once');
      for (const res of results) assert.equal((res.error as Error).message, 'shutting down');
      await r.dispatcher.close();
      await upstream.waitForSocketsClosed(1_000);
      assert.equal(r.connector.open(), 0);
      r.connector.dispose();
      await r.guard.assertClean();
      await tearDown();
    });
  });
}
