// Shared test harness: real node processes, raw protocol peers and condition polling.
export * from './node-process.ts';
export * from './raw-peer.ts';
export * from './wait-for.ts';
