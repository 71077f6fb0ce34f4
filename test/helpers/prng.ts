/**
 * Mulberry32: a tiny, fast, seeded 32-bit PRNG. Good enough to make fault scripts and property
 * tests reproducible; not for anything cryptographic.
 *
 * @param seed - any integer; only its low 32 bits are used.
 * @returns a function that yields the next number in `[0, 1)` on every call. Two generators
 * built from the same seed yield the same sequence.
 */
export function mulberry32(seed: number): () => number {
  let state = seed | 0;
  return function next(): number {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
