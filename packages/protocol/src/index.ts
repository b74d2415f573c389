// Public API of @tmem/protocol: frames, codec, errors, handles and hashing shared by nodes and clients.
export * from './constants.ts';
export * from './errors.ts';
export * from './frames.ts';
export * from './codec.ts';
export * from './msgpack-budget.ts';
export * from './handle.ts';
export * from './cluster-state.ts';
export * from './shared-pools.ts';
export * from './partition-table.ts';
export * from './checksum.ts';
export * from './peer-auth.ts';
export * from './liveness.ts';
export * from './tls-errors.ts';
export * from './frame-buffers.ts';
