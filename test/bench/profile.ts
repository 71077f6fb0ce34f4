// npm run bench:profile [-- --variant bw-std-metrics-resilient --seconds 5 --top 15 --out DIR --json]
// npm run bench:profile -- --analyze DIR    (the tables again, from the files of an earlier run)
//
// Where one client's time and allocations go. Runs the variant (default: standardPipeline with
// metrics through resilient()) in a fresh process against the bench upstream, twice:
//   1. under `node --cpu-prof` (100 µs sampling) for --seconds after a warm-up; the profile is cut
//      to the timed phase and self time is summed per function, mapped back to .ts lines through
//      the source maps tsx generated;
//   2. under V8's sampling heap profiler (collected objects included) for the same phase: bytes
//      allocated per request, per allocation site.
// Files (.cpuprofile, .heapprofile, source maps) are left in a temp dir (printed) for DevTools.

import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ClientResult } from './client.js';
import {
  BUILD_DIR,
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
  pinSelf,
  ROOT,
  spawnTs,
  startServer,
  table,
  type UpstreamServer,
} from './common.js';
import { variantNamed } from './variants.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children: HeapNode[];
}

export interface Entry {
  function: string;
  /** `src/dispatch/exchange.ts:88`, `node_modules/undici/lib/core/util.js:436`, `node:internal/…`. */
  location: string;
  category: string;
  /** Self time (µs) or bytes, summed. */
  value: number;
}

const args = parseArgs(process.argv.slice(2));
/** Re-analyse the files an earlier run left in DIR instead of profiling again. */
const analyze = args.get('analyze');
const variant = variantNamed(
  analyze === undefined
    ? (args.get('variant') ?? 'bw-std-metrics-resilient')
    : (JSON.parse(readFileSync(join(analyze, 'runs.json'), 'utf8')) as { variant: string }).variant,
);
const seconds = intArg(args, 'seconds', 5);
const concurrency = intArg(args, 'concurrency', 32);
const warmup = intArg(args, 'warmup', 5_000);
const top = intArg(args, 'top', 15);
const json = args.has('json');
const viaTsx = args.has('tsx');
let libraryEnv: Record<string, string> = {};
const outDir = analyze ?? args.get('out') ?? mkdtempSync(join(tmpdir(), 'breakwater-profile-'));
const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function runClient(
  server: UpstreamServer,
  extra: string[],
  nodeFlags: string[],
): Promise<ClientResult> {
  const child = spawnTs(
    'client.ts',
    [
      '--variant',
      variant.name,
      '--origin',
      server.origin,
      '--concurrency',
      String(concurrency),
      '--warmup',
      String(warmup),
      '--duration',
      String(seconds * 1000),
      ...extra,
    ],
    CLIENT_CORE,
    nodeFlags,
    libraryEnv,
  );
  const exit = exited(child);
  await nextMessage(child, 'ready');
  const resultP = nextMessage<ClientResult>(child, 'result');
  child.send({ type: 'go' });
  const result = await resultP;
  if ((await exit) !== 0) throw new Error(`profiled client ${variant.name} failed`);
  return result;
}

// --- mapping frames back to sources -------------------------------------------------------------

/**
 * Adds the source maps of the tsc build (its .js.map files) to the ones the client saved from tsx,
 * keyed by the URL of the .js file, so the directory can be analysed again after a rebuild.
 */
function addBuildMaps(file: string): void {
  const maps = JSON.parse(readFileSync(file, 'utf8')) as Record<string, SourceMapPayload>;
  for (const entry of readdirSync(BUILD_DIR, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.js.map')) continue;
    const mapPath = join(entry.parentPath ?? entry.path, entry.name);
    maps[pathToFileURL(mapPath.slice(0, -'.map'.length)).href] = JSON.parse(readFileSync(mapPath, 'utf8'));
  }
  writeFileSync(file, JSON.stringify(maps));
}

/** Source maps by script URL: tsx's for src/ run through it, tsc's for the build. */
class Maps {
  readonly #maps = new Map<string, SourceMap>();

  constructor(file: string) {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, SourceMapPayload>;
    for (const [url, payload] of Object.entries(raw)) this.#maps.set(url, new SourceMap(payload));
  }

  /** `src/dispatch/exchange.ts:88` for a frame of mapped code; undefined for anything else. */
  locate(url: string, line: number, column: number): string | undefined {
    const map = this.#maps.get(url);
    if (map === undefined) return undefined;
    const hit = map.findEntry(line, column) as { originalSource?: string; originalLine?: number };
    if (hit.originalSource === undefined) return `${relative(url)}:?`;
    // tsc writes sources relative to the map (beside the .js); tsx writes absolute file URLs.
    return `${relative(new URL(hit.originalSource, url).href)}:${hit.originalLine! + 1}`;
  }
}

function relative(url: string): string {
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path;
}

const SRC = 'breakwater src/';

function categoryOf(location: string, functionName: string): string {
  if (location === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (location.startsWith('src/')) return SRC;
  if (location.startsWith('test/bench/')) return 'bench harness';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(location);
  if (pkg !== null) return pkg[1]!;
  if (location.startsWith('node:')) return 'node core';
  return 'other';
}

/** One row per function: the name as V8 reports it, its .ts line when a source map knows it. */
function describe(frame: CallFrame, maps: Maps): Omit<Entry, 'value'> {
  const name = frame.functionName || '(anonymous)';
  let location = relative(frame.url);
  const mapped = maps.locate(frame.url, frame.lineNumber, frame.columnNumber);
  if (mapped !== undefined) location = mapped;
  else if (location !== '') location = `${location}:${frame.lineNumber + 1}`;
  return { function: name, location, category: categoryOf(location, name) };
}

function sumInto(into: Map<string, Entry>, frame: CallFrame, maps: Maps, value: number): void {
  const d = describe(frame, maps);
  const key = `${d.function}\u0000${d.location}`;
  const entry = into.get(key);
  if (entry === undefined) into.set(key, { ...d, value });
  else entry.value += value;
}

// --- CPU ------------------------------------------------------------------------------------------

export interface CpuSummary {
  windowMs: number;
  /** Whether the profile could be cut to the timed phase (same monotonic clock). */
  cut: boolean;
  /** Self time per function. */
  entries: Entry[];
  /**
   * Time spent in code src/ calls (node, undici, prom-client…), by the function src/ called:
   * what src/ costs beyond its own self time — timers, clocks, label lookups — next to the
   * downstream dispatch every client pays anyway.
   */
  callees: Entry[];
}

function selfTimes(profile: CpuProfile, maps: Maps, fromUs: number, toUs: number): CpuSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inSrc = new Map<number, boolean>();
  const isSrc = (id: number): boolean => {
    let v = inSrc.get(id);
    if (v === undefined) {
      v = describe(byId.get(id)!.callFrame, maps).category === SRC;
      inSrc.set(id, v);
    }
    return v;
  };
  const cut = fromUs >= profile.startTime && toUs <= profile.endTime;
  const lo = cut ? fromUs : profile.startTime;
  const hi = cut ? toUs : profile.endTime;
  const perNode = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    // A sample stands for the time until the next one.
    const next = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1]! : 0;
    if (t < lo || t >= hi) continue;
    const id = profile.samples[i]!;
    perNode.set(id, (perNode.get(id) ?? 0) + next);
  }
  const entries = new Map<string, Entry>();
  const callees = new Map<string, Entry>();
  for (const [id, us] of perNode) {
    sumInto(entries, byId.get(id)!.callFrame, maps, us);
    if (isSrc(id)) continue;
    // The frame just below the deepest src/ frame on this stack, if there is one.
    let child = id;
    for (let up = parent.get(id); up !== undefined; child = up, up = parent.get(up)) {
      if (isSrc(up)) {
        sumInto(callees, byId.get(child)!.callFrame, maps, us);
        break;
      }
    }
  }
  const sorted = (m: Map<string, Entry>): Entry[] => [...m.values()].sort((a, b) => b.value - a.value);
  return { windowMs: (hi - lo) / 1000, cut, entries: sorted(entries), callees: sorted(callees) };
}

// --- allocations ------------------------------------------------------------------------------------

function allocations(root: HeapNode, maps: Maps): Entry[] {
  const entries = new Map<string, Entry>();
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (node.selfSize > 0) sumInto(entries, node.callFrame, maps, node.selfSize);
    stack.push(...node.children);
  }
  return [...entries.values()].sort((a, b) => b.value - a.value);
}

function byCategory(entries: Entry[]): Entry[] {
  const out = new Map<string, Entry>();
  for (const e of entries) {
    const c = out.get(e.category);
    if (c === undefined)
      out.set(e.category, { function: '', location: '', category: e.category, value: e.value });
    else c.value += e.value;
  }
  return [...out.values()].sort((a, b) => b.value - a.value);
}

function byFile(entries: Entry[]): Entry[] {
  const out = new Map<string, Entry>();
  for (const e of entries) {
    const file = e.location.replace(/:[^:]*$/, '');
    const c = out.get(file);
    if (c === undefined)
      out.set(file, { function: '', location: file, category: e.category, value: e.value });
    else c.value += e.value;
  }
  return [...out.values()].sort((a, b) => b.value - a.value);
}

// --- report -----------------------------------------------------------------------------------------

function cpuTable(entries: Entry[], totalUs: number, requests: number): string {
  return table(
    ['self ms', '%', 'µs/req', 'function', 'location'],
    entries.map((e) => [
      fixed(e.value / 1000, 1),
      fixed((e.value / totalUs) * 100, 1),
      fixed(e.value / requests, 2),
      e.function,
      e.location,
    ]),
  );
}

function allocTable(entries: Entry[], totalBytes: number, requests: number): string {
  return table(
    ['B/req', '%', 'function', 'location'],
    entries.map((e) => [
      fixed(e.value / requests, 0),
      fixed((e.value / totalBytes) * 100, 1),
      e.function || e.category,
      e.location,
    ]),
  );
}

function sum(entries: Entry[]): number {
  return entries.reduce((acc, e) => acc + e.value, 0);
}

async function main(): Promise<void> {
  pinSelf(CLIENT_CORE);
  const env = environment();
  log(describeEnvironment(env));
  if (analyze === undefined) {
    if (!viaTsx) libraryEnv = { [LIBRARY_ENV]: buildLibrary(log) };
    log(`library: ${viaTsx ? 'src/ through tsx' : 'src/ compiled by tsc'}`);
    log(`profiling ${variant.name} for ${seconds} s at concurrency ${concurrency}; files in ${outDir}`);
  }
  const mapsFile = join(outDir, 'sourcemaps.json');
  const heapFile = join(outDir, `${variant.name}.heapprofile`);
  const runsFile = join(outDir, 'runs.json');
  let cpuRun: ClientResult;
  let allocRun: ClientResult;
  if (analyze !== undefined) {
    // Only read what an earlier run left in --analyze DIR.
    ({ cpuRun, allocRun } = JSON.parse(readFileSync(runsFile, 'utf8')) as {
      cpuRun: ClientResult;
      allocRun: ClientResult;
    });
  } else {
    const server = await startServer();
    try {
      cpuRun = await runClient(
        server,
        ['--sourcemaps', mapsFile],
        // No --cpu-prof-name: tsx's loader thread writes a profile too, and one name would make the
        // two threads overwrite each other. The default name carries the thread id (main is 0).
        ['--cpu-prof', `--cpu-prof-dir=${outDir}`, '--cpu-prof-interval=100'],
      );
      log(
        `cpu run: ${cpuRun.requests} requests, ${fixed(cpuRun.cpuUs / cpuRun.requests, 1)} µs CPU/request (profiler on)`,
      );
      allocRun = await runClient(server, ['--heap-profile', heapFile], []);
      log(`allocation run: ${allocRun.requests} requests`);
    } finally {
      await server.stop();
    }
    writeFileSync(runsFile, JSON.stringify({ variant: variant.name, cpuRun, allocRun }));
    if (!viaTsx) addBuildMaps(mapsFile);
  }

  const maps = new Maps(mapsFile);
  // CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile; the main thread's tid is 0.
  const cpuFile = readdirSync(outDir).find((f) => f.endsWith('.cpuprofile') && f.split('.')[4] === '0');
  if (cpuFile === undefined) throw new Error(`no main-thread .cpuprofile in ${outDir}`);
  const profile = JSON.parse(readFileSync(join(outDir, cpuFile), 'utf8')) as CpuProfile;
  const cpu = selfTimes(profile, maps, cpuRun.phaseStartUs, cpuRun.phaseEndUs);
  // Idle is time the client waited on the network, not work: percentages are of busy time.
  const idleUs = sum(cpu.entries.filter((e) => e.function === '(idle)'));
  cpu.entries = cpu.entries.filter((e) => e.function !== '(idle)');
  const cpuTotal = sum(cpu.entries);
  const heap = JSON.parse(readFileSync(heapFile, 'utf8')) as { head: HeapNode };
  const alloc = allocations(heap.head, maps);
  const allocTotal = sum(alloc);
  const isSrc = (e: Entry): boolean => e.category === SRC;

  if (json) {
    console.log(
      JSON.stringify(
        {
          environment: env,
          variant: variant.name,
          files: outDir,
          cpu: { requests: cpuRun.requests, ...cpu },
          allocations: { requests: allocRun.requests, bytes: allocTotal, entries: alloc },
        },
        null,
        2,
      ),
    );
    return;
  }
  const n = cpuRun.requests;
  console.log(describeEnvironment(env));
  console.log(`variant ${variant.name}: ${variant.what}`);
  console.log(
    `CPU profile: ${fixed(cpu.windowMs / 1000, 2)} s ${cpu.cut ? 'timed phase' : 'whole process (could not cut)'}, ${n} requests, ${fixed(cpuTotal / n, 1)} µs busy per request on the main thread, idle ${fixed((idleUs / (idleUs + cpuTotal)) * 100, 0)} % (${fixed(cpuRun.cpuUs / n, 1)} µs CPU/request by cpuUsage, all threads, profiler on)`,
  );
  console.log('percentages below are of the main thread’s busy (non-idle) time');
  console.log(`files: ${outDir}`);
  console.log('');
  console.log('Self time by category');
  console.log(
    cpuTable(
      byCategory(cpu.entries).map((e) => ({ ...e, function: e.category })),
      cpuTotal,
      n,
    ),
  );
  console.log('');
  console.log(`Top ${top} self time, all code`);
  console.log(cpuTable(cpu.entries.slice(0, top), cpuTotal, n));
  console.log('');
  const src = cpu.entries.filter(isSrc);
  console.log(`Top ${top} self time in src/ (src/ in all: ${fixed(sum(src) / n, 2)} µs/request)`);
  console.log(cpuTable(src.slice(0, top), cpuTotal, n));
  console.log('');
  console.log('src/ self time by file');
  console.log(cpuTable(byFile(src), cpuTotal, n));
  console.log('');
  console.log(
    `Time inside what src/ calls, by callee (inclusive; the downstream dispatch is there too: every client pays it)`,
  );
  console.log(cpuTable(cpu.callees.slice(0, top), cpuTotal, n));
  console.log('');
  const m = allocRun.requests;
  console.log(
    `Allocations (sampling heap profiler, collected objects included): ${fixed(allocTotal / m, 0)} B/request over ${m} requests`,
  );
  console.log(allocTable(byCategory(alloc), allocTotal, m));
  console.log('');
  const allocSrc = alloc.filter(isSrc);
  console.log(`Top ${top} allocation sites in src/ (src/ in all: ${fixed(sum(allocSrc) / m, 0)} B/request)`);
  console.log(allocTable(allocSrc.slice(0, top), allocTotal, m));
  console.log('');
  console.log(`Top ${top} allocation sites, all code`);
  console.log(allocTable(alloc.slice(0, top), allocTotal, m));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
