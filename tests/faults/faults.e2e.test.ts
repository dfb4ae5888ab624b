/**
 * The fault suite, short profile (one seed per scenario, small loads): every scenario's writes are
 * classified by the checker, and nothing may be lost or taken in twice. `make faults` runs the
 * long profile over more seeds (tests/faults/run.ts). SLUICE_SEED picks the seed,
 * SLUICE_FAULTS=name,name a subset.
 */
import { formatTable } from './report';
import { PROFILES, runScenario, SCENARIOS, type ScenarioResult } from './scenarios';

const seed = Number(process.env.SLUICE_SEED ?? 1);
const only = process.env.SLUICE_FAULTS?.split(',').filter(Boolean);
const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.name));
const results: ScenarioResult[] = [];

describe('faults (short profile)', () => {
  afterAll(() => {
    if (results.length) console.log(formatTable(results));
  });

  it.each(scenarios.map((s) => [s.name, s] as const))(
    '%s: nothing lost, nothing doubled',
    async (_name, scenario) => {
      const r = await runScenario(scenario, seed, PROFILES.short);
      results.push(r);
      console.log(`[faults] ${scenario.name} seed ${seed}: ${r.notes.join('; ')}`);
      const context = `seed ${seed} (rerun: SLUICE_SEED=${seed} SLUICE_FAULTS=${scenario.name}); ${r.notes.join('; ')}`;
      for (const mid of r.midChecks) {
        expect({ context, lost: mid.lost, duplicated: mid.duplicated }).toEqual({
          context,
          lost: 0,
          duplicated: 0,
        });
      }
      expect({ context, violations: r.verdict.violations }).toEqual({ context, violations: [] });
      expect(r.verdict.lost).toBe(0);
      expect(r.verdict.duplicated).toBe(0);
      // The load really ran through the faults and the checker saw its writes.
      expect(r.verdict.writes).toBeGreaterThan(100);
      if (scenario.shows?.rejected) expect(r.verdict.rejected).toBeGreaterThan(0);
      if (scenario.shows?.pendingMidFault) expect(r.midChecks.map((m) => m.pending > 1000)).toEqual([true]);
    },
    240_000,
  );
});
