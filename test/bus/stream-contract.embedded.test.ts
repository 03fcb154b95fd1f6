import { createScripting } from '../../src/embedded/lua.js';
import { EmbeddedRedis } from '../../src/embedded/resp-server.js';
import { streamContract } from './stream-contract.js';

// The same contract against the embedded server `detektr run` starts without REDIS_URL.
streamContract('embedded server', async () => {
  const server = new EmbeddedRedis({ scripting: createScripting(), sweepIntervalMs: 100 });
  const url = await server.start();
  return { url, close: () => server.close() };
});
