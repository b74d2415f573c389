// How a failure test reads: one scenario run (real processes, a workload, one fault, heal, final reads) and the
// contract checked on its history, one test per pool kind, so a report says which promise broke.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeAllFaultProxies, closeAllRawPeers, killAllNodes } from '../harness/index.ts';
import {
  describeAnomalies,
  runScenario,
  type FaultInjector,
  type ScenarioOptions,
  type ScenarioResult,
} from './scenario.ts';

/** Budget of one scenario: cluster start, warm-up, the fault, heal and final reads, on a loaded two-core box. */
const SCENARIO_TIMEOUT_MS = 90_000;

/**
 * Declares a failure test: `inject` runs while the workload does; afterwards every link is healed, the cluster
 * converges, every key is read twice, and the history is checked against the contract.
 */
export function describeFailure(title: string, inject: FaultInjector, options: ScenarioOptions = {}): void {
  describe(title, () => {
    let result: ScenarioResult | undefined;

    // The scenario runs once for both tests, so it lives in beforeAll; it kills its own processes when it
    // returns or throws, and afterAll makes sure nothing outlives a failure halfway through.
    beforeAll(async () => {
      result = await runScenario(inject, options);
    }, SCENARIO_TIMEOUT_MS);

    afterAll(async () => {
      closeAllRawPeers();
      await killAllNodes();
      await closeAllFaultProxies();
    });

    it('ephemeral pool: gets return the last put or a miss, never an older or flushed page; converged after heal', () => {
      expect(result?.history.length).toBeGreaterThan(0);
      expect(describeAnomalies(result?.anomalies.ephemeral ?? [])).toBe('no anomaly');
    });

    it(`persistent pool (R=${options.replication ?? 2}): no accepted put lost, no stale read, DATA_LOST only past R failures; converged after heal`, () => {
      expect(result?.history.length).toBeGreaterThan(0);
      expect(describeAnomalies(result?.anomalies.persistent ?? [])).toBe('no anomaly');
    });
  });
}
