import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// What a user gets from the registry: `npm pack` (whose prepack script builds dist/), the tarball
// unpacked into a scratch project outside this repository, and the package used from there — from
// ESM, from CommonJS (require(esm), unflagged since Node 20.19) and from TypeScript under the
// module resolutions people use. Offline: instead of `npm install`, the scratch project's
// node_modules gets the unpacked tarball plus symlinks to this project's copies of exactly the
// dependencies and peer dependencies the packed package.json declares, so an import of anything
// undeclared fails here as it would for a user.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const OPTIONAL_PEERS = ['prom-client', '@opentelemetry/api'];

let tmp: string;
let scratch: string;
/** The same scratch project without the optional peers. */
let bare: string;
let tarball: string;
let packed: { dependencies?: Record<string, string>; peerDependencies?: Record<string, string> };

async function node(cwd: string, file: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [file], { cwd, timeout: 15_000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** Runs tsc in `cwd`; resolves with its diagnostics (empty when it passed). */
async function tsc(cwd: string, config: string): Promise<string> {
  try {
    await run(process.execPath, [TSC, '-p', config], { cwd, timeout: 60_000 });
    return '';
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message;
  }
}

async function makeProject(dir: string, deps: string[]): Promise<void> {
  await mkdir(join(dir, 'node_modules', 'breakwater'), { recursive: true });
  await mkdir(join(dir, 'node_modules', '@types'), { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'scratch', private: true, type: 'module' }),
  );
  await run('tar', ['-xzf', tarball, '-C', join(dir, 'node_modules', 'breakwater'), '--strip-components=1']);
  for (const dep of [...deps, '@types/node']) {
    await mkdir(dirname(join(dir, 'node_modules', dep)), { recursive: true });
    await symlink(join(ROOT, 'node_modules', dep), join(dir, 'node_modules', dep), 'dir');
  }
  for (const [name, source] of Object.entries(FILES)) await writeFile(join(dir, name), source);
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'breakwater-pack-'));
  const out = join(tmp, 'out');
  await mkdir(out);
  // prepack runs `npm run build`, so this works from a clean checkout too.
  await run('npm', ['pack', '--pack-destination', out, '--silent'], { cwd: ROOT, timeout: 120_000 });
  const [name] = (await readdir(out)).filter((f) => f.endsWith('.tgz'));
  assert.ok(name, 'npm pack wrote a tarball');
  tarball = join(out, name);

  scratch = join(tmp, 'scratch');
  bare = join(tmp, 'bare');
  const { stdout } = await run('tar', ['-xzOf', tarball, 'package/package.json']);
  packed = JSON.parse(stdout);
  const declared = [...Object.keys(packed.dependencies ?? {}), ...Object.keys(packed.peerDependencies ?? {})];
  await makeProject(scratch, declared);
  await makeProject(
    bare,
    declared.filter((d) => !OPTIONAL_PEERS.includes(d)),
  );
});

after(async () => {
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  test('holds dist/ with types and maps, the sources they map to, the README and package.json, and nothing else', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.trim().split('\n');
    for (const f of [
      'package/package.json',
      'package/README.md',
      'package/dist/index.js',
      'package/dist/index.d.ts',
      'package/dist/index.js.map',
      'package/src/index.ts',
    ]) {
      assert.ok(files.includes(f), `${f} is packed`);
    }
    const stray = files.filter((f) => !/^package\/(dist\/|src\/|README\.md$|LICENSE|package\.json$)/.test(f));
    assert.deepEqual(stray, [], 'no tests, examples or local files');
  });

  test('its declared dependencies are present in this project to link (the scratch install is complete)', () => {
    for (const dep of [
      ...Object.keys(packed.dependencies ?? {}),
      ...Object.keys(packed.peerDependencies ?? {}),
    ]) {
      assert.ok(existsSync(join(scratch, 'node_modules', dep, 'package.json')), `${dep} linked`);
    }
  });

  test('ESM: import { standardPipeline, resilient } from "breakwater" makes a real request', async () => {
    assert.deepEqual(await node(scratch, 'esm.mjs'), {
      status: 200,
      body: 'ok',
      upstreamRequests: 2,
      attemptsCounted: 2,
    });
  });

  test(`CommonJS: require('breakwater') works on Node ${process.versions.node} without a flag`, async () => {
    assert.deepEqual(await node(scratch, 'cjs.cjs'), {
      status: 200,
      upstreamRequests: 2,
      sameModuleAsImport: true,
      errorsAreClasses: true,
    });
  });

  test('only the entry points in "exports" can be imported: the main one and breakwater/redis', async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.deepEqual(await node(scratch, 'exports.mjs'), {
      deepImport: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
      packageJson: version,
      redisEntry: 'function',
    });
  });

  test('without the optional peers prom-client and @opentelemetry/api, the package still imports and works', async () => {
    const out = await node(bare, 'no-metrics.mjs');
    assert.deepEqual(out, { status: 200, upstreamRequests: 2 });
  });

  test('breakwater/otel is its own entry point: it works with @opentelemetry/api, and only it needs it', async () => {
    assert.deepEqual(await node(scratch, 'otel.mjs'), { status: 200, upstreamRequests: 2, otel: 'loaded' });
    assert.deepEqual(await node(bare, 'otel.mjs'), { otel: 'ERR_MODULE_NOT_FOUND @opentelemetry/api' });
  });

  describe('TypeScript resolves the types', { concurrency: true }, () => {
    test('module/moduleResolution nodenext: ESM and a .cts with import = require(), skipLibCheck off', async () => {
      assert.equal(await tsc(scratch, 'tsconfig.nodenext.json'), '');
    });

    test('module preserve, moduleResolution bundler', async () => {
      assert.equal(await tsc(scratch, 'tsconfig.bundler.json'), '');
    });
  });
});

/** Two answers: a 503, then a 200 — one retry through the preset. */
const SERVER = `
import { createServer } from 'node:http';
import { once } from 'node:events';
let upstreamRequests = 0;
const server = createServer((_req, res) => {
  upstreamRequests++;
  if (upstreamRequests === 1) res.writeHead(503).end('busy');
  else res.writeHead(200).end('ok');
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const url = 'http://127.0.0.1:' + server.address().port + '/';
`;

const COMPILER = { target: 'es2022', lib: ['es2023'], types: ['node'], strict: true, noEmit: true };

const FILES: Record<string, string> = {
  'esm.mjs': `${SERVER}
import { Agent, request } from 'undici';
import { Registry } from 'prom-client';
import { standardPipeline, resilient, prometheusMetrics } from 'breakwater';
const registry = new Registry();
const dispatcher = resilient(
  new Agent(),
  standardPipeline({ retry: { backoff: { initialDelay: 5, maxDelay: 10 } }, metrics: prometheusMetrics({ registry }) }),
);
const res = await request(url, { dispatcher });
const body = await res.body.text();
const attempts = (await registry.getSingleMetric('breakwater_attempts_total').get()).values
  .reduce((sum, v) => sum + v.value, 0);
console.log(JSON.stringify({ status: res.statusCode, body, upstreamRequests, attemptsCounted: attempts }));
await dispatcher.close();
server.close();
`,
  'cjs.cjs': `
const { createServer } = require('node:http');
const { Agent, request } = require('undici');
const breakwater = require('breakwater');
const { standardPipeline, resilient, TimeoutError, ResilienceError } = breakwater;
(async () => {
  let upstreamRequests = 0;
  const server = createServer((_req, res) => {
    upstreamRequests++;
    if (upstreamRequests === 1) res.writeHead(503).end('busy');
    else res.writeHead(200).end('ok');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dispatcher = resilient(new Agent(), standardPipeline({ retry: { backoff: { initialDelay: 5, maxDelay: 10 } } }));
  const res = await request('http://127.0.0.1:' + server.address().port + '/', { dispatcher });
  await res.body.dump();
  const imported = await import('breakwater');
  console.log(JSON.stringify({
    status: res.statusCode,
    upstreamRequests,
    sameModuleAsImport: imported.standardPipeline === standardPipeline,
    errorsAreClasses: new TimeoutError('total', 5) instanceof ResilienceError,
  }));
  await dispatcher.close();
  server.close();
})();
`,
  'exports.mjs': `
import { createRequire } from 'node:module';
let deepImport = 'imported';
try { await import('breakwater/dist/index.js'); } catch (e) { deepImport = e.code; }
const packageJson = createRequire(import.meta.url)('breakwater/package.json').version;
const { redisStore } = await import('breakwater/redis');
console.log(JSON.stringify({ deepImport, packageJson, redisEntry: typeof redisStore }));
`,
  'otel.mjs': `
let otel;
try {
  otel = await import('breakwater/otel');
} catch (e) {
  console.log(JSON.stringify({ otel: e.code + ' ' + (/@opentelemetry\\/api/.exec(e.message)?.[0] ?? e.message) }));
  process.exit(0);
}
${SERVER}
import { Agent, request } from 'undici';
const { standardPipeline, resilient } = await import('breakwater');
const tracing = otel.openTelemetryTracing();
const dispatcher = resilient(
  new Agent(),
  standardPipeline({ retry: { backoff: { initialDelay: 5, maxDelay: 10 } }, metrics: [otel.openTelemetryMetrics()] }),
);
const res = await request(url, { dispatcher });
await res.body.dump();
tracing.disable();
console.log(JSON.stringify({ status: res.statusCode, upstreamRequests, otel: 'loaded' }));
await dispatcher.close();
server.close();
`,
  'no-metrics.mjs': `${SERVER}
import { Agent, request } from 'undici';
import { standardPipeline, resilient } from 'breakwater';
const dispatcher = resilient(new Agent(), standardPipeline({ retry: { backoff: { initialDelay: 5, maxDelay: 10 } } }));
const res = await request(url, { dispatcher });
await res.body.dump();
console.log(JSON.stringify({ status: res.statusCode, upstreamRequests }));
await dispatcher.close();
server.close();
`,
  // Uses the public types the way an application does; the @ts-expect-error lines prove the types
  // are real (an unresolved import would make them \`any\` and those lines unused errors).
  'check.ts': `
import { Registry } from 'prom-client';
import { Agent, type Dispatcher, request } from 'undici';
import {
  CircuitOpenError, type KeyHealth, type RequestOverrides, type ResilienceInterceptor,
  type StandardPipelineOptions, TimeoutError, bulkhead, circuitBreaker, isTimeoutError, pipeline,
  prometheusMetrics, resilient, retry, standardPipeline, timeout,
} from 'breakwater';
import { openTelemetryMetrics, openTelemetryTracing, type OpenTelemetryMetricsOptions } from 'breakwater/otel';

export const otelOptions: OpenTelemetryMetricsOptions = {};
export const traced = openTelemetryTracing();
export const both = standardPipeline({ metrics: [openTelemetryMetrics(otelOptions), prometheusMetrics({ registry: new Registry() })] });
// @ts-expect-error meterProvider is a MeterProvider
openTelemetryMetrics({ meterProvider: 1 });

const options: StandardPipelineOptions = { totalTimeout: 5_000, retry: { maxAttempts: 2 }, bulkhead: false };
const interceptor: ResilienceInterceptor = standardPipeline(options);
export const composed: Dispatcher = new Agent().compose(interceptor);
export const wrapped: Dispatcher = resilient(
  new Agent(),
  pipeline(
    [timeout(1_000), retry(), circuitBreaker(), bulkhead({ maxConcurrent: 1, maxQueue: 0 }), timeout(500, { until: 'headers' })],
    { metrics: prometheusMetrics({ registry: new Registry() }) },
  ),
);
const overrides: { breakwater: RequestOverrides } = { breakwater: { maxAttempts: 1, idempotent: true } };
export async function get(url: string): Promise<number> {
  const res = await request(url, { dispatcher: wrapped, ...overrides });
  return res.statusCode;
}
export function explain(e: unknown): string {
  if (e instanceof TimeoutError) return e.scope + ' ' + e.ms.toFixed(0);
  if (e instanceof CircuitOpenError) return e.key + ' ' + e.retryAfterMs.toFixed(0);
  return isTimeoutError(e) ? 'timeout' : 'other';
}
export const health: Record<string, KeyHealth> = interceptor.health();

// @ts-expect-error maxAttempts is a number
standardPipeline({ retry: { maxAttempts: '3' } });
// @ts-expect-error there is no 'retries' option
standardPipeline({ retries: 3 });
// @ts-expect-error until is 'end' or 'headers'
timeout(1_000, { until: 'body' });
// @ts-expect-error scope is 'attempt' or 'total'
export const scope: TimeoutError['scope'] = 'never';
`,
  'check-cjs.cts': `
import breakwater = require('breakwater');
export const interceptor: breakwater.ResilienceInterceptor = breakwater.standardPipeline({ bulkhead: false });
// @ts-expect-error bulkhead takes an object or false
breakwater.standardPipeline({ bulkhead: 64 });
`,
  'check-bare.ts': `
import { Agent, type Dispatcher } from 'undici';
import { type MetricsRegistry, resilient, standardPipeline } from 'breakwater';
export const dispatcher: Dispatcher = resilient(new Agent(), standardPipeline());
// @ts-expect-error a number is not a registry (unless the type fell back to any)
export const registry: MetricsRegistry = 1;
`,
  'tsconfig.nodenext.json': JSON.stringify({
    compilerOptions: { ...COMPILER, module: 'nodenext', moduleResolution: 'nodenext', skipLibCheck: false },
    files: ['check.ts', 'check-cjs.cts'],
  }),
  'tsconfig.bundler.json': JSON.stringify({
    compilerOptions: { ...COMPILER, module: 'preserve', moduleResolution: 'bundler', skipLibCheck: true },
    files: ['check.ts'],
  }),
  'tsconfig.bare.json': JSON.stringify({
    compilerOptions: { ...COMPILER, module: 'nodenext', moduleResolution: 'nodenext', skipLibCheck: true },
    files: ['check-bare.ts'],
  }),
};
