// A gate of your own: at most two requests in flight per tenant (named by the `x-tenant` request
// header), the rest refused at once with a 429-like error of yours, while the preset's stages run
// as usual around it. Placed after retry() a gate sees every attempt; before it, every request.
//
// Tenant "a" sends five requests at once, tenant "b" one. The upstream is slow (100 ms), so "a"
// hits its cap: two of its requests go through, three are refused without reaching the network.
//
//   npx tsx examples/tenant-cap.ts
//   → {"example":"tenant-cap","a":{"ok":2,"refused":3},"b":{"ok":1,"refused":0},"mostAtOnce":{"a":2,"b":1},"upstreamRequests":3}
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Agent, request } from 'undici';
// In your project: import { type Gate, type GateTicket, gate, … } from 'breakwater';
import {
  bulkhead,
  type Gate,
  type GateTicket,
  gate,
  pipeline,
  resilient,
  retry,
  timeout,
} from '../src/index.js';

/** The error the gate refuses with; your code can tell it apart from the upstream's answers. */
class TenantBusyError extends Error {
  readonly tenant: string;
  constructor(tenant: string) {
    super(`tenant ${tenant} already has its share of requests in flight`);
    this.name = 'TenantBusyError';
    this.tenant = tenant;
  }
}

/** At most `limit` attempts in flight per tenant; the permit is the tenant, handed back to exit(). */
function perTenantCap(limit: number): Gate<string> {
  const inFlight = new Map<string, number>();
  return {
    enter(ticket: GateTicket) {
      const tenant = ticket.header('x-tenant') ?? 'anonymous';
      const count = inFlight.get(tenant) ?? 0;
      if (count >= limit) return ticket.refuse(new TenantBusyError(tenant));
      inFlight.set(tenant, count + 1);
      ticket.admit(tenant);
    },
    exit(_ticket, tenant) {
      const left = (inFlight.get(tenant) ?? 1) - 1;
      if (left === 0) inFlight.delete(tenant);
      else inFlight.set(tenant, left);
    },
  };
}

let upstreamRequests = 0;
const current = new Map<string, number>();
const mostAtOnce: Record<string, number> = {};
const upstream = createServer((req, res) => {
  upstreamRequests++;
  const tenant = String(req.headers['x-tenant']);
  const now = (current.get(tenant) ?? 0) + 1;
  current.set(tenant, now);
  mostAtOnce[tenant] = Math.max(mostAtOnce[tenant] ?? 0, now);
  setTimeout(() => {
    current.set(tenant, (current.get(tenant) ?? 1) - 1);
    res.end('ok');
  }, 100);
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const { port } = upstream.address() as { port: number };

const dispatcher = resilient(
  new Agent(),
  pipeline([
    timeout(5_000),
    retry(),
    gate(perTenantCap(2)),
    bulkhead({ maxConcurrent: 64, maxQueue: 1024 }),
    timeout(2_000, { until: 'headers' }),
  ]),
);

async function send(tenant: string): Promise<'ok' | 'refused'> {
  try {
    const res = await request(`http://127.0.0.1:${port}/`, { dispatcher, headers: { 'x-tenant': tenant } });
    await res.body.text();
    return 'ok';
  } catch (err) {
    if (err instanceof TenantBusyError) return 'refused';
    throw err;
  }
}

const results = await Promise.all([...Array.from({ length: 5 }, () => send('a')), send('b')]);
const tally = (from: ('ok' | 'refused')[]) => ({
  ok: from.filter((r) => r === 'ok').length,
  refused: from.filter((r) => r === 'refused').length,
});
console.log(
  JSON.stringify({
    example: 'tenant-cap',
    a: tally(results.slice(0, 5)),
    b: tally(results.slice(5)),
    mostAtOnce,
    upstreamRequests,
  }),
);

await dispatcher.close();
upstream.close();
