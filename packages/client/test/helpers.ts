import { connect, type ConnectOptions, type Pool, type TmemClient } from '../src/index.ts';
import { startFakeNode, type FakeNode, type FakeNodeOptions } from './fake-node.ts';
import { track } from './support.ts';

/** Page size of the pools the tests create. */
export const PAGE_SIZE = 512;

/** A page of PAGE_SIZE bytes, all `fill`. */
export function page(fill: number, size = PAGE_SIZE): Uint8Array {
  return new Uint8Array(size).fill(fill);
}

/** A fake node, a client connected to it and an ephemeral pool; all closed by closeAll(). */
export async function setup(
  connectOptions: Partial<ConnectOptions> = {},
  fakeOptions: FakeNodeOptions = {},
): Promise<{ fake: FakeNode; client: TmemClient; pool: Pool }> {
  const fake = track(await startFakeNode(fakeOptions));
  const client = track(await connect({ seeds: [fake.url], ...connectOptions }));
  const pool = await client.createPool({ kind: 'ephemeral', pageSize: PAGE_SIZE });
  return { fake, client, pool };
}
