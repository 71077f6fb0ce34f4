// undici's `request()` through Breakwater: wrap the Agent you already have with `resilient()` and
// pass it as the dispatcher. The local upstream answers 503 once, then 200; the preset retries the
// GET and the caller only ever sees the 200.
//
//   npx tsx examples/undici-request.ts
//   → {"example":"undici-request","status":200,"body":"hello","upstreamRequests":2}
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Agent, request } from 'undici';
// In your project: import { resilient, standardPipeline } from 'breakwater';
import { resilient, standardPipeline } from '../src/index.js';

let upstreamRequests = 0;
const upstream = createServer((_req, res) => {
  upstreamRequests++;
  if (upstreamRequests === 1) res.writeHead(503).end('busy');
  else res.writeHead(200, { 'content-type': 'text/plain' }).end('hello');
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };

const dispatcher = resilient(new Agent(), standardPipeline());

const res = await request(`http://127.0.0.1:${port}/greeting`, { dispatcher });
const body = await res.body.text();
console.log(JSON.stringify({ example: 'undici-request', status: res.statusCode, body, upstreamRequests }));

// close() lets anything in flight finish, then closes the Agent underneath.
await dispatcher.close();
upstream.close();
