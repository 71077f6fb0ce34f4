import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { runScript, type ScriptRun } from '../helpers/child.js';
import { parseSamples, select } from './fixtures/exposition.js';
import { findBinary, promtool, required, skipUnlessFound } from './fixtures/prometheus-binaries.js';

// examples/cluster.ts as a user runs it (a child process through tsx): a primary and two workers,
// each worker with its own Registry, one aggregated scrape. `--once` makes the primary scrape its
// own /metrics over HTTP, print it and exit after its workers have.

/** Two workers sending a few requests take a couple of seconds; anything near this is a hang. */
const KILL_AFTER_MS = 45_000;
const REQUESTS_PER_WORKER = 7;

const runExample = (args: string[]) => runScript('examples/cluster.ts', args, KILL_AFTER_MS);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('examples/cluster.ts: one scrape for a Node cluster', { timeout: 60_000 }, () => {
  let once: Promise<ScriptRun>;
  before(() => {
    once = runExample(['--once', '--port', '0', '--requests', String(REQUESTS_PER_WORKER)]);
  });

  test("the aggregated exposition sums both workers' requests", async () => {
    const run = await once;
    assert.equal(run.signal, null, `the example ended by itself (stderr: ${run.stderr})`);
    assert.equal(run.code, 0, `exit code 0 (stderr: ${run.stderr})`);

    // What each worker did, by its own account and by its own registry.
    const workers = [
      ...run.stderr.matchAll(
        /^worker (\d+) \(pid (\d+)\): (\d+) requests, statuses (\S+), its own registry counts (\d+)$/gm,
      ),
    ].map((m) => ({
      id: Number(m[1]),
      pid: Number(m[2]),
      requests: Number(m[3]),
      statuses: JSON.parse(m[4]!) as Record<string, number>,
      ownCount: Number(m[5]),
    }));
    assert.equal(workers.length, 2, `two workers reported (stderr: ${run.stderr})`);
    assert.equal(new Set(workers.map((w) => w.pid)).size, 2, 'two processes');
    for (const w of workers) {
      assert.equal(w.requests, REQUESTS_PER_WORKER);
      assert.deepEqual(w.statuses, { 200: REQUESTS_PER_WORKER });
      assert.equal(w.ownCount, REQUESTS_PER_WORKER, `worker ${w.id}'s registry counts its own requests only`);
      assert.equal(isAlive(w.pid), false, `worker ${w.id} has exited`);
    }
    const upstreamRequests = Number(/^upstream received (\d+) requests$/m.exec(run.stderr)?.[1]);
    assert.equal(upstreamRequests, 2 * REQUESTS_PER_WORKER);

    // The scrape: one series per label set, holding the sum over the workers.
    const samples = parseSamples(run.stdout);
    const requests = select(samples, 'breakwater_requests_total');
    assert.equal(requests.length, 1, 'both workers share one series');
    const [series] = requests;
    assert.equal(series?.labels.method, 'GET');
    assert.equal(series?.labels.outcome, 'success');
    assert.match(series?.labels.origin ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    const total = workers.reduce((sum, w) => sum + w.ownCount, 0);
    assert.equal(series?.value, total, 'the sum of what each worker counted');
    assert.equal(series?.value, upstreamRequests, 'which is what the upstream received');
    for (const name of [
      'breakwater_attempts_total',
      'breakwater_request_duration_seconds_count',
      'breakwater_attempt_duration_seconds_count',
    ]) {
      assert.deepEqual(
        select(samples, name).map((s) => s.value),
        [total],
        `${name} is summed too`,
      );
    }
    // A gauge is summed as well: each worker reports its circuit closed, so "closed" reads 2.
    assert.deepEqual(
      select(samples, 'breakwater_circuit_state', { state: 'closed' }).map((s) => s.value),
      [2],
    );
  });

  const promtoolBinary = findBinary('promtool');
  test('the aggregated exposition passes promtool check metrics', {
    skip: skipUnlessFound(promtoolBinary, 'promtool'),
  }, async () => {
    const bin = required(promtoolBinary, 'promtool');
    const run = await once;
    assert.equal(run.code, 0, run.stderr);
    const result = promtool(bin, ['check', 'metrics'], run.stdout);
    assert.equal(result.output, '', 'promtool reported problems');
    assert.equal(result.status, 0);
  });

  test('a bad flag is a usage error (exit 2), not a hang', async () => {
    const run = await runExample(['--once', '--port', 'x']);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--port must be an integer/);
  });
});
