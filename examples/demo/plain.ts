/**
 * The comparison: a plain undici Agent with the retry loop people write by hand. Up to three
 * attempts, a fixed sleep, a timeout per attempt, and every failure retried — POSTs included,
 * Retry-After ignored. That is the loop that runs a POST twice when a response is lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import {
  type ClientRun,
  describeError,
  headersOf,
  type LogicalRequest,
  runJob,
  SAMPLE_MS,
  type Send,
  sampleEvery,
} from './job.js';
import { Progress } from './progress.js';
import type { Upstream } from './upstream.js';

export const PLAIN_SETTINGS = {
  attempts: 3,
  sleepMs: 100,
  attemptTimeoutMs: 5_000,
} as const;

/** The loop above, in words, a line each. */
export function describePlain(): string[] {
  const s = PLAIN_SETTINGS;
  return [
    `undici Agent + a hand-written loop: up to ${s.attempts} attempts, ${s.sleepMs} ms fixed sleep, ` +
      `${s.attemptTimeoutMs / 1000} s timeout per attempt;`,
    'retries any failure (POSTs too) and ignores Retry-After',
  ];
}

export async function runPlain(
  upstream: Upstream,
  requests: readonly LogicalRequest[],
  concurrency: number,
  stream: NodeJS.WriteStream | null,
): Promise<ClientRun> {
  const agent = new Agent();
  let retries = 0;
  const notRetried: Record<string, number> = {};
  let peakQueueDepth = 0;
  let inFlight = 0;
  const stopSampling = sampleEvery(SAMPLE_MS, () => {
    // undici queues requests only when a pool runs out of connections; this Agent has no limit.
    for (const stats of Object.values(agent.stats)) {
      if ('queued' in stats) peakQueueDepth = Math.max(peakQueueDepth, stats.queued);
    }
  });

  const send: Send = async (req) => {
    let failure = '';
    for (let attempt = 1; ; attempt++) {
      inFlight++;
      try {
        const res = await request(upstream.url + req.path, {
          dispatcher: agent,
          method: req.method,
          headers: headersOf(req),
          body: req.body,
          signal: AbortSignal.timeout(PLAIN_SETTINGS.attemptTimeoutMs),
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true };
        failure = String(res.statusCode);
      } catch (err) {
        failure = describeError(err);
      } finally {
        inFlight--;
      }
      if (attempt >= PLAIN_SETTINGS.attempts) {
        notRetried.attempts = (notRetried.attempts ?? 0) + 1;
        return { ok: false, failure };
      }
      retries++;
      await sleep(PLAIN_SETTINGS.sleepMs);
    }
  };

  const progress = new Progress({
    label: 'plain',
    total: requests.length,
    stream,
    status: () => `in flight ${inFlight}`,
  });
  try {
    const job = await runJob(requests, concurrency, send, (p) => progress.update(p));
    return { job, retries, notRetried, circuitOpens: 0, peakQueueDepth, hedgesSent: 0, hedgesWon: 0 };
  } finally {
    progress.finish();
    stopSampling();
    await agent.close();
  }
}
