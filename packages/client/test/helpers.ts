import { connect, type ConnectOptions, type Pool, type TmemClient } from '../src/index.ts';
import {
  startFakeCluster,
  startFakeNode,
  type FakeCluster,
  type FakeNode,
  type FakeNodeOptions,
} from './fake-node.ts';
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

/**
 * A cluster of `size` fake nodes sharing one state (ids n1, n2, ...), a client that knows only n1 as its seed,
 * and an ephemeral pool; all closed by closeAll().
 */
export async function setupCluster(
  size: number,
  connectOptions: Partial<ConnectOptions> = {},
  fakeOptions: Omit<FakeNodeOptions, 'nodeId' | 'cluster'> = {},
): Promise<{ cluster: FakeCluster; nodes: FakeNode[]; client: TmemClient; pool: Pool }> {
  const { cluster, nodes } = await startFakeCluster(size, fakeOptions);
  for (const node of nodes) track(node);
  const first = nodes[0] as FakeNode;
  const client = track(await connect({ seeds: [first.url], ...connectOptions }));
  const pool = await client.createPool({ kind: 'ephemeral', pageSize: PAGE_SIZE });
  return { cluster, nodes, client, pool };
}

/** The fake node with id `id`. */
export function nodeById(nodes: readonly FakeNode[], id: string | undefined): FakeNode {
  const node = nodes.find((n) => n.nodeId === id);
  if (node === undefined) throw new Error(`no fake node ${String(id)}`);
  return node;
}
