// Logs every retry and every give-up as structured JSON with pino, against a local upstream that
// answers 503 twice (once with Retry-After) before it succeeds.
//
//   npx tsx examples/retry-logging.ts
import { once } from 'node:events';
import { createServer } from 'node:http';
import pino from 'pino';
import { Agent, request } from 'undici';
import { pipeline, resilient, retry, timeout } from '../src/index.js';

const logger = pino({
  base: undefined,
  timestamp: pino.stdTimeFunctions.isoTime,
});

let calls = 0;
const upstream = createServer((_req, res) => {
  calls++;
  if (calls === 1) res.writeHead(503, { 'retry-after': '0' }).end('busy');
  else if (calls === 2) res.writeHead(503).end('still busy');
  else res.writeHead(200).end('ok');
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };

const retryStage = retry({
  maxAttempts: 4,
  backoff: { initialDelay: 20, maxDelay: 200 },
});
retryStage.onRetry(({ key, attempt, delay, reason, statusCode, error }) =>
  logger.warn(
    {
      key,
      attempt,
      delayMs: Math.round(delay),
      reason,
      statusCode,
      err: error,
    },
    'retrying request',
  ),
);
retryStage.onGiveUp(({ key, attempts, reason, statusCode, error }) =>
  logger.error({ key, attempts, reason, statusCode, err: error }, 'gave up retrying'),
);

const dispatcher = resilient(new Agent(), pipeline([timeout(5_000), retryStage]));
const res = await request(`http://127.0.0.1:${port}/orders`, { dispatcher });
logger.info(
  { status: res.statusCode, body: await res.body.text(), upstreamCalls: calls },
  'request finished',
);

await dispatcher.close();
upstream.close();
