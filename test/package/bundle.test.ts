import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { build } from 'esbuild';
import { ROOT, runScript } from '../helpers/child.js';

// The usual way to ship to a serverless platform: one file made by a bundler, often minified.
// Inside a bundle there is no package.json to read, and a minifier renames classes; nothing in
// Breakwater may depend on either (a version read from a file, a class recognised by its name).

describe('bundled with esbuild', () => {
  const dir = mkdtempSync(join(tmpdir(), 'breakwater-bundle-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const minify of [false, true]) {
    test(`${minify ? 'minified' : 'not minified'}: loads, retries attempt timeouts, the breaker counts them, every guard works`, async () => {
      const outfile = join(dir, `app${minify ? '.min' : ''}.mjs`);
      await build({
        entryPoints: [join(ROOT, 'test/fixtures/bundled-app.ts')],
        outfile,
        bundle: true,
        minify,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        // undici is CommonJS: give the bundle a require() for Node's built-ins.
        banner: {
          js: "import { createRequire as bundleRequire } from 'node:module'; const require = bundleRequire(import.meta.url);",
        },
        logLevel: 'silent',
      });
      const run = await runScript(outfile, [], 30_000);
      assert.equal(run.code, 0, `the bundle ran (stderr: ${run.stderr})`);
      const out = JSON.parse(run.stdout.trim()) as Record<string, unknown>;
      assert.deepEqual(out, {
        status: 200,
        body: 'third time',
        upstreamRequests: 3,
        retried: true,
        failedWithTimeout: true,
        circuit: 'open',
        guards: {
          timeout: true,
          circuit: true,
          bulkhead: true,
          invalid: true,
          resilience: true,
          notConfused: true,
        },
      });
    });
  }
});
