import { InvalidInputError } from '../domain/errors.js';
import type { Processor, ProcessorOptions } from './processor.js';
import { createMotionProcessor } from './processors/motion.js';
import { createSampleProcessor } from './processors/sample.js';

const BUILTIN: Record<string, (options: ProcessorOptions) => Processor> = {
  sample: (options) => {
    if (Object.keys(options).length) throw new InvalidInputError(`sample takes no --opt (got ${Object.keys(options).join(', ')})`);
    return createSampleProcessor();
  },
  motion: (options) => createMotionProcessor(options),
};

export const BUILTIN_PROCESSOR_NAMES = Object.keys(BUILTIN);

/** A fresh instance of a built-in processor (each keeps its own state, e.g. motion's previous frames). */
export function createBuiltinProcessor(name: string, options: ProcessorOptions = {}): Processor {
  const make = BUILTIN[name];
  if (!make)
    throw new InvalidInputError(
      `--processor "${name}" is not a built-in processor (built-in: ${BUILTIN_PROCESSOR_NAMES.join(', ')}; use --module for your own)`,
    );
  return make(options);
}

export function builtinProcessor(name: string): Processor {
  return createBuiltinProcessor(name);
}
