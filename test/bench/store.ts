// The admission cost of a fleet store: requests through `pipeline([rateLimit(...)])` against the
// bench upstream (its own process), with the local limiter, with the Redis store on loopback
// (one round trip per admission), and with the Redis store leasing tokens. Prints client CPU per
// request (process.cpuUsage: the client process, which also runs the Redis client) and requests
// per second, and Redis's own CPU per request (INFO cpu). The quota is set high enough that
// nothing waits: what is measured is the admission itself.
//
//   npm run bench:store [-- --requests 20000 --concurrency 16]
//
// It needs `redis-server` on PATH (Debian's package) and takes about half a minute.
import { Agent, request } from 'undici';
import { pipeline, rateLimit, resilient } from '../../src/index.js';
import { redisStore } from '../../src/redis/index.js';
import { startRedis } from '../helpers/redis-server.js';
import { startServer } from './common.js';

const args = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(args[i + 1]);
};
const REQUESTS = option('requests', 20_000);
const CONCURRENCY = option('concurrency', 16);
const WARMUP = Math.min(2_000, REQUESTS / 5);

const server = await startServer();
const redis = await startRedis();
const { createClient } = await import('redis');
const admin = createClient({ url: redis.url });
await admin.connect();

async function redisCpu(): Promise<number> {
  const info = await admin.info('cpu');
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0);
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
  return (user + sys) * 1e6;
}

async function drive(dispatcher: ReturnType<typeof resilient>, n: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      const res = await request(server.origin, { dispatcher });
      await res.body.dump();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

interface Row {
  name: string;
  cpuUs: number;
  perSecond: number;
  redisUs: number;
}

async function measure(name: string, lease: number | null): Promise<Row> {
  const store =
    lease === null
      ? undefined
      : redisStore({ url: redis.url, prefix: `bench-${name}:`, lease, timeoutMs: 1_000 });
  await store?.ready();
  const dispatcher = resilient(
    new Agent({ connections: CONCURRENCY }),
    pipeline([rateLimit({ perSecond: 1_000_000, burst: 100_000, maxWait: 0 })], { store }),
  );
  await drive(dispatcher, WARMUP);
  const redisBefore = await redisCpu();
  const cpu = process.cpuUsage();
  const started = performance.now();
  await drive(dispatcher, REQUESTS);
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const redisUsed = (await redisCpu()) - redisBefore;
  await dispatcher.close();
  await store?.close();
  return {
    name,
    cpuUs: (used.user + used.system) / REQUESTS,
    perSecond: (REQUESTS / ms) * 1000,
    redisUs: redisUsed / REQUESTS,
  };
}

try {
  // A first pass warms the JIT for every variant; only the second is reported.
  await measure('warm-up', null);
  const rows = [
    await measure('local limiter', null),
    await measure('redis, no lease', 0),
    await measure('redis, lease 10', 10),
    await measure('redis, lease 100', 100),
  ];
  console.log(`${REQUESTS} requests, ${CONCURRENCY} at a time, Node ${process.version}`);
  console.log('variant            client CPU/req   requests/s   Redis CPU/req');
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(18)} ${r.cpuUs.toFixed(1).padStart(10)} µs ${r.perSecond.toFixed(0).padStart(12)} ${r.redisUs.toFixed(1).padStart(11)} µs`,
    );
  }
} finally {
  await admin.close();
  await redis.stop();
  await server.stop();
}
