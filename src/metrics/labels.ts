/*
 * Label values that stay bounded and never leak what a URL may carry (credentials, paths, query
 * strings). The pipeline calls `sanitizeOrigin` once per request, so results are cached.
 */

/** The label value of an origin that cannot be parsed as an http(s) URL. */
export const UNKNOWN_ORIGIN = 'unknown';

/** The label value of a method outside the known set (OpenTelemetry's convention). */
export const OTHER_METHOD = '_OTHER';

const CACHE_LIMIT = 1024;
const MAX_CACHED_KEY = 2048;
// Keyed by the raw string: clients talk to a handful of origins, so the hit rate is ~100% and a
// miss (a URL parse) is paid once per origin. Cleared when full rather than LRU-ordered: a client
// that cycles through more than 1024 origins pays a parse per request, which is still correct.
const originCache = new Map<string, string>();

/**
 * `scheme://host:port` of an http(s) origin: lower-case host, IPv6 in brackets, the port always
 * explicit (80 for http, 443 for https); never credentials, path, query or fragment. Anything else
 * (other schemes, unparsable strings, `undefined`) is `'unknown'`.
 */
export function sanitizeOrigin(origin: string | URL | undefined): string {
  if (typeof origin === 'string') {
    const cached = originCache.get(origin);
    if (cached !== undefined) return cached;
    const label = fromUrl(parse(origin));
    // A pathological key (a megabyte of garbage) is not worth keeping alive.
    if (origin.length <= MAX_CACHED_KEY) {
      if (originCache.size >= CACHE_LIMIT) originCache.clear();
      originCache.set(origin, label);
    }
    return label;
  }
  if (origin instanceof URL) return fromUrl(origin);
  return UNKNOWN_ORIGIN;
}

function parse(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

function fromUrl(url: URL | undefined): string {
  if (url === undefined) return UNKNOWN_ORIGIN;
  const scheme = url.protocol;
  if (scheme !== 'http:' && scheme !== 'https:') return UNKNOWN_ORIGIN;
  // WHATWG URL already lower-cases the host, punycodes IDNs and brackets IPv6 literals; it
  // leaves `port` empty when it is the scheme's default.
  const host = url.hostname;
  if (host === '') return UNKNOWN_ORIGIN;
  const port = url.port === '' ? (scheme === 'http:' ? '80' : '443') : url.port;
  return `${scheme}//${host}:${port}`;
}

/**
 * The method as a bounded label value: a known HTTP method upper-cased, anything else `_OTHER`.
 * Returns the argument itself (no allocation) when it is already a known method in upper case.
 */
export function normalizeMethod(method: string): string {
  const known = knownMethod(method);
  if (known !== undefined) return known;
  if (typeof method !== 'string' || method.length > 7) return OTHER_METHOD;
  return knownMethod(method.toUpperCase()) ?? OTHER_METHOD;
}

function knownMethod(method: string): string | undefined {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'POST':
    case 'PUT':
    case 'DELETE':
    case 'CONNECT':
    case 'OPTIONS':
    case 'TRACE':
    case 'PATCH':
    case 'QUERY':
      return method;
    default:
      return undefined;
  }
}
