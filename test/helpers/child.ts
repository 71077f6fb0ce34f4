import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The project root: scripts run from here, as `npm start` and `npx tsx` would. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ScriptRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
}

/**
 * Runs a TypeScript file in a fresh Node process through tsx, from the project root, and resolves
 * when it has exited. It is killed after `killAfterMs`, so a script that hangs (or a library timer
 * that keeps it alive) shows up as `signal: 'SIGKILL'` instead of a stuck test.
 */
export function runScript(file: string, args: string[] = [], killAfterMs = 30_000): Promise<ScriptRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
}
