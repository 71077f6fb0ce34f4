/**
 * The upstream's fault profiles, and the seeded script that decides what happens to each request.
 * Pure logic: no sockets here, so the same seed always yields the same sequence of decisions.
 */

export const PROFILE_NAMES = ['flaky', 'outage', 'slow', 'rate-limited', 'healthy'] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

export interface FaultProfile {
  name: ProfileName;
  /** One line for the output. */
  description: string;
  /** Service time of an ordinary response, in ms (uniform between the two). */
  latency: readonly [number, number];
  /** Share of requests answered 503 with `Retry-After: 1`, before any work is done. */
  unavailable: number;
  /** Share of requests whose connection is reset after the work was done (the response is lost). */
  reset: number;
  /** Share of requests that take `slowLatency` ms instead. */
  slow: number;
  slowLatency: readonly [number, number];
  /**
   * A full outage: from the upstream request numbered `atShare` × the expected number of
   * requests, for `ms` milliseconds (Infinity: until the end), every request is answered 503
   * with Retry-After or has its connection reset, and nothing is executed.
   */
  outage?: { atShare: number; ms: number };
  /** A fixed-window rate limit: beyond `perSecond` requests in a second, 429 with Retry-After. */
  rateLimit?: { perSecond: number };
}

const QUICK: readonly [number, number] = [5, 35];

export const PROFILES: Readonly<Record<ProfileName, FaultProfile>> = {
  flaky: {
    name: 'flaky',
    description: '6% 503 + Retry-After, 5% connection resets, 3% slow (1.5-3 s), a 0.8 s full outage mid-run',
    latency: QUICK,
    unavailable: 0.06,
    reset: 0.05,
    slow: 0.03,
    slowLatency: [1_500, 3_000],
    outage: { atShare: 0.45, ms: 800 },
  },
  outage: {
    name: 'outage',
    description: 'down for the whole run: every request 503 + Retry-After or a connection reset',
    latency: QUICK,
    unavailable: 0,
    reset: 0,
    slow: 0,
    slowLatency: [0, 0],
    outage: { atShare: 0, ms: Number.POSITIVE_INFINITY },
  },
  slow: {
    name: 'slow',
    description: 'service time 20-100 ms, 6% of responses take 1.2-3 s',
    latency: [20, 100],
    unavailable: 0,
    reset: 0,
    slow: 0.06,
    slowLatency: [1_200, 3_000],
  },
  'rate-limited': {
    name: 'rate-limited',
    description: 'at most 150 requests per second; beyond that 429 + Retry-After until the next second',
    latency: QUICK,
    unavailable: 0,
    reset: 0,
    slow: 0,
    slowLatency: [0, 0],
    rateLimit: { perSecond: 150 },
  },
  healthy: {
    name: 'healthy',
    description: 'no faults: service time 5-35 ms',
    latency: QUICK,
    unavailable: 0,
    reset: 0,
    slow: 0,
    slowLatency: [0, 0],
  },
};

export function isProfileName(value: string): value is ProfileName {
  return (PROFILE_NAMES as readonly string[]).includes(value);
}

/**
 * Mulberry32: a tiny seeded 32-bit PRNG. Returns numbers in [0, 1); the same seed yields the
 * same sequence.
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

/** What the upstream does with one request, decided before it reads the request. */
export type Fault =
  | { kind: 'ok'; ms: number }
  | { kind: 'slow'; ms: number }
  | { kind: 'unavailable'; retryAfter: number }
  | { kind: 'reset-after-work'; ms: number };

/** During an outage: answered at once by the load balancer, or the connection drops. */
export type OutageFault = { kind: 'unavailable'; retryAfter: number } | { kind: 'reset-before-work' };

/**
 * The fault sequence for one seed. Every request draws the same number of random numbers, so
 * request number n gets the same decision in every run with that seed, whatever came before.
 */
export class FaultScript {
  readonly #profile: FaultProfile;
  readonly #random: () => number;

  constructor(profile: FaultProfile, seed: number) {
    this.#profile = profile;
    this.#random = mulberry32(seed);
  }

  /** The decision for the next request (the n-th call is request number n). */
  next(): { fault: Fault; outage: OutageFault } {
    const p = this.#profile;
    const roll = this.#random();
    const time = this.#random();
    const outageRoll = this.#random();
    const outage: OutageFault =
      outageRoll < 0.75 ? { kind: 'unavailable', retryAfter: 1 } : { kind: 'reset-before-work' };
    let fault: Fault;
    if (roll < p.unavailable) fault = { kind: 'unavailable', retryAfter: 1 };
    else if (roll < p.unavailable + p.reset)
      fault = { kind: 'reset-after-work', ms: between(p.latency, time) };
    else if (roll < p.unavailable + p.reset + p.slow)
      fault = { kind: 'slow', ms: between(p.slowLatency, time) };
    else fault = { kind: 'ok', ms: between(p.latency, time) };
    return { fault, outage };
  }
}

function between([min, max]: readonly [number, number], r: number): number {
  return Math.round(min + (max - min) * r);
}
