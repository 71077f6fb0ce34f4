import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from '../helpers/child.js';

// Every ```ts block in README.md and docs/*.md is a whole program that type-checks against the
// package's own types, imported as users import them ('breakwater', 'breakwater/otel'), so the docs cannot rot. A
// block that is deliberately a fragment takes another info string (```text, ```js).

interface Block {
  file: string;
  line: number;
  code: string;
}

function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '```ts') continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]!.trim() !== '```') end++;
    blocks.push({ file, line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** Type-checks `blocks`, each as a module of its own; returns tsc's exit status and output. */
function typecheck(
  blocks: Block[],
  name: string,
): { status: number | null; output: string; files: string[] } {
  const dir = join(ROOT, 'node_modules/.cache/breakwater-doc-blocks', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = blocks.map((block, i) => {
    const file = `${block.file.replace(/[/.]/g, '_')}_line_${block.line}_${i}.ts`;
    // `export {}` makes each block a module (top-level await, no clash between blocks' names).
    writeFileSync(join(dir, file), `${block.code}\nexport {};\n`);
    return file;
  });
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      extends: join(ROOT, 'tsconfig.json'),
      compilerOptions: {
        noEmit: true,
        baseUrl: '.',
        paths: {
          breakwater: [join(ROOT, 'src/index.ts')],
          'breakwater/otel': [join(ROOT, 'src/otel/index.ts')],
          'breakwater/redis': [join(ROOT, 'src/redis/index.ts')],
        },
      },
      include: ['*.ts'],
    }),
  );
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { status: tsc.status, output: tsc.stdout + tsc.stderr, files };
}

describe('code blocks in the docs', () => {
  const docs = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) =>
    f.endsWith('.md'),
  );
  const blocks = docs.flatMap(blocksOf);

  test('every ```ts block type-checks against the package', () => {
    assert.ok(blocks.length >= 5, `found ${blocks.length} blocks`);
    const { status, output } = typecheck(blocks, 'docs');
    assert.equal(status, 0, `a block does not type-check:\n${output}`);
  });

  test('the checker fails on a broken block and names it', () => {
    const broken: Block = {
      file: 'README.md',
      line: 1,
      code: "import { retry } from 'breakwater';\nretry({ maxAttempts: '3' });",
    };
    const { status, output, files } = typecheck([broken], 'broken');
    assert.notEqual(status, 0);
    assert.match(output, new RegExp(files[0]!.replace('.', '\\.')));
    assert.match(output, /error TS2322/, 'a string where a number belongs');
  });
});
