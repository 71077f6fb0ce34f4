import { util } from 'undici';
import type { Controller, Headers } from './types.js';

/**
 * Stands in for a parsed header object inside the pipeline when undici has only raw headers.
 *
 * On undici 7 the core speaks the legacy handler API and hands over raw header buffers; undici's
 * own `request()` parses them itself. Parsing them for the stages too would cost a full parse per
 * response for nothing: the stages read a header only to honour Retry-After. So the core bridge
 * passes this marker and keeps the raw headers on its controller (as undici's own controllers
 * do), and whoever needs a value resolves it.
 */
export const UNPARSED: Headers = Object.freeze({}) as Headers;

/** The parsed headers, parsing the controller's raw ones if `headers` is the UNPARSED marker. */
export function resolveHeaders(controller: Controller, headers: Headers): Headers {
  return headers === UNPARSED ? parseRaw(controller.rawHeaders) : headers;
}

/** The same for trailers, from the controller's raw trailers. */
export function resolveTrailers(controller: Controller, trailers: Headers): Headers {
  return trailers === UNPARSED ? parseRaw(controller.rawTrailers) : trailers;
}

function parseRaw(raw: Controller['rawHeaders']): Headers {
  return Array.isArray(raw) ? (util.parseHeaders(raw as Buffer[]) as Headers) : {};
}

/**
 * One header's value from the parsed headers, or from the controller's raw ones when `headers` is
 * the UNPARSED marker: found by name without parsing the rest. `name` is lower case; several
 * values are joined with `, `.
 */
export function headerValue(controller: Controller, headers: Headers, name: string): string | undefined {
  if (headers !== UNPARSED) {
    const value = (headers as Record<string, string | string[] | undefined>)[name];
    return Array.isArray(value) ? value.join(', ') : value;
  }
  const raw = controller.rawHeaders;
  if (!Array.isArray(raw)) return undefined;
  let found: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = raw[i] as Buffer | string;
    if (key.length !== name.length || key.toString('latin1').toLowerCase() !== name) continue;
    const value = (raw[i + 1] as Buffer | string).toString('latin1');
    found = found === undefined ? value : `${found}, ${value}`;
  }
  return found;
}
