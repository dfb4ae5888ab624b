/**
 * `make faults`: every scenario of the long profile over several seeds, a table of how each
 * write ended, and a closing line `faults: N scenarios, lost=0 duplicated=0`. Exit 1 when any
 * write was lost or doubled or any other promise broke (the violations are printed).
 *
 *   tsx tests/faults/run.ts [--seeds N] [--first-seed S] [--profile short|long] [--only a,b] [--summary FILE]
 *
 * `--summary FILE` also writes the table and closing line there (make faults prints the line
 * again after the fuzz suites, so its output ends with it).
 *
 * When anything broke, the output ends with the count and one line per failing scenario and seed,
 * with the command that reruns it: a rare failure is never anonymous.
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { failureLines, finalLine, formatTable, type Failure } from './report';
import { PROFILES, runScenario, SCENARIOS, type ScenarioResult } from './scenarios';

// The harness's PostgreSQL scenario starts its own cluster; nothing else here needs the suite's.
async function main(): Promise<void> {
  const opts = new Command()
    .option('--seeds <n>', 'seeds per scenario', '3')
    .option('--first-seed <n>', 'first seed (then +1 each)', '1')
    .option('--profile <name>', 'short or long', 'long')
    .option('--only <names>', 'comma-separated scenario names')
    .option('--summary <file>', 'also write the table and closing line to this file')
    .parse(process.argv)
    .opts<{ seeds: string; firstSeed: string; profile: string; only?: string; summary?: string }>();
  const profile = PROFILES[opts.profile as keyof typeof PROFILES];
  if (!profile) throw new Error(`unknown profile ${opts.profile}: short or long`);
  const only = opts.only?.split(',').filter(Boolean);
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.name));
  if (scenarios.length === 0)
    throw new Error(`no scenario named ${opts.only}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  const results: ScenarioResult[] = [];
  const failures: Failure[] = [];
  for (const s of scenarios) {
    for (let i = 0; i < Number(opts.seeds); i++) {
      const seed = Number(opts.firstSeed) + i;
      let r: ScenarioResult;
      try {
        r = await runScenario(s, seed, profile);
      } catch (err) {
        const why = (err as Error).message ?? String(err);
        failures.push({
          scenario: s.name,
          seed,
          violations: 0,
          incomplete: why.split('\n')[0]!.slice(0, 300),
        });
        console.log(`${s.name} seed ${seed}: did not complete: ${(err as Error).stack ?? String(err)}`);
        continue;
      }
      results.push(r);
      const v = r.verdict;
      const mids = r.midChecks.filter((m) => m.lost > 0 || m.duplicated > 0);
      console.log(
        `${s.name} seed ${seed}: ${v.writes} writes, applied ${v.applied}, rejected ${v.rejected}, pending ${v.pending}, ` +
          `lost ${v.lost}, duplicated ${v.duplicated} (${Math.round(r.ms / 1000)} s; ${r.notes.join('; ')})`,
      );
      const lines = [...v.violations, ...mids.map((m) => `mid-fault check: ${m.violations.join('; ')}`)];
      for (const line of lines) console.log(`  VIOLATION ${line}`);
      if (lines.length > 0)
        failures.push({ scenario: s.name, seed, violations: lines.length, first: lines[0]!.slice(0, 300) });
    }
  }
  console.log(
    `\nprofile ${profile.name}, seeds ${opts.firstSeed}..${Number(opts.firstSeed) + Number(opts.seeds) - 1}\n`,
  );
  const table = formatTable(results);
  const tail = [finalLine(results), ...failureLines(failures, profile.name)];
  console.log(table);
  // stdout only, so the closing lines are the last ones whatever the terminal interleaves.
  for (const l of tail) console.log(l);
  if (opts.summary) {
    mkdirSync(dirname(opts.summary), { recursive: true });
    writeFileSync(opts.summary, `${table}\n${tail.join('\n')}\n`);
  }
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`faults: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
