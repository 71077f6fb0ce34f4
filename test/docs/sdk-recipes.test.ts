import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import ky from 'ky';
import { createFetch } from 'ofetch';
import OpenAI from 'openai';
import Stripe from 'stripe';
import {
  Agent,
  type Dispatcher,
  getGlobalDispatcher,
  setGlobalDispatcher,
  fetch as undiciFetch,
} from 'undici';
import { circuitBreaker, isCircuitOpenError, pipeline, resilient, retry } from '../../src/index.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// The recipes of docs/sdks.md against the published SDKs and a local upstream that always answers
// 503. With an SDK's own retries on, each of its attempts is a request Breakwater retries in turn,
// so the upstream sees the product of the two counts; with them off, exactly Breakwater's
// attempts. Kept short: Breakwater backs off 1 ms, and the upstream sends `retry-after-ms: 1`
// (read by the openai and Anthropic SDKs) and `Retry-After: 0` (read by ky and Breakwater).
// Stripe's client offers no option for its backoff (0.5 s, then up to 1 s), so its default case
// sleeps about 1–1.5 s; ofetch retries without a delay by default.

const BREAKWATER_ATTEMPTS = 3;

type Fetch = typeof globalThis.fetch;

/** A `fetch` through `dispatcher`, accepting what SDKs pass: a URL with options, or a `Request` (ky). */
function fetchThrough(dispatcher: Dispatcher): Fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const request = input instanceof Request ? input : undefined;
    const response = await undiciFetch(request?.url ?? (input as string | URL), {
      ...(request && {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal: request.signal,
        duplex: 'half',
      }),
      ...init,
      dispatcher,
    } as Parameters<typeof undiciFetch>[1]);
    return response as unknown as Response;
  }) as Fetch;
}

interface Client {
  name: string;
  /** Calls the upstream once through the SDK, with its retries at their default or off; `fetch` undefined: the SDK's own default. */
  call(fetch: Fetch | undefined, origin: string, sdkRetries: 'default' | 'off'): Promise<unknown>;
  /** Upstream requests per call with the SDK's default retries. */
  multipliedBy: number;
}

const clients: Client[] = [
  {
    name: 'openai',
    multipliedBy: 3, // maxRetries: 2
    call: (fetch, origin, sdkRetries) =>
      new OpenAI({
        apiKey: 'sk-local',
        baseURL: `${origin}/v1`,
        fetch,
        ...(sdkRetries === 'off' && { maxRetries: 0 }),
      }).models.list(),
  },
  {
    name: '@anthropic-ai/sdk',
    multipliedBy: 3, // maxRetries: 2
    call: (fetch, origin, sdkRetries) =>
      new Anthropic({
        apiKey: 'sk-ant-local',
        baseURL: origin,
        fetch,
        ...(sdkRetries === 'off' && { maxRetries: 0 }),
      }).models.list(),
  },
  {
    name: 'stripe',
    multipliedBy: 3, // maxNetworkRetries: 2
    call: (fetch, origin, sdkRetries) => {
      const { hostname, port } = new URL(origin);
      return new Stripe('sk_test_local', {
        host: hostname,
        port,
        protocol: 'http',
        httpClient: Stripe.createFetchHttpClient(fetch),
        ...(sdkRetries === 'off' && { maxNetworkRetries: 0 }),
      }).balance.retrieve();
    },
  },
  {
    name: 'ky',
    multipliedBy: 3, // retry: { limit: 2 }
    call: (fetch, origin, sdkRetries) =>
      ky.get(`${origin}/v1/things`, { fetch, ...(sdkRetries === 'off' && { retry: 0 }) }).text(),
  },
  {
    name: 'ofetch',
    multipliedBy: 2, // retry: 1 for a GET
    call: (fetch, origin, sdkRetries) =>
      createFetch({ fetch })(`${origin}/v1/things`, sdkRetries === 'off' ? { retry: 0 } : {}),
  },
];

describe('SDK recipes', () => {
  let upstream: Upstream;
  before(async () => {
    upstream = await startUpstream({
      kind: 'respond',
      status: 503,
      headers: { 'content-type': 'application/json', 'retry-after': '0', 'retry-after-ms': '1' },
      body: JSON.stringify({ error: { type: 'api_error', message: 'overloaded' } }),
    });
  });
  after(() => upstream.close());

  /** Upstream requests for one SDK call through a Breakwater retry stage. */
  async function upstreamRequests(client: Client, sdkRetries: 'default' | 'off'): Promise<number> {
    upstream.reset();
    const stages = pipeline([
      retry({ maxAttempts: BREAKWATER_ATTEMPTS, backoff: { initialDelay: 1, maxDelay: 1 }, budget: false }),
    ]);
    const dispatcher = resilient(new Agent(), stages);
    try {
      await assert.rejects(client.call(fetchThrough(dispatcher), upstream.origin, sdkRetries));
      return upstream.requests.length;
    } finally {
      await dispatcher.close();
    }
  }

  for (const client of clients) {
    test(`${client.name}: its own retries multiply Breakwater's; turned off, the upstream sees Breakwater's attempts alone`, async () => {
      assert.equal(await upstreamRequests(client, 'default'), client.multipliedBy * BREAKWATER_ATTEMPTS);
      assert.equal(await upstreamRequests(client, 'off'), BREAKWATER_ATTEMPTS);
    });
  }

  test("with setGlobalDispatcher instead of a fetch per SDK, each SDK's default fetch goes through Breakwater", async () => {
    const previous = getGlobalDispatcher();
    const dispatcher = resilient(
      new Agent(),
      pipeline([
        retry({ maxAttempts: BREAKWATER_ATTEMPTS, backoff: { initialDelay: 1, maxDelay: 1 }, budget: false }),
      ]),
    );
    setGlobalDispatcher(dispatcher);
    try {
      for (const client of clients) {
        upstream.reset();
        await assert.rejects(client.call(undefined, upstream.origin, 'off')); // each SDK's default fetch
        assert.equal(
          upstream.requests.length,
          BREAKWATER_ATTEMPTS,
          `${client.name} went through the retry stage`,
        );
      }
    } finally {
      setGlobalDispatcher(previous);
      await dispatcher.close();
    }
  });

  test('openai, Anthropic, ky and ofetch: an open circuit is in the cause chain of their error, where isCircuitOpenError finds it', async () => {
    upstream.reset();
    const breaker = circuitBreaker();
    const dispatcher = resilient(new Agent(), pipeline([breaker]));
    try {
      breaker.isolate(upstream.origin);
      const fetch = fetchThrough(dispatcher);
      for (const client of clients.filter((c) => c.name !== 'stripe')) {
        const err = await client.call(fetch, upstream.origin, 'off').then(
          () => assert.fail(`${client.name}: the circuit is open`),
          (e: unknown) => e,
        );
        assert.equal(isCircuitOpenError(err), true, `${client.name}: ${String(err)}`);
      }
      assert.equal(upstream.requests.length, 0, 'nothing reached the upstream');
    } finally {
      await dispatcher.close();
    }
  });

  test("stripe: an open circuit arrives in the error's `detail`, where isCircuitOpenError finds it", async () => {
    upstream.reset();
    const breaker = circuitBreaker();
    const dispatcher = resilient(new Agent(), pipeline([breaker]));
    try {
      breaker.isolate(upstream.origin);
      const stripe = new Stripe('sk_test_local', {
        host: '127.0.0.1',
        port: upstream.port,
        protocol: 'http',
        httpClient: Stripe.createFetchHttpClient(fetchThrough(dispatcher)),
        maxNetworkRetries: 0,
      });
      const err = await stripe.balance.retrieve().then(
        () => assert.fail('the circuit is open'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Stripe.errors.StripeConnectionError, String(err));
      assert.equal(isCircuitOpenError(err), false, 'Stripe keeps the cause in `detail`, not `cause`');
      assert.equal(isCircuitOpenError(err.detail), true);
      assert.equal(upstream.requests.length, 0, 'nothing reached the upstream');
    } finally {
      await dispatcher.close();
    }
  });
});
