// Public API of @tmem/client: connect to a tmem cluster, create pools, copy pages in and out.
export { connect } from './client.ts';
export type { CloseOptions, CreatePoolOptions, TmemClient } from './client.ts';
export type { ClientEvents, ClusterMember, ClusterView } from './cluster-view.ts';
export type { ConnectOptions, Logger } from './options.ts';
export type { CaCertificates, ClientTlsOptions } from './tls-options.ts';
export type { PageData, PageEntry, PageHandle, Pool } from './pool.ts';
export type { SeedFailure } from './seeds.ts';
export {
  BadPageSizeError,
  ChecksumError,
  ClusterChangedError,
  ConnectionLostError,
  DataLostError,
  DEFAULT_PAGE_SIZE,
  ErrorCode,
  MAX_OID_BYTES,
  MAX_PAGE_SIZE,
  MIN_PAGE_SIZE,
  ProtocolError,
  TimeoutError,
  TmemError,
  UnauthorizedError,
  UnknownPoolError,
  COMPRESSIONS,
  isValidPageSize,
} from '@tmem/protocol';
export type { Compression, NodeStats, ObjectId, PoolKind, TmemErrorOptions } from '@tmem/protocol';
export { createPrecache } from './precache.ts';
export type { Precache, PrecacheOptions, PrecacheStats } from './precache.ts';
export { createPreswap } from './preswap.ts';
export type { Preswap, PreswapOptions, PreswapStats, SlotPlace } from './preswap.ts';
