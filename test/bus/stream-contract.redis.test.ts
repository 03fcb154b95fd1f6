import { REDIS_URL } from '../helpers/redis.js';
import { streamContract } from './stream-contract.js';

// The contract against a real Redis (>= 7) at REDIS_URL.
streamContract('Redis', async () => ({ url: REDIS_URL, close: async () => {} }));
