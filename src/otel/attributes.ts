/*
 * Attributes as OpenTelemetry's HTTP client semantic conventions name them, built from what the
 * pipeline reports: an origin label (scheme://host:port), a method, a status code, an error. No
 * path, query, credentials or header value ever becomes an attribute.
 */
import type { Attributes } from '@opentelemetry/api';
import { normalizeMethod, OTHER_METHOD } from '../metrics/labels.js';

/** `server.address` and `server.port` of an origin label; empty for `other` and `unknown`. */
export function serverAttributes(origin: string): Attributes {
  const m = /^https?:\/\/(.+):(\d+)$/.exec(origin);
  if (m === null) return {};
  // The convention writes an IPv6 address without its brackets.
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { 'server.address': host, 'server.port': Number(m[2]) };
}

/** `http.request.method`, and `http.request.method_original` when the method is not a known one. */
export function methodAttributes(method: string, into: Attributes): Attributes {
  const known = normalizeMethod(method);
  into['http.request.method'] = known;
  if (known === OTHER_METHOD && typeof method === 'string') into['http.request.method_original'] = method;
  return into;
}

/**
 * `error.type`: the error's stable `code` (`ECONNREFUSED`, `UND_ERR_SOCKET`, `BREAKWATER_TIMEOUT`,
 * …), `_OTHER` for an error without one, or the status code of a 4xx/5xx answer, as the
 * convention asks. Undefined for a success.
 */
export function errorType(
  statusCode: number | undefined,
  error: Error | null | undefined,
): string | undefined {
  if (error !== null && error !== undefined) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && code !== '' ? code : '_OTHER';
  }
  if (statusCode !== undefined && statusCode >= 400) return String(statusCode);
  return undefined;
}
