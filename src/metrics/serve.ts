// `serveMetrics()` and `metricsHandler()`: a registry's metrics over HTTP, on 127.0.0.1 unless
// told otherwise.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidOptionError } from '../errors.js';
import { integer, knownKeys, optionalObject } from '../internal/validate.js';
import type { MetricsRegistry } from './prometheus.js';

export interface MetricsHandlerOptions {
  /**
   * The path the metrics are served on; any other path is a 404.
   * @default '/metrics'
   */
  path?: string;
}

export interface ServeMetricsOptions extends MetricsHandlerOptions {
  /** The registry to expose (the one given to `prometheusMetrics()`). */
  registry: MetricsRegistry;
  /**
   * The port to listen on; `0` picks a free one (read it from `MetricsServer.port`).
   * @default 9464 (OpenTelemetry's Prometheus exporter port)
   */
  port?: number;
  /**
   * The address to bind. Loopback by default, so the metrics are not exposed to the network
   * unless asked for (`'0.0.0.0'` or `'::'`).
   * @default '127.0.0.1'
   */
  host?: string;
}

export interface MetricsServer {
  /** Where the metrics are served, e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  /** The port actually bound (useful with `port: 0`). */
  readonly port: number;
  readonly server: Server;
  /** Stops listening and closes every connection, idle keep-alive ones included. */
  close(): Promise<void>;
}

const DEFAULT_PATH = '/metrics';
const DEFAULT_PORT = 9464;
const DEFAULT_HOST = '127.0.0.1';

/**
 * A `node:http` request listener that serves `registry` on `path`: GET and HEAD get the
 * exposition in the registry's format (Prometheus text or OpenMetrics), another method 405, another
 * path 404. Mount it in a server of your own, or use `serveMetrics()`.
 */
export function metricsHandler(
  registry: MetricsRegistry,
  options?: MetricsHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  checkRegistry('metricsHandler.registry', registry);
  const o = optionalObject('metricsHandler', options);
  knownKeys('metricsHandler', o, ['path']);
  const path = checkPath('metricsHandler.path', o?.path);

  return function serveMetricsRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    if ((query === -1 ? url : url.slice(0, query)) !== path) {
      reply(res, 404, 'Not Found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      reply(res, 405, 'Method Not Allowed\n');
      return;
    }
    registry.metrics().then(
      (body) => {
        res.statusCode = 200;
        res.setHeader('Content-Type', registry.contentType);
        res.setHeader('Content-Length', Buffer.byteLength(body));
        res.setHeader('Cache-Control', 'no-store');
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      // A collect function threw: say so without handing its message to whoever scrapes.
      () => reply(res, 500, 'Internal Server Error\n'),
    );
  };
}

/**
 * Serves `registry` over HTTP on `host:port` + `path` (127.0.0.1:9464/metrics by default) and
 * resolves once the server listens.
 */
export async function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const o = optionalObject('serveMetrics', options);
  if (o === undefined) throw new InvalidOptionError('serveMetrics', 'an object with a registry', options);
  knownKeys('serveMetrics', o, ['registry', 'port', 'host', 'path']);
  const registry = checkRegistry('serveMetrics.registry', o.registry);
  const port = integer('serveMetrics.port', o.port, 0, DEFAULT_PORT);
  if (port > 65535) throw new InvalidOptionError('serveMetrics.port', 'an integer between 0 and 65535', port);
  const host = o.host ?? DEFAULT_HOST;
  if (typeof host !== 'string' || host === '') {
    throw new InvalidOptionError('serveMetrics.host', 'a host name or IP address', host);
  }
  const path = checkPath('serveMetrics.path', o.path);

  const server = createServer(metricsHandler(registry, { path }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${bound}${path}`,
    port: bound,
    server,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // close() only stops accepting; keep-alive sockets would hold the process open.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function reply(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

function checkRegistry(path: string, value: unknown): MetricsRegistry {
  const r = value as { metrics?: unknown; contentType?: unknown } | null | undefined;
  if (
    typeof r !== 'object' ||
    r === null ||
    typeof r.metrics !== 'function' ||
    typeof r.contentType !== 'string'
  ) {
    throw new InvalidOptionError(path, 'a prom-client Registry', value);
  }
  return value as MetricsRegistry;
}

function checkPath(path: string, value: unknown): string {
  if (value === undefined) return DEFAULT_PATH;
  if (typeof value !== 'string' || !value.startsWith('/') || /[?#\s]/.test(value)) {
    throw new InvalidOptionError(path, "a URL path starting with '/'", value);
  }
  return value;
}
