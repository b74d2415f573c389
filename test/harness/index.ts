// Shared test harness: real node processes, fault injection and condition polling.
export * from './node-process.ts';
export * from './wait-for.ts';
