// A fleet of cluster workers sharing one upstream quota through Redis. The primary runs a local
// upstream that records when each request arrives, and forks the workers; each worker sends its
// requests as fast as it can through `rateLimit({ perSecond: 30, burst: 5 })` with a Redis store,
// so the whole fleet, not each worker, stays within 30 a second. Prints what the upstream saw.
//
//   npx tsx examples/fleet.ts --redis redis://127.0.0.1:6379
//
//   --redis <url>    the Redis server (default redis://127.0.0.1:6379)
//   --workers <n>    workers to fork (default 3)
//   --requests <n>   requests each worker sends (default 30)
//   --timeout-ms <n> the store timeout (default 50, the library's)
//   --no-store       the same without Redis: each worker keeps its own 30 a second
import cluster from 'node:cluster';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
// In your project: import { pipeline, rateLimit, resilient } from 'breakwater';
// and: import { redisStore } from 'breakwater/redis';
import { pipeline, rateLimit, resilient } from '../src/index.js';
import { redisStore } from '../src/redis/index.js';

const PER_SECOND = 30;
const BURST = 5;

if (cluster.isPrimary) await primary();
else await worker();

async function primary(): Promise<void> {
  const { values } = parseArgs({
    options: {
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
      workers: { type: 'string', default: '3' },
      requests: { type: 'string', default: '30' },
      'timeout-ms': { type: 'string', default: '50' },
      'no-store': { type: 'boolean', default: false },
    },
  });
  const arrivals: number[] = [];
  const upstream = createServer((_req, res) => {
    arrivals.push(performance.now());
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  const workers = Number(values.workers);
  const env = {
    FLEET_UPSTREAM: origin,
    FLEET_REDIS: values['no-store'] ? '' : values.redis,
    FLEET_REQUESTS: values.requests,
    FLEET_TIMEOUT_MS: values['timeout-ms'],
  };
  const started = performance.now();
  const exits = Array.from({ length: workers }, () => once(cluster.fork(env), 'exit'));
  const codes = (await Promise.all(exits)).map(([code]) => code as number);
  upstream.close();

  console.log(
    JSON.stringify({
      example: 'fleet',
      store: !values['no-store'],
      workers,
      workerExitCodes: codes,
      upstreamRequests: arrivals.length,
      mostInOneSecond: mostInOneSecond(arrivals),
      quota: PER_SECOND,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    }),
  );
}

async function worker(): Promise<void> {
  const url = process.env.FLEET_REDIS;
  const store = url ? redisStore({ url, timeoutMs: Number(process.env.FLEET_TIMEOUT_MS) }) : undefined;
  await store?.ready();
  const dispatcher = resilient(
    new Agent(),
    pipeline([rateLimit({ perSecond: PER_SECOND, burst: BURST, maxWait: 60_000 })], { store }),
  );
  const count = Number(process.env.FLEET_REQUESTS);
  await Promise.all(
    Array.from({ length: count }, () =>
      request(process.env.FLEET_UPSTREAM!, { dispatcher }).then((res) => res.body.dump()),
    ),
  );
  await dispatcher.close();
  await store?.close();
  // The IPC channel to the primary is all that is left: let it go, and the worker exits.
  cluster.worker?.disconnect();
}

/** The most arrivals within any one second. */
function mostInOneSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j]! <= sorted[i]! - 1_000) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}
