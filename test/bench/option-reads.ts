// npm run bench:option-reads [-- --json]
//
// What reading one dispatch option costs, in instructions under callgrind, the way undici's
// `request()` builds options on Node 20: `{ ...opts, origin, path, method }`, where V8 11.3 gives
// every such object a hidden class of its own (test/bench/spread-maps.ts counts them). Each way of
// reading runs in a fresh `node` under `valgrind --tool=callgrind` twice, with a short and a long
// loop; the difference over the extra iterations cancels start-up and leaves the cost per object,
// from which the loop without a read is subtracted. `--single-threaded` keeps V8's compilation on
// the main thread, so the counts repeat from run to run. This is the evidence for
// src/dispatch/own-option.ts. Needs valgrind; takes about a minute.

import { callgrindCount, parseArgs } from './common.js';

const READS = {
  none: 'return 1;',
  plain: 'return o.method;',
  'Reflect.get': "return Reflect.get(o, 'method');",
  'Object.hasOwn': "return Object.hasOwn(o, 'upgrade');",
} as const;

const SHORT = 20_000;
const LONG = 120_000;

function loop(read: string, n: number): string {
  return `
    const base = { headers: null, body: null, throwOnError: false, maxRedirections: 0 };
    const make = () => ({ ...base, origin: 'http://127.0.0.1:3000', path: '/', method: 'GET' });
    const read = (o) => { ${read} };
    let sink = 0;
    for (let i = 0; i < ${n}; i++) sink += read(make()) ? 1 : 0;
    if (sink < 0) console.log(sink);`;
}

/** Instructions callgrind counted over a whole `node` process running the loop `n` times. */
function collected(read: string, n: number): Promise<number> {
  return callgrindCount(['-e', loop(read, n)]);
}

const args = parseArgs(process.argv.slice(2));
const perObject: Record<string, number> = {};
for (const [name, read] of Object.entries(READS)) {
  perObject[name] = ((await collected(read, LONG)) - (await collected(read, SHORT))) / (LONG - SHORT);
}
const rows = Object.entries(perObject).map(([name, n]) => ({
  read: name,
  perObject: Math.round(n),
  ofTheRead: Math.round(n - perObject.none!),
}));
if (args.has('json')) {
  console.log(JSON.stringify({ node: process.version, rows }, null, 2));
} else {
  console.log(`${process.version}: instructions per options object built by a spread, and per read of it`);
  for (const r of rows)
    console.log(`  ${r.read.padEnd(14)} ${String(r.perObject).padStart(7)}  read: ${r.ofTheRead}`);
}
