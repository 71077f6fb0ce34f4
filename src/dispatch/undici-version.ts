import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const version: string = require('undici/package.json').version;

/** The major version of the undici this package runs with (its peer dependency). */
export const UNDICI_MAJOR = Number.parseInt(version, 10);

/**
 * undici 7's dispatchers still run the legacy handler API (onConnect, onHeaders, …) and convert a
 * current-API handler at the door; undici 8 runs the current API natively and has no legacy one.
 */
export const CORE_SPEAKS_LEGACY = UNDICI_MAJOR < 8;
