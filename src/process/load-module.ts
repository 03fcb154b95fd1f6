import { basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidInputError } from '../domain/errors.js';
import type { Processor } from './processor.js';

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Loads a user processor module and checks it has the documented shape: a processor object
 * as `default` or `processor`, or `process` (with `capabilities`, optional `name`,
 * `needsImage`, `setup`, `teardown`) exported at the top level. `capabilities` given here
 * (--capability) declare or override the module's own.
 */
export async function loadProcessorModule(url: string, shownAs: string, capabilities?: string[]): Promise<Processor> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidInputError(`--module ${shownAs}: cannot be loaded (${(err as Error).message})`, { cause: err });
  }
  const exported = (mod.default ?? mod.processor) as Partial<Processor> | undefined;
  const candidate: Partial<Processor> | undefined =
    exported && typeof exported === 'object' && typeof exported.process === 'function'
      ? exported
      : typeof mod.process === 'function'
        ? (mod as Partial<Processor>)
        : exported;
  const problems: string[] = [];
  if (!candidate || typeof candidate !== 'object') {
    problems.push('export a processor object as default or as `processor`, or export `process(frame, ctx)`');
  } else {
    const p = candidate;
    const fallbackName = url.startsWith('file:')
      ? basename(fileURLToPath(url), extname(fileURLToPath(url)))
          .replace(/[^A-Za-z0-9_.-]/g, '_')
          .slice(0, 64)
      : 'module';
    const name = p.name ?? fallbackName;
    if (typeof name !== 'string' || !NAME_RE.test(name)) problems.push('`name` must be 1-64 characters of letters, digits, _ . -');
    const caps = capabilities?.length ? capabilities : p.capabilities;
    if (!Array.isArray(caps) || !caps.length || !caps.every((c) => typeof c === 'string' && NAME_RE.test(c))) {
      problems.push('`capabilities` must be a non-empty array of names (or give --capability)');
    }
    if (typeof p.process !== 'function') problems.push('`process(frame, ctx)` must be a function');
    for (const hook of ['setup', 'teardown'] as const)
      if (p[hook] !== undefined && typeof p[hook] !== 'function') problems.push(`\`${hook}\` must be a function when given`);
    if (p.needsImage !== undefined && typeof p.needsImage !== 'boolean') problems.push('`needsImage` must be true or false');
    if (p.usesThumbnail !== undefined && typeof p.usesThumbnail !== 'boolean') problems.push('`usesThumbnail` must be true or false');
    if (!problems.length) {
      const bound = <K extends 'setup' | 'process' | 'teardown'>(k: K) =>
        typeof p[k] === 'function' ? (p[k] as (...a: unknown[]) => unknown).bind(p) : undefined;
      return {
        name: name as string,
        capabilities: [...new Set(caps as string[])],
        needsImage: p.needsImage ?? false,
        usesThumbnail: p.usesThumbnail ?? false,
        setup: bound('setup') as Processor['setup'],
        process: bound('process') as Processor['process'],
        teardown: bound('teardown') as Processor['teardown'],
      };
    }
  }
  throw new InvalidInputError(`--module ${shownAs}: ${problems.join('; ')}`);
}
