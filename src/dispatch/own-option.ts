import type { DispatchOptions } from './types.js';

/**
 * `opts[name]` if `opts` has it as an own property, else `undefined`: for an option that is
 * usually absent and that only Breakwater reads (`breakwater`).
 *
 * On Node 20, undici's `request()` builds each request's options with `{ ...opts, origin, path,
 * method }`, and V8 gives every object built that way a map of its own. A plain read such as
 * `opts.upgrade` therefore misses V8's inline caches on every request (about 1,000–1,400
 * instructions under callgrind). `Object.hasOwn` searches the object's own
 * properties without a cache, so an absent option costs far less. (Options undici itself reads
 * later, such as `upgrade` or `body`, gain nothing: its read then misses instead of ours.) undici
 * copies options with spreads, so they are always own properties; an option inherited from a
 * prototype is not seen.
 */
export function ownOption<K extends keyof DispatchOptions>(
  opts: DispatchOptions,
  name: K,
): DispatchOptions[K] | undefined {
  return Object.hasOwn(opts, name) ? opts[name] : undefined;
}
