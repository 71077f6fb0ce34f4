// node --allow-natives-syntax --import tsx test/bench/spread-maps.ts
//
// Evidence for a cost outside our code (see own-option.ts and docs/benchmarks.md): undici's
// request() builds each request's dispatch options as `{ ...opts, origin, path, method }`. On
// Node 20 (V8 11.3) every object built that way gets a hidden class (map) of its own, so each read
// of a property on it misses V8's inline caches; on Node 24 they share one map. This counts, over
// 20,000 objects built each way, how often the map changes from one object to the next.

// %HaveSameMap is V8 syntax, not TypeScript: reach it through a function built at run time.
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

const caller = { dispatcher: {} };
const shapes: Record<string, (o: object) => object> = {
  'undici request(): { ...opts, origin, path, method }': (o) => ({
    ...o,
    origin: 'http://127.0.0.1:3000',
    path: '/',
    method: 'GET',
  }),
  '{ ...opts }': (o) => ({ ...o }),
  '{ origin, path, method, ...opts }': (o) => ({
    origin: 'http://127.0.0.1:3000',
    path: '/',
    method: 'GET',
    ...o,
  }),
};

console.log(`Node ${process.version}, V8 ${process.versions.v8}`);
for (const [name, build] of Object.entries(shapes)) {
  const objects = Array.from({ length: 20_000 }, () => build(caller));
  let changes = 0;
  for (let i = 1; i < objects.length; i++) if (!haveSameMap(objects[i]!, objects[i - 1]!)) changes++;
  console.log(`${String(changes).padStart(6)} map changes in 20,000 objects built as ${name}`);
}
