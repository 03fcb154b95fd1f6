import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { beforeEach } from 'vitest';
import { FUZZ, replayHint } from '../helpers/fuzz.js';

// The one place fast-check is configured for the suite (vitest.config.ts setupFiles).
fc.configureGlobal({ seed: FUZZ.seed, numRuns: FUZZ.numRuns });

// fast-check names its seed when a property fails, but not when the test around it times
// out or fails after the property: so each failing test of a file that uses fast-check
// says how to replay it.
const usesFastCheck = new Map<string, boolean>();
function fileUsesFastCheck(path: string | undefined): boolean {
  if (!path) return false;
  let uses = usesFastCheck.get(path);
  if (uses === undefined) {
    try {
      uses = /from 'fast-check'/.test(readFileSync(path, 'utf8'));
    } catch {
      uses = false;
    }
    usesFastCheck.set(path, uses);
  }
  return uses;
}

beforeEach((ctx) => {
  if (!fileUsesFastCheck(ctx.task.file?.filepath)) return;
  ctx.onTestFailed(({ task }) => {
    // On the error itself, so the hint stays next to the failure in every reporter.
    for (const err of task.result?.errors ?? []) err.message = `${err.message}\n${replayHint()}`;
  });
});
