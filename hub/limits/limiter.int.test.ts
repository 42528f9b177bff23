import { randomUUID } from 'node:crypto';
import { runLimiterConformance } from './conformance.ts';
import { createMemoryLimiter } from './memoryLimiter.ts';
import { createRedisLimiter } from './redisLimiter.ts';
import { createLogger } from '../log.ts';

runLimiterConformance('memory', () => createMemoryLimiter());
runLimiterConformance('redis', async () => {
  const lim = createRedisLimiter(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', createLogger('silent'), `orghub-test:${randomUUID().slice(0, 8)}:`);
  await lim.ready();
  return lim;
});
