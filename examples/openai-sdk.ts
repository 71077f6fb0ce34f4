// The published `openai` SDK made resilient without touching a call site: the client gets a
// `fetch` that sends through a Breakwater dispatcher, and the SDK's own retries are off
// (`maxRetries: 0`) so one retry policy runs, not two stacked. A local server imitates
// `POST /v1/chat/completions`: it answers 429 with `Retry-After: 1` first, then a completion.
//
//   npx tsx examples/openai-sdk.ts
//   → {"example":"openai-sdk","content":"Hello from a local model.","finishReason":"stop",
//      "upstreamRequests":2,"sdkRetryCounts":["0","0"],"sameIdempotencyKey":true,"waitedMs":1000}
//
// Two things make a chat completion (a POST) retryable, and this `fetch` provides both:
//
// - Consent. Breakwater retries a POST only with an `Idempotency-Key` header or an opt-in. The
//   openai SDK sends no such header (checked on openai 6.x: only SDKs whose API declares one do),
//   so this `fetch` adds a fresh key to every call that lacks one. Retries of that call replay the
//   same headers, so a server can tell a repeat from a new request. (A fixed key in
//   `defaultHeaders` would be wrong: every distinct call would share it.) The SDK itself retries
//   these POSTs on 429 and 5xx when its own retries are on, so this asks for nothing it did not do.
// - A body that can be sent again. undici's `fetch()` always hands the dispatcher the body as a
//   one-shot stream, even when you passed a string, and a stream cannot be replayed: through
//   `undici.fetch` (or `fetchOptions: { dispatcher }`) the 429 would reach the SDK unretried. So
//   this `fetch` sends string and byte bodies with undici's `request()`, which passes them through
//   as they are, and wraps the answer in a standard `Response`. Other bodies (streams, forms, file
//   uploads) go through `undici.fetch`: sent once, never replayed.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import OpenAI from 'openai';
import { Agent, type Dispatcher, request, fetch as undiciFetch } from 'undici';
// In your project: import { resilient, standardPipeline } from 'breakwater';
import { resilient, standardPipeline } from '../src/index.js';

// --- a local stand-in for the OpenAI API -------------------------------------------------------

const received: Array<{ idempotencyKey?: string; sdkRetryCount?: string; at: number }> = [];
const upstream = createServer(async (req, res) => {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  received.push({
    idempotencyKey: req.headers['idempotency-key'] as string | undefined,
    sdkRetryCount: req.headers['x-stainless-retry-count'] as string | undefined,
    at: performance.now(),
  });
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    json(404, {
      error: { message: `Unknown route ${req.method} ${req.url}`, type: 'invalid_request_error' },
    });
  } else if (received.length === 1) {
    json(
      429,
      { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } },
      { 'retry-after': '1' },
    );
  } else {
    const { model } = JSON.parse(raw) as { model: string };
    json(200, {
      id: 'chatcmpl-local-1',
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello from a local model.', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 9, completion_tokens: 6, total_tokens: 15 },
    });
  }
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };

// --- the resilient fetch -------------------------------------------------------------------------

const dispatcher = resilient(new Agent(), standardPipeline());

/** A `fetch` for SDKs: through Breakwater, with replayable bodies kept replayable. */
async function resilientFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const url = input instanceof Request ? input.url : String(input);
  const method = (init.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => {
    headers[name] = value;
  });
  if (method !== 'GET' && method !== 'HEAD') headers['idempotency-key'] ??= randomUUID();

  const body = init.body;
  if (body != null && typeof body !== 'string' && !ArrayBuffer.isView(body)) {
    // undici's Response is another class than Node's global one (Node 20 bundles undici 6) with
    // the same interface, which is all the SDK uses; the casts bridge the two declarations.
    const streamed = await undiciFetch(url, {
      ...(init as Parameters<typeof undiciFetch>[1]),
      headers,
      dispatcher,
    });
    return streamed as unknown as Response;
  }

  const res = await request(url, {
    dispatcher,
    method: method as Dispatcher.HttpMethod,
    headers,
    body:
      body == null || typeof body === 'string'
        ? body
        : new Uint8Array(body.buffer, body.byteOffset, body.byteLength),
    signal: init.signal ?? undefined,
  });
  const responseHeaders = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    for (const v of Array.isArray(value) ? value : [value ?? '']) responseHeaders.append(name, v);
  }
  const noBody = method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
  if (noBody) await res.body.dump();
  return new Response(noBody ? null : (Readable.toWeb(res.body) as ReadableStream<Uint8Array>), {
    status: res.statusCode,
    headers: responseHeaders,
  });
}

// --- the SDK, used as usual ----------------------------------------------------------------------

const client = new OpenAI({
  apiKey: 'sk-local-example',
  baseURL: `http://127.0.0.1:${port}/v1`,
  maxRetries: 0,
  fetch: resilientFetch,
});

const completion = await client.chat.completions.create({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello.' }],
});

const [first, second] = received;
console.log(
  JSON.stringify({
    example: 'openai-sdk',
    content: completion.choices[0]?.message.content,
    finishReason: completion.choices[0]?.finish_reason,
    upstreamRequests: received.length,
    // The SDK counts its own retries in this header: "0" both times, the retry was Breakwater's.
    sdkRetryCounts: received.map((r) => r.sdkRetryCount),
    sameIdempotencyKey:
      first?.idempotencyKey !== undefined && first.idempotencyKey === second?.idempotencyKey,
    // Retry-After: 1 was honoured; rounded to 100 ms so the line reads the same from run to run.
    waitedMs: first && second ? Math.round((second.at - first.at) / 100) * 100 : null,
  }),
);

await dispatcher.close();
upstream.close();
