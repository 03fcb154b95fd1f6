import { InvalidInputError } from '../domain/errors.js';
import type { Processor } from './processor.js';
import { sampleProcessor } from './processors/sample.js';

const BUILTIN: Record<string, Processor> = { sample: sampleProcessor };

export const BUILTIN_PROCESSOR_NAMES = Object.keys(BUILTIN);

export function builtinProcessor(name: string): Processor {
  const p = BUILTIN[name];
  if (!p) throw new InvalidInputError(`--processor "${name}" is not a built-in processor (built-in: ${BUILTIN_PROCESSOR_NAMES.join(', ')}; use --module for your own)`);
  return p;
}
