import type { DispatchOptions } from './types.js';

// On Node 20, undici's `request()` builds each request's options with `{ ...opts, origin, path,
// method }`, and V8 11.3 gives every object built that way a hidden class of its own. A plain read
// such as `opts.method` therefore misses its inline cache on every request and goes through the
// runtime. `Reflect.get` and `Object.hasOwn` cost far less there, because those two builtins
// search the object's own properties without an inline cache (`npm run bench:option-reads`
// counts all three; docs/benchmarks.md has the figures).
// On Node 24 the options share one hidden class and either way is cheap. Options undici itself
// reads later pay their miss there whatever we do; these helpers only keep ours from adding one.

/** `opts[name]`, read without an inline cache: for an option that is always present (method, origin). */
export function readOption<K extends keyof DispatchOptions>(
  opts: DispatchOptions,
  name: K,
): DispatchOptions[K] {
  return Reflect.get(opts, name) as DispatchOptions[K];
}

/**
 * `opts[name]` if `opts` has it as an own property, else `undefined`: for an option that is
 * usually absent (`upgrade`, and `breakwater`, which only Breakwater reads). undici copies options
 * with spreads, so they are always own properties; an option inherited from a prototype is not seen.
 */
export function ownOption<K extends keyof DispatchOptions>(
  opts: DispatchOptions,
  name: K,
): DispatchOptions[K] | undefined {
  return Object.hasOwn(opts, name) ? opts[name] : undefined;
}
