// A `Pool` to one upstream, wrapped with `resilient()`: five GETs at once over at most two
// connections. The upstream answers 503 the first time it sees each path and 200 after that, so
// every request needs one retry; the bulkhead, the breaker and the retry budget are per origin.
//
//   npx tsx examples/pool.ts
//   → {"example":"pool","statuses":[200,200,200,200,200],"upstreamRequests":10,"connections":2}
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Pool, request } from 'undici';
// In your project: import { resilient, standardPipeline } from 'breakwater';
import { resilient, standardPipeline } from '../src/index.js';

let upstreamRequests = 0;
let connections = 0;
const seen = new Set<string>();
const upstream = createServer((req, res) => {
  upstreamRequests++;
  const path = req.url ?? '/';
  if (!seen.has(path)) {
    seen.add(path);
    res.writeHead(503).end('busy');
  } else {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`item ${path}`);
  }
});
upstream.on('connection', () => connections++);
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };
const origin = `http://127.0.0.1:${port}`;

const dispatcher = resilient(new Pool(origin, { connections: 2 }), standardPipeline());

const statuses = await Promise.all(
  [1, 2, 3, 4, 5].map(async (i) => {
    const res = await request(`${origin}/items/${i}`, { dispatcher });
    await res.body.text();
    return res.statusCode;
  }),
);
console.log(JSON.stringify({ example: 'pool', statuses, upstreamRequests, connections }));

await dispatcher.close();
upstream.close();
