import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createScripting } from '../../src/embedded/lua.js';
import { EmbeddedRedis } from '../../src/embedded/resp-server.js';

const README = new URL('../../src/embedded/README.md', import.meta.url);

/** The command names listed between the frozen-commands markers of src/embedded/README.md. */
function frozenList(): string[] {
  const text = readFileSync(README, 'utf8');
  const block = /<!-- frozen-commands:start -->([\s\S]*?)<!-- frozen-commands:end -->/.exec(text)?.[1];
  if (!block) throw new Error('src/embedded/README.md has no frozen-commands block');
  return [...block.matchAll(/`([a-z]+)`/g)].map((m) => m[1]).sort();
}

describe('the embedded server answers exactly the frozen command set of its README', () => {
  it('no command added or removed without the README (and the contract and differential tests it names)', () => {
    const listed = frozenList();
    expect(new Set(listed).size, 'a command listed twice').toBe(listed.length);
    expect(new EmbeddedRedis({ scripting: createScripting() }).commandNames()).toEqual(listed);
  });
});
