import { describe, expect, it } from 'vitest';
import { mayJoinSharedPool, parseSharedPoolAccess } from '../src/shared-pool-access.ts';

const A = '0f8fad5b-d9cb-469f-a165-70867728950e';
const B = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

describe('shared-pool access', () => {
  it('reads uuid lines with identity lists, merging lines of one UUID, lowercasing UUIDs', () => {
    const access = parseSharedPoolAccess(
      `# who shares what\n\n${A.toUpperCase()} alice,bob\n${A} carol\n  ${B}   bob  \n`,
    );
    expect([...(access.get(A) ?? [])].sort()).toEqual(['alice', 'bob', 'carol']);
    expect([...(access.get(B) ?? [])]).toEqual(['bob']);
    expect(mayJoinSharedPool(access, false, A, 'alice')).toBe(true);
    expect(mayJoinSharedPool(access, false, B, 'alice')).toBe(false);
    // A file rules an open node too: only the identities it names.
    expect(mayJoinSharedPool(access, true, B, 'alice')).toBe(false);
    expect(mayJoinSharedPool(access, true, '00000000-0000-0000-0000-000000000000', 'alice')).toBe(false);
  });

  it('without a file: anyone on an open node, nobody on an authenticating one', () => {
    expect(mayJoinSharedPool(undefined, true, A, 'anyone')).toBe(true);
    expect(mayJoinSharedPool(undefined, false, A, 'anyone')).toBe(false);
  });

  it('refuses bad lines, naming the line', () => {
    for (const bad of [
      `not-a-uuid alice`,
      `${A}`,
      `${A} alice bob`,
      `${A} alice,,bob`,
      `${A} ${'x'.repeat(129)}`,
    ]) {
      expect(() => parseSharedPoolAccess(`# ok\n${bad}\n`, 'f')).toThrow(/f, line 2/);
    }
  });
});
