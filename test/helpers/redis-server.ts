/*
 * A real Redis server for the fleet tests (Debian's `redis-server` package): started on a free
 * loopback port with a temporary directory and no persistence, stopped (and its directory
 * removed) by the test. A suite that needs it skips with a clear message when the binary is
 * absent, except where BREAKWATER_REQUIRE_REDIS=1 (set by .ci/run, which installs it): there it
 * fails.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REQUIRE_REDIS = process.env.BREAKWATER_REQUIRE_REDIS === '1';

/** Whether `redis-server` runs from PATH. */
export function hasRedis(): boolean {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return probe.error === undefined && probe.status === 0;
}

/** The `skip` option of a suite that needs Redis: a message when absent and not required, else `false`. */
export function skipUnlessRedis(): string | false {
  if (REQUIRE_REDIS || hasRedis()) return false;
  return 'redis-server not found on PATH: install the Debian/Ubuntu package "redis-server" to run this test (CI sets BREAKWATER_REQUIRE_REDIS=1 and fails instead of skipping)';
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Kills the server at once (SIGKILL): what a crash looks like to its clients. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves when something accepts connections on `port`; rejects after `timeoutMs`. */
async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
}

/** Starts `redis-server` on a free loopback port. */
export async function startRedis(): Promise<RedisServer> {
  if (!hasRedis())
    throw new Error('redis-server is required (BREAKWATER_REQUIRE_REDIS=1) but was not found on PATH');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'breakwater-redis-'));
  let child: ChildProcess | null = null;
  const launch = async (): Promise<void> => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'yes',
      ],
      { stdio: 'ignore' },
    );
    await waitForPort(port, 10_000);
  };
  const kill = async (): Promise<void> => {
    const running = child;
    child = null;
    if (running === null || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGKILL');
    });
  };
  await launch();
  let stopped = false;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    restart: launch,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
