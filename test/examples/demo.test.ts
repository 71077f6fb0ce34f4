import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runScript } from '../helpers/child.js';

/** A demo run with a few hundred requests takes several seconds; anything near this is a hang. */
const KILL_AFTER_MS = 45_000;

/** Runs `examples/demo.ts` as `npm start` would (through tsx), killed if it does not end by itself. */
const runDemo = (args: string[]) => runScript('examples/demo.ts', args, KILL_AFTER_MS);

interface RunSummary {
  successRate: number;
  latencyMs: { p50: number; p95: number; p99: number };
  upstreamRequests: number;
  upstreamRequestsPerLogical: number;
  postsExecutedTwice: number;
  circuitOpens: number;
  peakQueueDepth: number;
  hedgesSent: number;
  hedgesWon: number;
  wallMs: number;
}

interface DemoJson {
  profile: string;
  seed: number;
  requests: number;
  concurrency: number;
  plain: RunSummary;
  breakwater: RunSummary;
}

async function runJson(args: string[]): Promise<DemoJson> {
  const run = await runDemo(['--json', '--requests', '120', ...args]);
  assert.equal(run.signal, null, `the demo ended by itself (stderr: ${run.stderr})`);
  assert.equal(run.code, 0, `exit code 0 (stderr: ${run.stderr})`);
  // --json prints exactly one JSON object and nothing else on stdout.
  return JSON.parse(run.stdout) as DemoJson;
}

function assertNumbers(summary: RunSummary): void {
  for (const [name, value] of Object.entries(summary)) {
    if (name === 'latencyMs') {
      for (const v of Object.values(value as object))
        assert.equal(typeof v, 'number', `latencyMs.* is a number`);
    } else if (typeof value !== 'object') {
      assert.equal(typeof value, 'number', `${name} is a number`);
    }
  }
}

describe('npm start (examples/demo.ts)', { concurrency: true }, () => {
  test('flaky: Breakwater succeeds more than the plain loop, runs no POST twice, adds little load', async () => {
    // 240 requests: with fewer, one unlucky run under a loaded machine can tie the two clients.
    const result = await runJson(['--profile', 'flaky', '--seed', '1', '--requests', '240']);
    assert.equal(result.profile, 'flaky');
    assert.equal(result.requests, 240);
    assert.equal(result.seed, 1);
    assertNumbers(result.plain);
    assertNumbers(result.breakwater);
    const { plain, breakwater } = result;
    assert.ok(
      breakwater.successRate > plain.successRate,
      `Breakwater ${breakwater.successRate} > plain ${plain.successRate}`,
    );
    assert.equal(breakwater.postsExecutedTwice, 0);
    assert.ok(
      breakwater.upstreamRequestsPerLogical <= 1.5,
      `${breakwater.upstreamRequestsPerLogical} <= 1.5`,
    );
    assert.ok(
      breakwater.upstreamRequestsPerLogical >= 1,
      'every logical request reached the upstream at least once',
    );
  });

  test('slow: hedges are sent and win; Breakwater succeeds as often, with a lower p95, and says what it cost', async () => {
    const result = await runJson(['--profile', 'slow', '--seed', '1', '--requests', '300']);
    const { plain, breakwater } = result;
    assert.equal(result.profile, 'slow');
    assertNumbers(breakwater);
    assert.ok(
      breakwater.successRate >= plain.successRate,
      `${breakwater.successRate} >= ${plain.successRate}`,
    );
    assert.ok(
      breakwater.hedgesSent > 0 && breakwater.hedgesWon > 0,
      `hedges ${breakwater.hedgesSent} / ${breakwater.hedgesWon}`,
    );
    assert.ok(breakwater.hedgesWon <= breakwater.hedgesSent);
    // Slow answers take 1.2-3 s against 20-100 ms for the rest: the gap is wide, not a timing.
    assert.ok(
      breakwater.latencyMs.p95 < plain.latencyMs.p95,
      `p95 ${breakwater.latencyMs.p95} < ${plain.latencyMs.p95}`,
    );
    assert.equal(breakwater.postsExecutedTwice, 0);
    assert.ok(breakwater.upstreamRequestsPerLogical > 1, 'the hedges show in the upstream count');
  });

  test('outage: the breaker opens and Breakwater sends a fraction of what the plain loop sends', async () => {
    const result = await runJson(['--profile', 'outage']);
    const { plain, breakwater } = result;
    assert.equal(result.profile, 'outage');
    assert.equal(breakwater.postsExecutedTwice, 0);
    assert.ok(breakwater.circuitOpens >= 1, `circuit opened (${breakwater.circuitOpens})`);
    assert.ok(
      breakwater.upstreamRequestsPerLogical <= 1.5,
      `${breakwater.upstreamRequestsPerLogical} <= 1.5`,
    );
    assert.ok(
      breakwater.upstreamRequests < plain.upstreamRequests / 2,
      `Breakwater sent ${breakwater.upstreamRequests}, plain ${plain.upstreamRequests}`,
    );
  });

  test('--help prints the usage and exits 0', async () => {
    const run = await runDemo(['--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /^Usage: /);
    assert.match(run.stdout, /--requests/);
    assert.match(run.stdout, /--profile/);
    assert.equal(run.stderr, '');
  });

  for (const [args, message] of [
    [['--requests', 'banana'], /--requests must be an integer.*'banana'/],
    [['--nope'], /unknown option --nope/],
    [['--profile', 'sunny'], /--profile must be one of/],
    [['--concurrency', '0'], /--concurrency must be an integer/],
    [['extra'], /unexpected argument 'extra'/],
  ] as const) {
    test(`a bad flag (${args.join(' ')}) prints one line on stderr and exits 2`, async () => {
      const run = await runDemo([...args]);
      assert.equal(run.code, 2);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, message);
      assert.equal(run.stderr.trimEnd().split('\n').length, 1, 'one line');
    });
  }
});
