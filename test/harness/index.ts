// Shared test harness: real node processes and clusters, raw protocol peers and condition polling.
export * from './cluster.ts';
export * from './fault-proxy.ts';
export * from './node-process.ts';
export * from './proxied-cluster.ts';
export * from './raw-peer.ts';
export * from './wait-for.ts';
export * from './run-cli.ts';
export * from './dead-url.ts';
export * from './test-certificates.ts';
