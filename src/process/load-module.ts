import { InvalidInputError } from '../domain/errors.js';
import type { Processor } from './processor.js';

/** Loads a user processor module and checks it has the documented shape. */
export async function loadProcessorModule(url: string, shownAs: string): Promise<Processor> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidInputError(`--module ${shownAs}: cannot be loaded (${(err as Error).message})`, { cause: err });
  }
  const p = (mod.default ?? mod.processor) as Partial<Processor> | undefined;
  const problems: string[] = [];
  if (!p || typeof p !== 'object') problems.push('export a processor object as default or as `processor`');
  else {
    if (typeof p.name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(p.name)) problems.push('`name` must be 1-64 characters of letters, digits, _ . -');
    if (!Array.isArray(p.capabilities) || !p.capabilities.length || !p.capabilities.every((c) => typeof c === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(c))) problems.push('`capabilities` must be a non-empty array of names');
    if (typeof p.process !== 'function') problems.push('`process(frame, ctx)` must be a function');
  }
  if (problems.length) throw new InvalidInputError(`--module ${shownAs}: ${problems.join('; ')}`);
  return p as Processor;
}
