// Who may join which shared pool: the node's configuration (`--shared-pools FILE`), checked by the node a
// client asks before it proposes the join. A file of lines `<uuid> <identity>[,<identity>...]`; blank lines and
// `#` comments are skipped, and lines of one UUID add up. Without a file, an open node (no client tokens, where
// any client may claim any identity anyway) lets anyone join any UUID, and an authenticating node lets nobody:
// a shared pool is opened to identities only by naming them.
import { readFileSync } from 'node:fs';
import { MAX_IDENTITY_LENGTH, SharedPoolUuid } from '@tmem/protocol';

/** Shared-pool UUIDs (lowercase) to the identities that may join each. */
export type SharedPoolAccess = ReadonlyMap<string, ReadonlySet<string>>;

/** Parses a shared-pools file; throws RangeError naming the line of the first bad one. */
export function parseSharedPoolAccess(text: string, source = 'shared-pools file'): SharedPoolAccess {
  const access = new Map<string, Set<string>>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const match = /^(\S+)\s+(\S+)$/.exec(line);
    const uuid = match?.[1]?.toLowerCase();
    const identities = match?.[2]?.split(',') ?? [];
    if (
      uuid === undefined ||
      !SharedPoolUuid.safeParse(uuid).success ||
      identities.some((id) => id.length === 0 || id.length > MAX_IDENTITY_LENGTH)
    ) {
      throw new RangeError(
        `${source}, line ${index + 1}: expected "<uuid> <identity>[,<identity>...]" (identities of 1 to ${MAX_IDENTITY_LENGTH} characters, no spaces)`,
      );
    }
    const allowed = access.get(uuid) ?? new Set<string>();
    for (const identity of identities) allowed.add(identity);
    access.set(uuid, allowed);
  });
  return access;
}

/** Reads and parses a shared-pools file (see parseSharedPoolAccess). */
export function loadSharedPoolAccess(path: string): SharedPoolAccess {
  return parseSharedPoolAccess(readFileSync(path, 'utf8'), path);
}

/**
 * True when `identity` may join the shared pool `uuid`: listed for it in `access`; without `access`, anyone on an
 * open node and nobody on a node that authenticates its clients.
 */
export function mayJoinSharedPool(
  access: SharedPoolAccess | undefined,
  openNode: boolean,
  uuid: string,
  identity: string,
): boolean {
  if (access === undefined) return openNode;
  return access.get(uuid)?.has(identity) === true;
}
