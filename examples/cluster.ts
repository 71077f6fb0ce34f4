// A Node cluster that Prometheus scrapes once for all its workers. The primary forks two workers;
// each runs requests through Breakwater to a local upstream, with its metrics in a Registry of its
// own; the primary serves the sum over the workers, through prom-client's AggregatorRegistry.
//
//   npx tsx examples/cluster.ts             # serves http://127.0.0.1:9465/metrics until Ctrl-C
//   npx tsx examples/cluster.ts --once      # prints one aggregated scrape on stdout and exits
//
//   --port <n>      port of the aggregated /metrics (default 9465; 0 picks a free one)
//   --workers <n>   workers to fork (default 2)
//   --requests <n>  requests each worker sends (default 20)
//
// How prom-client aggregates (node_modules/prom-client/lib/cluster.js, prom-client 15):
//
// - In the primary, `aggregator.clusterMetrics()` sends every connected worker the IPC message
//   `prom-client:getMetricsReq`, waits (up to 5 s) for each worker's `getMetricsAsJSON()`, and
//   sums them per metric name and label set (`AggregatorRegistry.aggregate`; a metric's
//   `aggregator` option, `sum` by default, decides).
// - In a worker, what answers is a listener that the AggregatorRegistry *constructor* installs —
//   importing prom-client does not — and it reports the registries given to
//   `AggregatorRegistry.setRegistries()`, which are `[register]`, the global registry, unless told
//   otherwise. Breakwater never uses the global registry, so each worker does both:
//
//     AggregatorRegistry.setRegistries([registry]);  // report this registry, not the global one
//     new AggregatorRegistry();                      // install the listener that answers the primary
//
//   Forget the first and the scrape holds the workers' (empty) global registries; forget the second
//   and no worker answers: clusterMetrics() rejects with "Operation timed out." after 5 s.
//
// What a sum over workers means: counters and histograms add up as they should; queue depth and
// in-flight become totals over the processes; `breakwater_circuit_state{state="open"}` becomes the
// number of workers whose circuit is open (alert on `> 0`, not `== 1`). Every worker must use the
// same prefix and buckets, or their series do not add up.
import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { AggregatorRegistry, Registry } from 'prom-client';
import { Agent, request } from 'undici';
// In your project: import { prometheusMetrics, resilient, standardPipeline } from 'breakwater';
import { prometheusMetrics, resilient, standardPipeline } from '../src/index.js';

/** What a worker tells the primary once its requests are done. */
interface WorkerDone {
  type: 'breakwater-example:done';
  requests: number;
  statuses: Record<string, number>;
  /** breakwater_requests_total summed, as the worker's own registry reports it. */
  ownCount: number;
}

function isDone(message: unknown): message is WorkerDone {
  return (message as { type?: unknown } | null)?.type === 'breakwater-example:done';
}

if (cluster.isPrimary) {
  process.exitCode = await primary();
} else {
  await worker();
}

async function primary(): Promise<number> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '9465' },
      workers: { type: 'string', default: '2' },
      requests: { type: 'string', default: '20' },
      once: { type: 'boolean', default: false },
    },
  });
  const port = integer('port', values.port, 0, 65_535);
  const workerCount = integer('workers', values.workers, 1, 64);
  const requests = integer('requests', values.requests, 0, 1_000_000);
  if (port === undefined || workerCount === undefined || requests === undefined) return 2;

  // The upstream the workers call: one origin for all, so their series share labels and add up.
  let upstreamRequests = 0;
  const upstream = createServer((_req, res) => {
    upstreamRequests++;
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const upstreamOrigin = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;

  // One scrape for the whole cluster.
  const aggregator = new AggregatorRegistry();
  const metricsServer = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end('Not Found\n');
    if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end('Method Not Allowed\n');
    aggregator.clusterMetrics().then(
      (body) => res.writeHead(200, { 'content-type': aggregator.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  metricsServer.listen(port, '127.0.0.1');
  await once(metricsServer, 'listening');
  const metricsUrl = `http://127.0.0.1:${(metricsServer.address() as { port: number }).port}/metrics`;

  const workers: Worker[] = [];
  const done: Array<Promise<WorkerDone>> = [];
  for (let i = 0; i < workerCount; i++) {
    const w = cluster.fork({ BREAKWATER_UPSTREAM: upstreamOrigin, BREAKWATER_REQUESTS: String(requests) });
    workers.push(w);
    done.push(
      new Promise((resolve, reject) => {
        w.on('message', (message: unknown) => {
          if (isDone(message)) resolve(message);
        });
        w.once('exit', (code) => reject(new Error(`worker ${w.id} exited early (code ${code})`)));
      }),
    );
  }

  const shutdown = async (): Promise<void> => {
    // A disconnected worker has nothing left to keep it alive (its Agent is closed) and exits.
    await Promise.all(
      workers.map(async (w) => {
        if (w.isDead()) return;
        const exited = once(w, 'exit');
        w.disconnect();
        await exited;
      }),
    );
    metricsServer.closeAllConnections();
    upstream.closeAllConnections();
    await Promise.all([
      new Promise((resolve) => metricsServer.close(resolve)),
      new Promise((resolve) => upstream.close(resolve)),
    ]);
  };

  try {
    const reports = await withDeadline(Promise.all(done), 30_000, 'workers did not finish');
    reports.forEach((r, i) => {
      const w = workers[i]!;
      process.stderr.write(
        `worker ${w.id} (pid ${w.process.pid}): ${r.requests} requests, statuses ${JSON.stringify(r.statuses)}, ` +
          `its own registry counts ${r.ownCount}\n`,
      );
    });
    process.stderr.write(`upstream received ${upstreamRequests} requests\n`);

    if (values.once) {
      // Scrape ourselves once, over HTTP like Prometheus would, print it and stop.
      const client = new Agent();
      try {
        const res = await request(metricsUrl, { dispatcher: client });
        const body = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`GET ${metricsUrl}: ${res.statusCode} ${body}`);
        process.stdout.write(body);
      } finally {
        await client.close();
      }
      return 0;
    }

    process.stderr.write(`aggregated metrics of ${workerCount} workers on ${metricsUrl} (Ctrl-C to stop)\n`);
    await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
    return 0;
  } catch (err) {
    process.stderr.write(`cluster example: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await shutdown();
  }
}

async function worker(): Promise<void> {
  const origin = process.env.BREAKWATER_UPSTREAM!;
  const requests = Number(process.env.BREAKWATER_REQUESTS);

  const registry = new Registry();
  AggregatorRegistry.setRegistries([registry]);
  new AggregatorRegistry();

  const metrics = prometheusMetrics({ registry });
  const dispatcher = resilient(new Agent(), standardPipeline({ metrics }));
  const statuses: Record<string, number> = {};
  for (let i = 0; i < requests; i++) {
    const res = await request(`${origin}/work/${cluster.worker?.id}/${i}`, { dispatcher });
    await res.body.text();
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
  }
  // Close the Agent: afterwards only the IPC channel keeps this worker alive, so it exits as soon
  // as the primary disconnects it. The metrics stay in the registry for the primary's scrapes.
  await dispatcher.close();

  const json = await registry.getSingleMetric('breakwater_requests_total')?.get();
  const ownCount = (json?.values ?? []).reduce((sum, v) => sum + v.value, 0);
  const message: WorkerDone = { type: 'breakwater-example:done', requests, statuses, ownCount };
  process.send?.(message);
}

function integer(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  const value = Number(raw);
  if (/^\d+$/.test(raw ?? '') && value >= min && value <= max) return value;
  process.stderr.write(`cluster example: --${name} must be an integer from ${min} to ${max}; got '${raw}'\n`);
  return undefined;
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
