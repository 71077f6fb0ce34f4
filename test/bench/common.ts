// Shared plumbing of the benchmarks: starting child processes pinned to a core, talking to the
// upstream server over IPC, statistics and tables. Not part of the library, not a test.

import {
  type ChildProcess,
  type ExecFileSyncOptionsWithStringEncoding,
  execFileSync,
  spawn,
} from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const TSX = import.meta.resolve('tsx');

/** The core the upstream server runs on, and the one every client (and this process) runs on. */
export const SERVER_CORE = 1;
export const CLIENT_CORE = 0;

let tasksetChecked: boolean | undefined;

/** True when `taskset` exists and the machine has at least two cores to keep apart. */
export function canPin(): boolean {
  if (tasksetChecked === undefined) {
    try {
      execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
      tasksetChecked = cpus().length >= 2;
    } catch {
      tasksetChecked = false;
    }
  }
  return tasksetChecked;
}

/** Moves every thread of this process to `core`, so the orchestrator never competes with the server. */
export function pinSelf(core: number): void {
  if (!canPin()) return;
  try {
    execFileSync('taskset', ['-a', '-pc', String(core), String(process.pid)], { stdio: 'ignore' });
  } catch {
    // Not fatal: the numbers are noisier, the header says whether pinning was on.
  }
}

/**
 * Starts `script` (a .ts file in this folder) in a fresh Node process through tsx, pinned to
 * `core` when possible, with an IPC channel. Extra Node flags (e.g. `--cpu-prof`) go before it.
 */
export function spawnTs(
  script: string,
  args: readonly string[],
  core: number,
  nodeFlags: readonly string[] = [],
  env: Record<string, string> = {},
): ChildProcess {
  const nodeArgs = [...nodeFlags, '--import', TSX, `${BENCH_DIR}${script}`, ...args];
  const [cmd, argv] = canPin()
    ? ['taskset', ['-c', String(core), process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs];
  return spawn(cmd, argv, {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
}

// --- instruction counts -----------------------------------------------------------------------

/**
 * The instructions callgrind counts over a whole `node --single-threaded --predictable` process.
 * `--single-threaded` keeps V8's compiling on the main thread; `--predictable`, V8's mode for
 * reproducible runs, narrows how much the same client's count moves from run to run (V8 otherwise
 * decides differently each time, when to collect garbage among others). It does not remove it:
 * against bench:isolated's stand-in, what the pipeline adds still moved by about ±1,000
 * instructions per request between runs. Needs valgrind.
 */
export function callgrindCount(
  nodeArgs: readonly string[],
  env: Record<string, string> = {},
): Promise<number> {
  const argv = [
    '--tool=callgrind',
    '--callgrind-out-file=/dev/null',
    process.execPath,
    '--single-threaded',
    '--predictable',
    ...nodeArgs,
  ];
  return new Promise((resolve, reject) => {
    const proc = spawn('valgrind', argv, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    proc.on('error', (err) =>
      reject(new Error(`valgrind could not start (is it installed?): ${err.message}`)),
    );
    proc.on('close', (code) => {
      const match = /Collected : (\d+)/.exec(stderr);
      if (code === 0 && match !== null) resolve(Number(match[1]));
      else reject(new Error(`valgrind exited ${code}: ${stderr.slice(-500)}`));
    });
  });
}

// --- the library under test -----------------------------------------------------------------------

/** Where client processes import Breakwater from (see variants.ts); unset means src/ through tsx. */
export const LIBRARY_ENV = 'BREAKWATER_BENCH_ENTRY';

/** Inside node_modules so the build resolves undici, prom-client and cockatiel like src/ does. */
export const BUILD_DIR = `${ROOT}node_modules/.cache/breakwater-bench/dist/`;

/**
 * Compiles src/ with tsc (the build the package ships, with source maps) and returns the URL of
 * its entry point. Why not src/ through tsx: tsx compiles with esbuild's keepNames, which wraps
 * every function created at run time in `__name(fn, "name")` (an Object.defineProperty call), so
 * a per-request closure or arrow-function field costs more than it does in the published build —
 * and the peers, plain JS in node_modules, never pay it. Type errors (a work tree in the middle of
 * an edit) are reported but do not stop the build; tsc still emits.
 */
export function buildLibrary(log: (line: string) => void): string {
  rmSync(BUILD_DIR, { recursive: true, force: true });
  const tsc = `${ROOT}node_modules/typescript/bin/tsc`;
  const tscArgs = ['-p', `${ROOT}.config/tsconfig.build.json`, '--outDir', BUILD_DIR];
  try {
    execFileSync(process.execPath, [tsc, ...tscArgs, '--declaration', 'false', '--declarationMap', 'false'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: 'pipe',
    });
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? err).trim();
    log(
      `warning: tsc reported errors in src/ (measuring what it emitted anyway):\n${out.split('\n').slice(0, 5).join('\n')}`,
    );
  }
  const entry = `${BUILD_DIR}index.js`;
  if (!existsSync(entry)) throw new Error(`tsc emitted no ${entry}`);
  return pathToFileURL(entry).href;
}

/** Waits for the next IPC message of `type` from `child`; rejects if the child exits first. */
export function nextMessage<T extends { type: string }>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: T): void => {
      if (msg?.type !== type) return;
      cleanup();
      resolve(msg);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`child exited (code ${code}, signal ${signal}) before sending '${type}'`));
    };
    const cleanup = (): void => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

// --- the upstream server ------------------------------------------------------------------------

/** How the upstream answers; see server.ts. */
export interface ServerMode {
  /** Probability of answering `failStatus` instead of 200. */
  failRatio?: number;
  /** **Default:** 503 */
  failStatus?: number;
  /** `Retry-After` value (seconds) sent with failures. */
  retryAfter?: string;
  /** Probability that a (successful) response waits `slowMs` before its headers. */
  slowRatio?: number;
  slowMs?: number;
  /** PRNG seed, so a scenario's fault sequence is reproducible. */
  seed?: number;
}

export interface CpuSnapshot {
  user: number;
  system: number;
  /** Requests the server has received since it started (or since the last `configure`). */
  requests: number;
  statuses: Record<string, number>;
}

export interface UpstreamServer {
  readonly origin: string;
  readonly port: number;
  cpu(): Promise<CpuSnapshot>;
  /** Sets the mode and resets the counters. */
  configure(mode: ServerMode): Promise<void>;
  stop(): Promise<void>;
}

export async function startServer(): Promise<UpstreamServer> {
  const child = spawnTs('server.ts', [], SERVER_CORE);
  const { port } = await nextMessage<{ type: 'listening'; port: number }>(child, 'listening');
  let seq = 0;
  const call = async <T extends { type: string }>(msg: object, reply: string): Promise<T> => {
    const id = ++seq;
    const waiting = nextMessage<T & { id: number }>(child, reply);
    child.send({ ...msg, id });
    const answer = await waiting;
    if (answer.id !== id) throw new Error(`server answered ${answer.id} to ${id}`);
    return answer;
  };
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    cpu: async () => (await call<CpuSnapshot & { type: string }>({ type: 'cpu' }, 'cpu')) as CpuSnapshot,
    configure: async (mode) => void (await call({ type: 'configure', mode }, 'configured')),
    stop: async () => {
      child.send({ type: 'stop' });
      await exited(child);
    },
  };
}

// --- numbers ------------------------------------------------------------------------------------

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** Linear interpolation between closest ranks; NaN for no values. */
export function quantile(values: readonly number[] | Float64Array, q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** What a ratio of CPU per request needs of a round's bursts. */
export interface MeasuredBurst {
  requests: number;
  cpuUs: number;
}

/** Client CPU per request over a round's bursts, µs. */
export function cpuPerRequest(bursts: readonly MeasuredBurst[]): number {
  let cpuUs = 0;
  let requests = 0;
  for (const b of bursts) {
    cpuUs += b.cpuUs;
    requests += b.requests;
  }
  return cpuUs / requests;
}

/**
 * Burst by burst, a variant's CPU per request over raw's in the same cycle of bursts: the two
 * were sent within a second of each other, so they saw nearly the same machine, while a round's
 * totals span minutes of a shared machine's load coming and going.
 */
export function pairedRatios(mine: readonly MeasuredBurst[], raw: readonly MeasuredBurst[]): number[] {
  const ratios: number[] = [];
  mine.forEach((b, i) => {
    const r = raw[i];
    if (r !== undefined) ratios.push(b.cpuUs / b.requests / (r.cpuUs / r.requests));
  });
  return ratios;
}

export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

/** A plain-text table: first column left-aligned, the rest right-aligned. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// --- where it ran ---------------------------------------------------------------------------------

export interface Environment {
  /** Which state of src/ was measured: git HEAD, whether src/ differs from it, a hash of its files. */
  source: string;
  node: string;
  undici: string;
  cockatiel: string;
  opossum: string;
  promClient: string;
  cpu: string;
  cores: number;
  pinned: boolean;
  platform: string;
}

function versionOf(pkg: string): string {
  try {
    const path = `${ROOT}node_modules/${pkg}/package.json`;
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
  } catch {
    return 'absent';
  }
}

/** `HEAD-sha[+dirty] src#hash`: the benchmark measures the work tree, which may not be committed. */
function sourceFingerprint(): string {
  const hash = createHash('sha256');
  const files = readdirSync(`${ROOT}src`, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => `${e.parentPath ?? e.path}/${e.name}`)
    .sort();
  for (const file of files) hash.update(file.slice(ROOT.length)).update(readFileSync(file));
  let head = 'no-git';
  try {
    // stderr ignored: outside a checkout (the Node 24 leg's copy) git's complaint is expected.
    const quiet: ExecFileSyncOptionsWithStringEncoding = {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    };
    head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], quiet).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], quiet);
    if (dirty.trim() !== '') head += '+dirty';
  } catch {
    // Not a git checkout (a tarball): the hash alone identifies the code.
  }
  return `${head} src#${hash.digest('hex').slice(0, 12)}`;
}

export function environment(): Environment {
  return {
    source: sourceFingerprint(),
    node: process.version,
    undici: versionOf('undici'),
    cockatiel: versionOf('cockatiel'),
    opossum: versionOf('opossum'),
    promClient: versionOf('prom-client'),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    pinned: canPin(),
    platform: `${process.platform} ${process.arch}`,
  };
}

export function describeEnvironment(env: Environment): string {
  const pin = env.pinned
    ? `server pinned to core ${SERVER_CORE}, clients to core ${CLIENT_CORE} (taskset)`
    : 'not pinned (no taskset or a single core): expect more noise';
  return [
    `Node ${env.node}, undici ${env.undici}, cockatiel ${env.cockatiel}, opossum ${env.opossum}, prom-client ${env.promClient}`,
    `${env.cpu}, ${env.cores} cores, ${env.platform}; ${pin}`,
    `source ${env.source}`,
  ].join('\n');
}

/**
 * CPU time (µs) all cores spent busy since boot, from /proc/stat; null where there is none. The
 * difference over a phase, minus what the client and server used, is load from other processes.
 */
export function machineBusyUs(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    const ticks = user! + nice! + system! + irq! + softirq! + steal!;
    return (ticks * 1e6) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

// --- command line ---------------------------------------------------------------------------------

/** `--name value` and `--flag` arguments; `--name=value` too. */
export function parseArgs(argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf('=');
    if (eq !== -1) {
      out.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
      out.set(arg.slice(2), argv[++i]!);
    } else {
      out.set(arg.slice(2), 'true');
    }
  }
  return out;
}

export function intArg(args: Map<string, string>, name: string, fallback: number, min = 1): number {
  const raw = args.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`--${name} expects an integer >= ${min}, got ${raw}`);
  }
  return value;
}
