// Real network hosts on one Linux machine: a network namespace per host, each with a veth pair into one bridge
// in the root namespace, on a /24 of the test's own. Nodes run inside the namespaces (`ip netns exec`), the
// test and its clients in the root namespace, reaching them through the bridge; iptables inside a namespace
// drops that host's packets, as a firewall or a broken switch port would. Needs root (CI runs as root).
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One host: a namespace with one interface on the bridge. */
export interface NetnsHost {
  /** The namespace name, unique to this run. */
  readonly namespace: string;
  /** Its IPv4 address on the bridge. */
  readonly address: string;
  /** The prefix a node is started through to run in this host (StartNodeOptions.wrapper). */
  readonly wrapper: readonly string[];
  /** Runs `iptables ...args` inside the host. */
  iptables(...args: string[]): Promise<void>;
  /** Removes every iptables rule of the host: its network is whole again. */
  heal(): Promise<void>;
}

/** A set of hosts on one bridge. */
export interface NetnsNetwork {
  readonly hosts: readonly NetnsHost[];
  /** The root namespace's address on the bridge, where the test's clients connect from. */
  readonly rootAddress: string;
  /** Deletes every namespace, veth and the bridge. Idempotent; never throws. */
  close(): Promise<void>;
}

/** Options of createNetnsNetwork. */
export interface NetnsNetworkOptions {
  /** @default 4 */
  hosts?: number;
  /**
   * First three octets of the /24 the hosts live on; the root namespace is .1, host i is .(10 + i).
   * @default '10.77.<random 0..255>', so concurrent runs on one machine rarely collide
   */
  subnet?: string;
}

async function sh(command: string, ...args: string[]): Promise<void> {
  try {
    await run(command, args, { timeout: 20_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || (error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Creates `hosts` namespaces on a new bridge. Names carry a random run tag (interface names stay within
 * Linux's 15 characters). On any failure everything made so far is removed and the error says which command
 * failed.
 */
export async function createNetnsNetwork(options: NetnsNetworkOptions = {}): Promise<NetnsNetwork> {
  const count = options.hosts ?? 4;
  const tag = randomInt(0, 36 ** 5)
    .toString(36)
    .padStart(5, '0');
  const subnet = options.subnet ?? `10.77.${randomInt(0, 256)}`;
  const bridge = `tmb${tag}`;
  const namespaces: string[] = [];
  const veths: string[] = [];
  let closed = false;

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    // The veths first: deleting one end deletes both. A deleted namespace lingers in the kernel while sockets
    // of it wind down, and its veth with it, so leaving them to the namespace would leak interfaces.
    for (const veth of veths) await sh('ip', 'link', 'del', veth).catch(() => undefined);
    for (const namespace of namespaces) await sh('ip', 'netns', 'del', namespace).catch(() => undefined);
    await sh('ip', 'link', 'del', bridge).catch(() => undefined);
  }

  const hosts: NetnsHost[] = [];
  try {
    await sh('ip', 'link', 'add', bridge, 'type', 'bridge');
    await sh('ip', 'addr', 'add', `${subnet}.1/24`, 'dev', bridge);
    await sh('ip', 'link', 'set', bridge, 'up');
    for (let i = 0; i < count; i++) {
      const namespace = `tmem-${tag}-h${i}`;
      const outside = `tmv${tag}h${i}`;
      const address = `${subnet}.${10 + i}`;
      await sh('ip', 'netns', 'add', namespace);
      namespaces.push(namespace);
      await sh('ip', 'link', 'add', outside, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace);
      veths.push(outside);
      await sh('ip', 'link', 'set', outside, 'master', bridge);
      await sh('ip', 'link', 'set', outside, 'up');
      const inside = ['netns', 'exec', namespace];
      await sh('ip', ...inside, 'ip', 'link', 'set', 'lo', 'up');
      await sh('ip', ...inside, 'ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      await sh('ip', ...inside, 'ip', 'link', 'set', 'eth0', 'up');
      hosts.push({
        namespace,
        address,
        wrapper: ['ip', ...inside],
        iptables: (...args) => sh('ip', ...inside, 'iptables', ...args),
        async heal() {
          await sh('ip', ...inside, 'iptables', '-F', 'INPUT');
          await sh('ip', ...inside, 'iptables', '-F', 'OUTPUT');
        },
      });
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { hosts, rootAddress: `${subnet}.1`, close };
}
