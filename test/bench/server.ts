// The benchmarks' upstream: a keep-alive node:http server in a process of its own (the parent pins
// it to a core), answering 200 with a small body, or failing/slowing down as configured. Over IPC
// it reports its own CPU time and how many requests it received, so the parent can show that the
// server was not the bottleneck and count what actually reached the wire.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from '../helpers/prng.js';
import type { ServerMode } from './common.js';

const BODY = Buffer.from('hello from the bench upstream\n');
const OK_HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY.length) };
const FAIL_BODY = Buffer.from('upstream says no\n');

let random = mulberry32(1);
let mode: Required<Omit<ServerMode, 'retryAfter'>> & { retryAfter: string | undefined } = configure({});
let requests = 0;
let statuses: Record<string, number> = {};

function configure(m: ServerMode): typeof mode {
  random = mulberry32(m.seed ?? 1);
  return {
    failRatio: m.failRatio ?? 0,
    failStatus: m.failStatus ?? 503,
    retryAfter: m.retryAfter,
    slowRatio: m.slowRatio ?? 0,
    slowMs: m.slowMs ?? 0,
    seed: m.seed ?? 1,
  };
}

function count(status: number): void {
  statuses[status] = (statuses[status] ?? 0) + 1;
}

function answer(req: IncomingMessage, res: ServerResponse): void {
  requests++;
  // The plain path first and allocation-free: it is what the overhead benchmark measures.
  if (mode.failRatio === 0 && mode.slowRatio === 0) {
    res.writeHead(200, OK_HEADERS);
    res.end(BODY);
    return;
  }
  // Drain whatever body came with the request before answering, so the socket stays reusable.
  req.resume();
  if (mode.failRatio > 0 && random() < mode.failRatio) {
    count(mode.failStatus);
    const headers: Record<string, string> = {
      'content-type': 'text/plain',
      'content-length': String(FAIL_BODY.length),
    };
    if (mode.retryAfter !== undefined) headers['retry-after'] = mode.retryAfter;
    res.writeHead(mode.failStatus, headers);
    res.end(FAIL_BODY);
    return;
  }
  count(200);
  if (mode.slowRatio > 0 && random() < mode.slowRatio) {
    const timer = setTimeout(() => {
      if (!res.destroyed) {
        res.writeHead(200, OK_HEADERS);
        res.end(BODY);
      }
    }, mode.slowMs);
    res.on('close', () => clearTimeout(timer));
    return;
  }
  res.writeHead(200, OK_HEADERS);
  res.end(BODY);
}

const server = createServer({ keepAlive: true, keepAliveTimeout: 60_000 }, answer);
// Many clients come and go (one process per measured round); keep-alive sockets of a client that
// exited are closed by the kernel, nothing to tune there.
server.keepAliveTimeout = 60_000;
server.headersTimeout = 0;
server.requestTimeout = 0;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.send?.({ type: 'listening', port });
});

process.on('message', (msg: { type: string; id?: number; mode?: ServerMode }) => {
  switch (msg.type) {
    case 'cpu': {
      const { user, system } = process.cpuUsage();
      process.send?.({ type: 'cpu', id: msg.id, user, system, requests, statuses });
      break;
    }
    case 'configure':
      mode = configure(msg.mode ?? {});
      requests = 0;
      statuses = {};
      process.send?.({ type: 'configured', id: msg.id });
      break;
    case 'stop':
      server.closeAllConnections();
      server.close(() => process.exit(0));
      break;
  }
});

// The parent going away (Ctrl-C, crash) must not leave a server behind.
process.on('disconnect', () => process.exit(0));
