// npm run bench:combine -- FILE.json [FILE.json …] [--json]
//
// One run of the overhead benchmark is good to several hundredths at best on a shared machine: a
// fresh client process sometimes lands in a slower JIT state, and other tenants come and go. This
// pools several runs. It reads the reports `npm run -s bench -- --json` prints and every leg
// saves (one leg or `{ legs: [...] }`), groups the legs that measured the same thing (Node and
// undici version, the code under test, how it was loaded and driven), and for each variant gives
// the median over every round of every run of its ratio to raw in the same round, the quartiles
// of those ratios, and the paired ratio over every burst of every run.

import { readFileSync } from 'node:fs';
import {
  cpuPerRequest,
  fixed,
  type MeasuredBurst,
  median,
  pairedRatios,
  parseArgs,
  quantile,
  table,
} from './common.js';

/** The parts of an overhead.ts report this reads. */
interface Report {
  environment: { node: string; undici: string; source: string };
  settings: { library: string; concurrency: number; burst: number };
  results: Array<{
    variant: string;
    round: number;
    bursts: MeasuredBurst[];
  }>;
}

interface Pool {
  node: string;
  undici: string;
  /** The hash of src/ measured (a leg run in a scratch copy has no git commit to name it by). */
  source: string;
  library: string;
  runs: number;
  /** Per variant: ratio to raw of each round's CPU per request. */
  byRound: Map<string, number[]>;
  /** Per variant: ratio to raw's burst of the same cycle, every burst. */
  byBurst: Map<string, number[]>;
}

function legsOf(file: string): Report[] {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as Report | { legs: Report[] };
  const legs = 'legs' in doc ? doc.legs : [doc];
  for (const leg of legs) {
    if (!Array.isArray(leg.results) || leg.environment === undefined || leg.settings === undefined) {
      throw new Error(
        `${file}: not a report of the overhead benchmark (no results, environment or settings)`,
      );
    }
  }
  return legs;
}

function add(pools: Map<string, Pool>, leg: Report): void {
  const { node, undici } = leg.environment;
  const source = /src#\w+/.exec(leg.environment.source)?.[0] ?? leg.environment.source;
  const { library, concurrency, burst } = leg.settings;
  // Runs pool only when they measured the same code, loaded and driven the same way.
  const id = JSON.stringify([node, undici, source, library, concurrency, burst]);
  let pool = pools.get(id);
  if (pool === undefined) {
    pool = {
      node,
      undici,
      source,
      library: `${library}, concurrency ${concurrency}, bursts of ${burst}`,
      runs: 0,
      byRound: new Map(),
      byBurst: new Map(),
    };
    pools.set(id, pool);
  }
  pool.runs++;
  const raw = new Map(leg.results.filter((r) => r.variant === 'raw').map((r) => [r.round, r]));
  for (const r of leg.results) {
    const base = raw.get(r.round);
    if (base === undefined) continue;
    const rounds = pool.byRound.get(r.variant) ?? [];
    rounds.push(cpuPerRequest(r.bursts) / cpuPerRequest(base.bursts));
    pool.byRound.set(r.variant, rounds);
    pool.byBurst.set(r.variant, [
      ...(pool.byBurst.get(r.variant) ?? []),
      ...pairedRatios(r.bursts, base.bursts),
    ]);
  }
}

const args = parseArgs(process.argv.slice(2).filter((a) => a.startsWith('--')));
const files = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (files.length === 0) {
  console.error('usage: npm run bench:combine -- FILE.json [FILE.json …] [--json]');
  process.exit(2);
}
const pools = new Map<string, Pool>();
for (const file of files) for (const leg of legsOf(file)) add(pools, leg);

const summary = [...pools.values()].map((pool) => ({
  node: pool.node,
  undici: pool.undici,
  runs: pool.runs,
  source: pool.source,
  library: pool.library,
  variants: [...pool.byRound].map(([variant, rounds]) => {
    const bursts = pool.byBurst.get(variant) ?? [];
    return {
      variant,
      rounds: rounds.length,
      xRaw: median(rounds),
      xRawQ1: quantile(rounds, 0.25),
      xRawQ3: quantile(rounds, 0.75),
      bursts: bursts.length,
      paired: median(bursts),
      pairedQ1: quantile(bursts, 0.25),
      pairedQ3: quantile(bursts, 0.75),
    };
  }),
}));

if (args.has('json')) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  for (const pool of summary) {
    console.log(
      `Node ${pool.node}, undici ${pool.undici}, ${pool.source}: ${pool.runs} runs (${pool.library})\n`,
    );
    console.log(
      table(
        ['variant', 'rounds', 'x raw', 'quartiles', 'bursts', 'paired', 'quartiles'],
        pool.variants.map((v) => [
          v.variant,
          String(v.rounds),
          `${fixed(v.xRaw, 2)} x`,
          `${fixed(v.xRawQ1, 2)}–${fixed(v.xRawQ3, 2)}`,
          String(v.bursts),
          `${fixed(v.paired, 2)} x`,
          `${fixed(v.pairedQ1, 2)}–${fixed(v.pairedQ3, 2)}`,
        ]),
      ),
    );
    console.log('');
  }
  console.log(
    "x raw: median over every round of every run of the variant's CPU per request ÷ raw's in the same round; paired: median over every burst of the ratio to raw's burst of the same cycle; quartiles: 25th–75th percentile.",
  );
}
