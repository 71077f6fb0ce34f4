/**
 * `breakwater/redis`: a fleet store on Redis, so that the rate limits and circuit breakers of
 * many processes (cluster workers, pods) hold across all of them. The Redis client (node-redis,
 * the `redis` package) is an optional peer dependency, loaded only by this entry point, and only
 * when the store is asked to open its own connection.
 */

export { type RedisClientLike, RedisStore, type RedisStoreOptions, redisStore } from './store.js';
