import type { Verdict } from './checker';
import { failureLines, finalLine, formatTable, summarize } from './report';
import type { ScenarioResult } from './scenarios';

const verdict = (v: Partial<Verdict>): Verdict => ({
  writes: 10,
  applied: 10,
  rejected: 0,
  pending: 0,
  lost: 0,
  duplicated: 0,
  violations: [],
  ...v,
});
const result = (scenario: string, seed: number, v: Partial<Verdict>): ScenarioResult => ({
  scenario,
  seed,
  verdict: verdict(v),
  midChecks: [],
  transactions: 1,
  ms: 1,
  notes: [],
});

describe('fault report', () => {
  it('sums each scenario over its seeds and says so in the closing line', () => {
    const rs = [
      result('a', 1, {}),
      result('a', 2, { writes: 5, applied: 4, lost: 1 }),
      result('b', 1, { duplicated: 2 }),
    ];
    expect(summarize(rs)).toEqual([
      { scenario: 'a', seeds: 2, writes: 15, applied: 14, rejected: 0, pending: 0, lost: 1, duplicated: 0 },
      { scenario: 'b', seeds: 1, writes: 10, applied: 10, rejected: 0, pending: 0, lost: 0, duplicated: 2 },
    ]);
    expect(finalLine(rs)).toBe('faults: 2 scenarios, lost=1 duplicated=2');
    const table = formatTable(rs).split('\n');
    expect(table[0]).toMatch(
      /^\| scenario \| seeds \| writes \| applied \| rejected \| pending \| lost \| duplicated \|$/,
    );
    expect(table).toHaveLength(4);
    expect(table[2]).toMatch(/^\| a +\| +2 \| +15 \| +14 \| +0 \| +0 \| +1 \| +0 \|$/);
  });

  it('ends with every failing scenario and seed, and how to rerun it', () => {
    expect(failureLines([], 'long')).toEqual([]);
    const lines = failureLines(
      [
        { scenario: 'kill-9-roles', seed: 2, violations: 1, first: 'stock: 1 write(s) lost' },
        { scenario: 'nats-kill', seed: 3, violations: 0, incomplete: 'timed out after 30000 ms' },
      ],
      'long',
    );
    expect(lines).toEqual([
      'faults: 1 violation(s) and 1 incomplete run(s) in 2 failing run(s):',
      '  FAILED kill-9-roles seed 2: 1 violation(s): stock: 1 write(s) lost (rerun: npx tsx tests/faults/run.ts --profile long --only kill-9-roles --first-seed 2 --seeds 1)',
      '  FAILED nats-kill seed 3: did not complete: timed out after 30000 ms (rerun: npx tsx tests/faults/run.ts --profile long --only nats-kill --first-seed 3 --seeds 1)',
    ]);
  });
});
