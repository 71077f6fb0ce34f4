// Node's built-in global `fetch`, untouched at the call site: undici's `setGlobalDispatcher()`
// installs a resilient Agent, and every global fetch from then on goes through the preset. The
// local upstream answers 502 once, then 200.
//
//   npx tsx examples/global-fetch.ts
//   → {"example":"global-fetch","status":200,"body":"pong","upstreamRequests":2}
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Agent, getGlobalDispatcher, setGlobalDispatcher } from 'undici';
// In your project: import { resilient, standardPipeline } from 'breakwater';
import { resilient, standardPipeline } from '../src/index.js';

let upstreamRequests = 0;
const upstream = createServer((_req, res) => {
  upstreamRequests++;
  if (upstreamRequests === 1) res.writeHead(502).end('bad gateway');
  else res.writeHead(200, { 'content-type': 'text/plain' }).end('pong');
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };

// Node's fetch reads the global dispatcher that undici sets (a symbol on globalThis, shared by
// every copy of undici), so this one line makes the built-in fetch resilient.
setGlobalDispatcher(resilient(new Agent(), standardPipeline()));

// globalThis.fetch: Node's own, not undici's export.
const res = await globalThis.fetch(`http://127.0.0.1:${port}/ping`);
const body = await res.text();
console.log(JSON.stringify({ example: 'global-fetch', status: res.status, body, upstreamRequests }));

await getGlobalDispatcher().close();
upstream.close();
