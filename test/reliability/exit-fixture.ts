// Run by lifecycle.test.ts in a process of its own: puts a pipeline with long timers (60 s total,
// 30 s attempt, 20 s backoff) through every fault and every abort, closes everything and simply
// returns. The process must then exit by itself: no socket and no timer of the library may keep
// it alive. Prints what each request ended with, as JSON.

import { Agent, request } from 'undici';
import { resilient, standardPipeline } from '../../src/index.js';
import { refusedOrigin, startUpstream } from '../helpers/upstream.js';
import { errorLabel, exchange } from './harness.js';

const upstream = await startUpstream((req) => {
  switch (req.path) {
    case '/hang':
      return { kind: 'hang' };
    case '/503':
      return { kind: 'respond', status: 503, body: 'busy' };
    case '/reset':
      return { kind: 'reset' };
    case '/mid-body':
      return { kind: 'reset-mid-body', body: 'part' };
    case '/trickle':
      return { kind: 'trickle', intervalMs: 5 };
    case '/close':
      return { kind: 'close-after-response', status: 200, body: 'bye' };
    default:
      return { kind: 'respond', status: 200, body: 'ok' };
  }
});

const long = standardPipeline({
  totalTimeout: 60_000,
  attemptTimeout: 30_000,
  retry: { backoff: { initialDelay: 20_000, maxDelay: 20_000 } },
  bulkhead: { maxConcurrent: 1, maxQueue: 10 },
});
const quick = standardPipeline({
  totalTimeout: 60_000,
  attemptTimeout: 30_000,
  retry: { backoff: { initialDelay: 1, maxDelay: 5 } },
});
const longAgent = new Agent();
const quickAgent = new Agent();
const slow = longAgent.compose(long);
const fast = resilient(quickAgent, quick);

const results: Record<string, string> = {};
const run = async (
  name: string,
  url: string,
  dispatcher: typeof slow,
  abortAfterMs?: number,
): Promise<void> => {
  const ac = new AbortController();
  const timer = abortAfterMs === undefined ? undefined : setTimeout(() => ac.abort(), abortAfterMs);
  const o = await exchange(url, { dispatcher, signal: ac.signal });
  clearTimeout(timer);
  results[name] = o.error === undefined ? String(o.status) : `${o.status ?? ''}${errorLabel(o.error)}`;
};

await run('ok', upstream.url('/'), fast);
await run('503 retried to the end', upstream.url('/503'), fast);
await run('reset', upstream.url('/reset'), fast);
await run('reset mid-body', upstream.url('/mid-body'), fast);
await run('close after response', upstream.url('/close'), fast);
await run('refused', await refusedOrigin(), fast);
await run('abort awaiting headers', upstream.url('/hang'), slow, 20);
await run('abort in a 20 s backoff', upstream.url('/503'), slow, 50);
await run('abort mid-body', upstream.url('/trickle'), slow, 30);
// One hanging request holds the only slot; the next waits in the queue until aborted.
const holder = run('abort the slot holder', upstream.url('/hang'), slow, 80);
await run('abort while queued', upstream.url('/'), slow, 30);
await holder;
// A request that is still on its way when close() is called finishes normally.
const last = request(upstream.url('/'), { dispatcher: slow }).then(async (res) => {
  await res.body.text();
  return res.statusCode;
});
await Promise.all([long.close(), quick.close()]);
results['in flight at close()'] = String(await last);
await Promise.all([slow.close(), fast.close()]);
await upstream.close();
console.log(JSON.stringify(results));
