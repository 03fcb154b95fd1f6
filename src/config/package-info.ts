import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DetektrError } from '../domain/errors.js';

/**
 * The installed package's root (the directory of its package.json), found from this module
 * whether it runs from src/ (tests, tsx) or dist/src/ (the CLI, an installed tarball).
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DetektrError(`cannot find the package root (package.json) above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** The version in package.json: the one `detektr --version` prints. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new DetektrError(`package.json in ${packageRoot()} has no version`);
  return pkg.version;
}
