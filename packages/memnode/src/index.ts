// Public API of @tmem/memnode: embed a memory node, or run one with the `tmem` CLI.
export { createMemnode, type CloseOptions, type Memnode, type MemnodeOptions } from './memnode.ts';
export {
  createPageStore,
  MAX_DEDUP_CAPACITY_BYTES,
  PAGE_META_BYTES,
  type PageStore,
  type PageStoreOptions,
  type PoolSpec,
  type PutResult,
  type StoreStats,
} from './page-store.ts';
export { parseByteSize } from './size.ts';
export { createNodeLogger, silentLogger, type Logger } from './logger.ts';
export {
  fetchClusterStatus,
  formatClusterStatus,
  type ClusterStatus,
  type MemberStatus,
  type FetchClusterStatusOptions,
} from './status.ts';
export type { ClusterMember, ClusterTiming } from './cluster/cluster-member.ts';
export { DEFAULT_EPHEMERAL_HAND_OVER, type EphemeralHandOverOptions } from './cluster/ephemeral-hand-over.ts';
export {
  authenticateClient,
  hashToken,
  issueToken,
  loadTokens,
  parseTokens,
  type ClientTokens,
} from './client-auth.ts';
export { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './connection-limits.ts';
export { DEFAULT_SESSION_GRACE_MS } from './session-liveness.ts';
export { DEFAULT_PEER_LINK_TIMING, type PeerLinkTiming } from './cluster/peer-links.ts';
export { advertisedUrlProblem, checkAdvertisedUrl, type AdvertisedUrlInput } from './advertised-url.ts';
export { loadCaFile, loadNodeTls, type NodeTls, type TlsFiles } from './tls-files.ts';
export {
  loadSharedPoolAccess,
  mayJoinSharedPool,
  parseSharedPoolAccess,
  type SharedPoolAccess,
} from './shared-pool-access.ts';
