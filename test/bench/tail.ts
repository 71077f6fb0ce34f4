// npm run bench:tail [-- --requests 5000 --concurrency 20 --seed 7 --json]
//
// What hedging does to the tail of a slow upstream. A local server answers a seeded 2 % of its
// requests after 1 s and the rest after 5-20 ms (each arrival drawn on its own, hedges
// included). Each client sends the same number of GETs at a fixed concurrency, one client after
// another: raw undici, the standard preset, and the preset hedging after a fixed 50 ms and after
// an adaptive delay (the key's p95). Printed per client: p50, p99 and p99.9 of what the caller
// waited, and the extra requests the upstream received. Then a full outage (every answer 503)
// through the adaptive client: attempts per request.
//
// Targets: adaptive hedging cuts p99 and p99.9 at least 10 × against the unhedged preset for at
// most 6 % extra requests; in the outage, at most 1.2 attempts per request.

import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, type Dispatcher, request } from 'undici';
import { resilient, type StandardPipelineOptions, standardPipeline } from '../../src/index.js';
import { mulberry32 } from '../helpers/prng.js';
import { fixed, intArg, parseArgs, quantile, table } from './common.js';

const args = parseArgs(process.argv.slice(2));
const REQUESTS = intArg(args, 'requests', 5_000);
const CONCURRENCY = intArg(args, 'concurrency', 20);
const SEED = intArg(args, 'seed', 7);
const asJson = args.has('json');

let arrivals = 0;
let outage = false;
let random = mulberry32(SEED);
const server = createServer((req, res) => {
  arrivals++;
  req.resume();
  if (outage) {
    res.writeHead(503).end('down');
    return;
  }
  const ms = random() < 0.02 ? 1_000 : 5 + 15 * random();
  const timer = setTimeout(() => res.end('ok'), ms);
  res.on('close', () => clearTimeout(timer));
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

interface Run {
  client: string;
  p50: number;
  p99: number;
  p999: number;
  extra: number;
  failures: number;
}

async function drive(
  dispatcher: Dispatcher,
  n: number,
): Promise<{ latencies: Float64Array; failures: number }> {
  const latencies = new Float64Array(n);
  let next = 0;
  let failures = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const started = performance.now();
      try {
        const res = await request(url, { dispatcher });
        await res.body.text();
        if (res.statusCode !== 200) failures++;
      } catch {
        failures++;
      }
      latencies[i] = performance.now() - started;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { latencies, failures };
}

const preset = (hedge: StandardPipelineOptions['retry']): StandardPipelineOptions => ({ retry: hedge });
const clients: Array<[string, () => Dispatcher]> = [
  ['raw undici', () => new Agent()],
  ['standardPipeline', () => resilient(new Agent(), standardPipeline())],
  ['+ hedge 50 ms', () => resilient(new Agent(), standardPipeline(preset({ hedge: { delay: 50 } })))],
  ['+ hedge adaptive', () => resilient(new Agent(), standardPipeline(preset({ hedge: true })))],
];

const runs: Run[] = [];
for (const [client, make] of clients) {
  // Every client meets the same sequence of draws.
  random = mulberry32(SEED);
  arrivals = 0;
  const dispatcher = make();
  const { latencies, failures } = await drive(dispatcher, REQUESTS);
  await dispatcher.close();
  runs.push({
    client,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    p999: quantile(latencies, 0.999),
    extra: (arrivals - REQUESTS) / REQUESTS,
    failures,
  });
}

outage = true;
arrivals = 0;
const down = resilient(new Agent(), standardPipeline(preset({ hedge: true })));
const OUTAGE_REQUESTS = 2_000;
await drive(down, OUTAGE_REQUESTS);
await down.close();
const outageAttempts = arrivals / OUTAGE_REQUESTS;
server.close();

const base = runs[1]!;
const adaptive = runs[3]!;
const verdict = {
  p99Cut: base.p99 / adaptive.p99,
  p999Cut: base.p999 / adaptive.p999,
  extra: adaptive.extra,
  outageAttempts,
};
if (asJson) {
  console.log(JSON.stringify({ requests: REQUESTS, concurrency: CONCURRENCY, seed: SEED, runs, verdict }));
} else {
  console.log(
    `${REQUESTS} GETs per client at concurrency ${CONCURRENCY}; 2 % of answers take 1 s, the rest 5-20 ms (seed ${SEED})\n`,
  );
  console.log(
    table(
      ['client', 'p50 ms', 'p99 ms', 'p99.9 ms', 'extra upstream requests', 'failed'],
      runs.map((r) => [
        r.client,
        fixed(r.p50, 1),
        fixed(r.p99, 1),
        fixed(r.p999, 1),
        `${fixed(r.extra * 100, 2)} %`,
        String(r.failures),
      ]),
    ),
  );
  const ok = (cond: boolean) => (cond ? 'met' : 'NOT met');
  console.log(
    `\nadaptive hedging against the unhedged preset: p99 ${fixed(verdict.p99Cut, 1)} × lower, ` +
      `p99.9 ${fixed(verdict.p999Cut, 1)} × lower, ${fixed(verdict.extra * 100, 2)} % extra requests ` +
      `(target ≥ 10 ×, ≤ 6 %: ${ok(verdict.p99Cut >= 10 && verdict.p999Cut >= 10 && verdict.extra <= 0.06)})`,
  );
  console.log(
    `full outage, adaptive hedging on: ${fixed(outageAttempts, 3)} attempts per request ` +
      `(target ≤ 1.2: ${ok(outageAttempts <= 1.2)})`,
  );
}
