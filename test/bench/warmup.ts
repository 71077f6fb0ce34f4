// npm run bench:warmup [-- --only a,b --chunks 15 --chunk 2000 --json]
//
// How long a fresh client takes to reach steady state: client CPU per request over consecutive
// chunks of requests, from the first one on. It is the evidence for overhead.ts's warm-up length.
// On Node 20 the curve is flat after a few thousand requests; on Node 24 (Maglev, then TurboFan)
// the first chunks cost several times the steady value and it keeps falling past 10,000 requests,
// so a short warm-up charges JIT compilation to the timed phase, most to the variant with the
// most code. Each variant runs alone in a fresh process, pinned as in overhead.ts.

import type { BurstResult } from './client.js';
import {
  buildLibrary,
  CLIENT_CORE,
  describeEnvironment,
  environment,
  exited,
  fixed,
  intArg,
  LIBRARY_ENV,
  nextMessage,
  parseArgs,
  spawnTs,
  startServer,
  table,
} from './common.js';
import { onlyVariants } from './variants.js';

const args = parseArgs(process.argv.slice(2));
const chunks = intArg(args, 'chunks', 15);
const chunk = intArg(args, 'chunk', 2_000);
const concurrency = intArg(args, 'concurrency', 32);
const json = args.has('json');
const names = onlyVariants(args, ['raw', 'noop-dispatcher', 'bw-std-metrics-resilient']);
const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** CPU µs per request of each chunk, for one fresh client of `variant`. */
async function curve(variant: string, origin: string, libraryEnv: Record<string, string>): Promise<number[]> {
  const child = spawnTs(
    'client.ts',
    ['--variant', variant, '--origin', origin, '--concurrency', String(concurrency), '--warmup', '0'],
    CLIENT_CORE,
    [],
    libraryEnv,
  );
  const exit = exited(child);
  await nextMessage(child, 'ready');
  const perRequest: number[] = [];
  for (let i = 0; i < chunks; i++) {
    const answer = nextMessage<BurstResult>(child, 'burst');
    child.send({ type: 'burst', n: chunk });
    const burst = await answer;
    perRequest.push(burst.cpuUs / burst.requests);
  }
  const result = nextMessage(child, 'result');
  child.send({ type: 'finish' });
  await result;
  await exit;
  return perRequest;
}

const libraryEnv = { [LIBRARY_ENV]: buildLibrary(log) };
const server = await startServer();
try {
  const curves: Record<string, number[]> = {};
  for (const name of names) {
    log(`${name}…`);
    curves[name] = await curve(name, server.origin, libraryEnv);
  }
  const env = environment();
  if (json) {
    console.log(JSON.stringify({ environment: env, chunk, concurrency, cpuUsPerRequest: curves }, null, 2));
  } else {
    console.log(describeEnvironment(env));
    console.log(
      `client CPU µs per request over consecutive chunks of ${chunk} requests, concurrency ${concurrency}\n`,
    );
    const head = ['variant', ...Array.from({ length: chunks }, (_, i) => `${((i + 1) * chunk) / 1000}k`)];
    const rows = names.map((name) => [name, ...curves[name]!.map((v) => fixed(v, 0))]);
    console.log(table(head, rows));
  }
} finally {
  await server.stop();
}
