// undici's `fetch()` through Breakwater. `fetch` cannot pass dispatch options, but it takes a
// dispatcher: here an Agent composed with the preset (`agent.compose(standardPipeline())`, the
// other way in besides `resilient()`). The local upstream answers 503 once, then JSON.
//
//   npx tsx examples/undici-fetch.ts
//   → {"example":"undici-fetch","status":200,"body":{"id":7,"name":"widget"},"upstreamRequests":2}
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Agent, fetch } from 'undici';
// In your project: import { standardPipeline } from 'breakwater';
import { standardPipeline } from '../src/index.js';

let upstreamRequests = 0;
const upstream = createServer((_req, res) => {
  upstreamRequests++;
  if (upstreamRequests === 1) res.writeHead(503).end('busy');
  else res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":7,"name":"widget"}');
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };

const agent = new Agent();
const dispatcher = agent.compose(standardPipeline());

const res = await fetch(`http://127.0.0.1:${port}/widgets/7`, { dispatcher });
const body = await res.json();
console.log(JSON.stringify({ example: 'undici-fetch', status: res.status, body, upstreamRequests }));

await agent.close();
upstream.close();
