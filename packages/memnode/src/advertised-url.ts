// The URL a node advertises is the one every peer and client dials: it goes into the cluster state as is. A
// wildcard bind address (0.0.0.0, ::) is no address anyone can dial, and a loopback one is reachable only from
// this host: a node that advertised either to a cluster on other hosts printed its listening line and never
// joined (the coordinator's dials back failed). Refuse such a start with a message that says what to pass.
import { isIP } from 'node:net';
import { ErrorCode, TmemError } from '@tmem/protocol';

/** What the check needs: how the node listens, what it advertises, whom it joins. */
export interface AdvertisedUrlInput {
  /** The listening host (`--host`). */
  host: string;
  /** `--advertise-url`, if given. */
  advertiseUrl?: string | undefined;
  /** `--join` seeds. */
  join?: readonly string[] | undefined;
  /** Whether the node serves TLS (`--tls-cert`): then every URL it advertises or dials is wss://. */
  tls?: boolean | undefined;
}

/** The scheme of a WebSocket URL with its colon (`ws:`, `wss:`), or undefined when it is no URL. */
function schemeOf(url: string): string | undefined {
  try {
    return new URL(url).protocol;
  } catch {
    return undefined;
  }
}

/**
 * A cluster is all-TLS or not: a TLS node advertises and joins through wss:// only, a plain one ws:// only.
 * Mixing them would start a node whose peers cannot dial it back (or would dial it in the clear).
 */
function schemeProblem(input: AdvertisedUrlInput): string | undefined {
  const scheme = input.tls === true ? 'wss:' : 'ws:';
  const because =
    input.tls === true
      ? 'this node serves TLS (--tls-cert), so every node of its cluster must'
      : 'this node does not serve TLS, so no node of its cluster may; pass --tls-cert and --tls-key to serve it';
  if (input.advertiseUrl !== undefined && schemeOf(input.advertiseUrl) !== scheme) {
    return `--advertise-url ${input.advertiseUrl} must be a ${scheme}// URL: ${because}`;
  }
  const mismatched = (input.join ?? []).find((seed) => schemeOf(seed) !== scheme);
  if (mismatched !== undefined) return `--join ${mismatched} must be a ${scheme}// URL: ${because}`;
  return undefined;
}

/** The host of a ws:// URL, without IPv6 brackets; undefined when it is no URL. */
function hostOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '0:0:0:0:0:0:0:0';
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * Why peers could not reach this node at the address it would advertise, or undefined when nothing is wrong.
 * The message is one line and names `--advertise-url` (and `--host`), the flags that fix it.
 */
export function advertisedUrlProblem(input: AdvertisedUrlInput): string | undefined {
  const advertisedHost = input.advertiseUrl === undefined ? input.host : hostOf(input.advertiseUrl);
  const source =
    input.advertiseUrl === undefined ? `--host ${input.host}` : `--advertise-url ${input.advertiseUrl}`;
  const scheme = input.tls === true ? 'wss' : 'ws';
  if (advertisedHost === undefined) return `${source} is not a ${scheme}:// URL`;
  const mixed = schemeProblem(input);
  if (mixed !== undefined) return mixed;
  if (isWildcard(advertisedHost)) {
    return (
      `${source} would advertise the wildcard address ${advertisedHost}, which no peer or client can dial; ` +
      `pass --advertise-url ${scheme}://<this host address>:<port> (or --host <this host address>)`
    );
  }
  if (!isLoopback(advertisedHost)) return undefined;
  const remoteSeed = (input.join ?? []).find((seed) => {
    const host = hostOf(seed);
    return host !== undefined && !isLoopback(host);
  });
  if (remoteSeed === undefined) return undefined;
  return (
    `${source} would advertise the loopback address ${advertisedHost} to a cluster joined through ${remoteSeed}, ` +
    `whose nodes cannot dial it back; pass --host <this host address> or --advertise-url ${scheme}://<this host address>:<port>`
  );
}

/** Throws BAD_ARGUMENT with advertisedUrlProblem's message when there is one. */
export function checkAdvertisedUrl(input: AdvertisedUrlInput): void {
  const problem = advertisedUrlProblem(input);
  if (problem !== undefined) {
    throw new TmemError(ErrorCode.BadArgument, problem, {
      details: { host: input.host, advertiseUrl: input.advertiseUrl, tls: input.tls === true },
    });
  }
}
