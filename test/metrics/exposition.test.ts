import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { Agent, type Dispatcher, request } from 'undici';
import {
  bulkhead,
  circuitBreaker,
  isBulkheadRejectedError,
  isCircuitOpenError,
  isTimeoutError,
  pipeline,
  prometheusMetrics,
  type ResilienceInterceptor,
  retry,
  TimeoutError,
  timeout,
} from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { parseSamples, type Sample, select, table } from './fixtures/exposition.js';
import { findBinary, promtool, required, skipUnlessFound } from './fixtures/prometheus-binaries.js';

/*
 * One scripted run through a real pipeline against a real upstream, designed so that every event
 * happens exactly once (or twice, for the successes) and nothing else happens:
 *
 *   1. GET /ok, twice                     → 2 successes
 *   2. POST /hang holds the only bulkhead slot (maxConcurrent 1, maxQueue 0);
 *      a GET sent meanwhile               → 1 bulkhead rejection
 *      the POST's attempt timeout fires   → 1 timeout (a POST is not retried: no second attempt);
 *                                           the breaker counts 1 failure
 *   3. GET /flaky answers 503             → the breaker's 2nd consecutive failure: it opens;
 *                                           the retry stage schedules 1 retry (reason status);
 *                                           that attempt is refused by the open circuit, so the
 *                                           request ends as circuit_open
 *
 * The upstream must see exactly 4 requests; the exposition must show exactly these numbers.
 */

let upstream: Upstream;
let agent: Agent;
let interceptor: ResilienceInterceptor;
let dispatcher: Dispatcher;
let registry: Registry;
let exposition: string;
let samples: Sample[];

const ATTEMPT_TIMEOUT_MS = 1_000;

before(
  async () => {
    upstream = await startUpstream((req) => {
      if (req.path === '/hang') return { kind: 'hang' };
      if (req.path === '/flaky') return { kind: 'respond', status: 503, body: 'busy' };
      return { kind: 'respond', status: 200, body: 'ok' };
    });
    registry = new Registry();
    interceptor = pipeline(
      [
        timeout(10_000),
        retry({ maxAttempts: 2, backoff: { initialDelay: 1, maxDelay: 5 }, budget: false }),
        circuitBreaker({ consecutiveFailures: 2, failureRatio: false, halfOpenAfter: 60_000 }),
        bulkhead({ maxConcurrent: 1, maxQueue: 0 }),
        timeout(ATTEMPT_TIMEOUT_MS, { until: 'headers' }),
      ],
      { metrics: prometheusMetrics({ registry }) },
    );
    agent = new Agent();
    dispatcher = agent.compose(interceptor);

    // 1. two successes
    for (let i = 0; i < 2; i++) {
      const res = await request(upstream.url('/ok'), { dispatcher });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'ok');
    }

    // 2. a hanging POST holds the slot; a GET meanwhile is rejected; the POST times out
    const hanging = request(upstream.url('/hang'), { dispatcher, method: 'POST', body: 'x' });
    const hangingOutcome = hanging.then(
      () => assert.fail('the hanging POST should time out'),
      (err: unknown) => err,
    );
    await upstream.waitForRequests(3);
    await assert.rejects(request(upstream.url('/ok'), { dispatcher }), (err) => isBulkheadRejectedError(err));
    const timedOut = await hangingOutcome;
    assert.ok(isTimeoutError(timedOut), `the POST fails with TimeoutError, got ${String(timedOut)}`);
    assert.ok(timedOut instanceof TimeoutError);
    assert.equal(timedOut.scope, 'attempt');

    // 3. a 503 opens the circuit; its retry meets the open circuit
    await assert.rejects(request(upstream.url('/flaky'), { dispatcher }), (err) => isCircuitOpenError(err));

    exposition = await registry.metrics();
    samples = parseSamples(exposition);
  },
  { timeout: 30_000 },
);

after(
  async () => {
    await agent?.destroy();
    await interceptor?.close();
    await upstream?.close();
  },
  { timeout: 10_000 },
);

describe('the exposition after a scripted run through a real pipeline', { timeout: 10_000 }, () => {
  test('the upstream saw exactly the 4 requests that left (no rejection, no refused retry)', () => {
    assert.deepEqual(
      upstream.requests.map((r) => `${r.method} ${r.path}`),
      ['GET /ok', 'GET /ok', 'POST /hang', 'GET /flaky'],
    );
  });

  test('every series carries the upstream origin and nothing else', () => {
    const origins = new Set(samples.map((s) => s.labels.origin));
    assert.deepEqual([...origins], [upstream.origin]);
  });

  test('requests_total: 2 successes, 1 bulkhead rejection, 1 timeout, 1 circuit open, nothing else', () => {
    assert.deepEqual(table(samples, 'breakwater_requests_total'), {
      'method=GET,outcome=success': 2,
      'method=GET,outcome=bulkhead_rejected': 1,
      'method=POST,outcome=timeout': 1,
      'method=GET,outcome=circuit_open': 1,
    });
  });

  test('retries_total: exactly 1, for a status', () => {
    assert.deepEqual(table(samples, 'breakwater_retries_total'), { 'reason=status': 1 });
  });

  test('bulkhead_rejections_total 1; timeouts_total 1 attempt timeout', () => {
    assert.deepEqual(table(samples, 'breakwater_bulkhead_rejections_total'), { '': 1 });
    assert.deepEqual(table(samples, 'breakwater_timeouts_total'), { 'scope=attempt': 1 });
  });

  test('circuit: state open (1, the others 0), one transition to open, one refused attempt', () => {
    assert.deepEqual(table(samples, 'breakwater_circuit_state'), {
      'state=closed': 0,
      'state=open': 1,
      'state=half_open': 0,
    });
    assert.deepEqual(table(samples, 'breakwater_circuit_transitions_total'), { 'to=open': 1 });
    assert.deepEqual(table(samples, 'breakwater_circuit_rejections_total'), { '': 1 });
  });

  test('attempts_total counts only what reached the upstream: 2×2xx, 1×5xx, 1 timeout', () => {
    assert.deepEqual(table(samples, 'breakwater_attempts_total'), {
      'method=GET,status_class=2xx': 2,
      'method=GET,status_class=5xx': 1,
      'method=POST,status_class=timeout': 1,
    });
  });

  test('duration histograms: one observation per request and per attempt, in matching series', () => {
    assert.deepEqual(table(samples, 'breakwater_request_duration_seconds_count'), {
      'method=GET,status_class=2xx': 2,
      'method=GET,status_class=bulkhead_rejected': 1,
      'method=POST,status_class=timeout': 1,
      'method=GET,status_class=circuit_open': 1,
    });
    assert.deepEqual(table(samples, 'breakwater_attempt_duration_seconds_count'), {
      'method=GET,status_class=2xx': 2,
      'method=GET,status_class=5xx': 1,
      'method=POST,status_class=timeout': 1,
    });
    // The timed-out request lasted at least its attempt timeout, and far less than the total one.
    const [timedOut] = select(samples, 'breakwater_request_duration_seconds_sum', {
      status_class: 'timeout',
    });
    assert.ok(timedOut, 'a duration sum for the timed-out request');
    assert.ok(
      timedOut.value >= ATTEMPT_TIMEOUT_MS / 1000 - 0.005,
      `${timedOut.value} s >= the attempt timeout`,
    );
    assert.ok(timedOut.value < 5, `${timedOut.value} s is not the total timeout`);
    // +Inf holds every observation, and buckets never decrease.
    for (const name of ['breakwater_request_duration_seconds', 'breakwater_attempt_duration_seconds']) {
      for (const count of select(samples, `${name}_count`)) {
        const buckets = select(samples, `${name}_bucket`, {
          method: count.labels.method!,
          status_class: count.labels.status_class!,
        });
        assert.equal(buckets.at(-1)?.labels.le, '+Inf');
        assert.equal(buckets.at(-1)?.value, count.value);
        buckets.reduce((prev, b) => {
          assert.ok(b.value >= prev, `${name} buckets are cumulative`);
          return b.value;
        }, 0);
      }
    }
  });

  test('nothing queued, nothing in flight at the end; no budget refusal, no queue wait', () => {
    assert.deepEqual(table(samples, 'breakwater_queue_depth'), { '': 0 });
    assert.deepEqual(table(samples, 'breakwater_in_flight'), { '': 0 });
    assert.deepEqual(table(samples, 'breakwater_retry_budget_exhausted_total'), {});
    assert.deepEqual(table(samples, 'breakwater_queue_wait_seconds_count'), {});
  });

  test('no metric outside the specification has a sample', () => {
    const allowed = new Set([
      'breakwater_requests_total',
      'breakwater_request_duration_seconds_bucket',
      'breakwater_request_duration_seconds_sum',
      'breakwater_request_duration_seconds_count',
      'breakwater_attempts_total',
      'breakwater_attempt_duration_seconds_bucket',
      'breakwater_attempt_duration_seconds_sum',
      'breakwater_attempt_duration_seconds_count',
      'breakwater_retries_total',
      'breakwater_bulkhead_rejections_total',
      'breakwater_timeouts_total',
      'breakwater_circuit_state',
      'breakwater_circuit_transitions_total',
      'breakwater_circuit_rejections_total',
      'breakwater_queue_depth',
      'breakwater_in_flight',
    ]);
    assert.deepEqual(
      [...new Set(samples.map((s) => s.name))].filter((n) => !allowed.has(n)),
      [],
    );
  });
});

const promtoolBinary = findBinary('promtool');

describe('promtool check metrics on that exposition', {
  skip: skipUnlessFound(promtoolBinary, 'promtool'),
}, () => {
  test('reports no problems', () => {
    const bin = required(promtoolBinary, 'promtool');
    const result = promtool(bin, ['check', 'metrics'], exposition);
    assert.equal(result.output, '', 'promtool reported problems');
    assert.equal(result.status, 0);
  });
});
