import { markdownTable } from '../../cli/table';
import type { ScenarioResult } from './scenarios';

export type Row = Readonly<{
  scenario: string;
  seeds: number;
  writes: number;
  applied: number;
  rejected: number;
  pending: number;
  lost: number;
  duplicated: number;
}>;

/** One row per scenario, summed over its seeds. */
export function summarize(results: readonly ScenarioResult[]): Row[] {
  const rows = new Map<string, Row>();
  for (const r of results) {
    const prev = rows.get(r.scenario);
    const v = r.verdict;
    rows.set(r.scenario, {
      scenario: r.scenario,
      seeds: (prev?.seeds ?? 0) + 1,
      writes: (prev?.writes ?? 0) + v.writes,
      applied: (prev?.applied ?? 0) + v.applied,
      rejected: (prev?.rejected ?? 0) + v.rejected,
      pending: (prev?.pending ?? 0) + v.pending,
      lost: (prev?.lost ?? 0) + v.lost,
      duplicated: (prev?.duplicated ?? 0) + v.duplicated,
    });
  }
  return [...rows.values()];
}

const COLUMNS = [
  'scenario',
  'seeds',
  'writes',
  'applied',
  'rejected',
  'pending',
  'lost',
  'duplicated',
] as const;

export function formatTable(results: readonly ScenarioResult[]): string {
  return markdownTable(
    summarize(results),
    COLUMNS.map((c) => ({ header: c, get: (r: Row) => r[c], right: c !== 'scenario' })),
  );
}

export function finalLine(results: readonly ScenarioResult[]): string {
  const rows = summarize(results);
  const lost = rows.reduce((n, r) => n + r.lost, 0);
  const duplicated = rows.reduce((n, r) => n + r.duplicated, 0);
  return `faults: ${rows.length} scenarios, lost=${lost} duplicated=${duplicated}`;
}

/** A scenario run that broke a promise (`violations` > 0) or did not complete (`incomplete`). */
export type Failure = Readonly<{
  scenario: string;
  seed: number;
  violations: number;
  first?: string;
  incomplete?: string;
}>;

/**
 * The closing lines when anything broke: the count, then each failing scenario and seed with
 * its first violation (or why it did not complete) and the command that reruns exactly it.
 */
export function failureLines(failures: readonly Failure[], profile: string): string[] {
  if (failures.length === 0) return [];
  const violations = failures.reduce((n, f) => n + f.violations, 0);
  const incomplete = failures.filter((f) => f.incomplete !== undefined).length;
  return [
    `faults: ${violations} violation(s) and ${incomplete} incomplete run(s) in ${failures.length} failing run(s):`,
    ...failures.map(
      (f) =>
        `  FAILED ${f.scenario} seed ${f.seed}: ${
          f.incomplete !== undefined
            ? `did not complete: ${f.incomplete}`
            : `${f.violations} violation(s): ${f.first}`
        } (rerun: npx tsx tests/faults/run.ts --profile ${profile} --only ${f.scenario} --first-seed ${f.seed} --seeds 1)`,
    ),
  ];
}
