/**
 * How fast the command-line tools start: wall time from spawn to exit of `bin/sluice --help`,
 * `bin/sluice --version`, `bin/sluice lineages ls --json` (a real request to a real API over
 * HTTP, on a read store seeded with 20 lineages) and `bin/sluice-agent --help`, each run RUNS
 * times one after the other; prints median, p90 and max, and `node -e 0` as the floor.
 *
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/cli-start.ts [--runs N] [--out FILE]
 *
 * The goal (docs/performance.md): a median of 300 ms or less for `--help` and `lineages ls`.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../api/app';
import { READ, TokenBook } from '../api/auth/tokens';
import { createMetrics } from '../infra/metrics';
import { migrate, openReadStore } from '../projections';
import { tempDir } from '../tests/support/proc';
import type { CommandService } from '../worker/commands';
import { percentiles } from './lib/stats';
import { BENCH_PROJECT as PROJECT, seed } from './stages/api';

const ROOT = join(__dirname, '..');
const TOKEN = 'bench-cli-token-0123456789abcdef';

function arg(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Spawn to exit, in ms. Asynchronous: the API under test answers from this same process. */
function time(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(0, 500)}`));
    });
  });
}

async function main(): Promise<void> {
  const runs = Number(arg('--runs') ?? 21);
  // A real API on a real read store, seeded through the projections' own tables.
  const store = openReadStore({ kind: 'sqlite', path: join(tempDir('bench-cli'), 'read.db') });
  await migrate(store);
  await seed(store, 'sqlite', 20, 0);
  const app = await buildApp({
    store,
    // Read routes only: no command is sent and no event is read.
    commands: undefined as unknown as CommandService,
    events: { readCommits: async () => [] },
    metrics: createMetrics(),
    tokens: new TokenBook([{ token: TOKEN, project_id: PROJECT, permissions: [READ] }]),
  });
  const api = await app.listen({ host: '127.0.0.1', port: 0 });
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SLUICE_API_URL: api,
    SLUICE_TOKEN: TOKEN,
    SLUICE_PROJECT_ID: PROJECT,
  };
  const sluice = join(ROOT, 'bin', 'sluice');
  const cases: [string, string, string[]][] = [
    ['node -e 0 (floor)', process.execPath, ['-e', '0']],
    ['sluice --help', sluice, ['--help']],
    ['sluice --version', sluice, ['--version']],
    ['sluice lineages ls --json', sluice, ['lineages', 'ls', '--json']],
    [
      'curl, the same request',
      'curl',
      [
        '-sf',
        '-o',
        '/dev/null',
        '-H',
        `authorization: Bearer ${TOKEN}`,
        `${api}/core/api/v1/projects/${PROJECT}/edge/lineages`,
      ],
    ],
    ['sluice-agent --help', join(ROOT, 'bin', 'sluice-agent'), ['--help']],
  ];
  for (const [, cmd, args] of cases) await time(cmd, args, env); // warm the page cache once
  const results = [];
  for (const [name, cmd, args] of cases) {
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) ms.push(await time(cmd, args, env));
    const p = percentiles(ms);
    results.push({ name, runs, median_ms: p.p50, p90_ms: p.p90, max_ms: p.max });
  }
  await app.close();
  await store.close();
  const load = loadavg()[0]!.toFixed(2);
  console.log(`CLI start-to-exit, ${runs} runs each (load average ${load}):`);
  for (const r of results)
    console.log(
      `  ${r.name.padEnd(28)} median ${r.median_ms.toFixed(0).padStart(4)} ms   p90 ${r.p90_ms
        .toFixed(0)
        .padStart(4)} ms   max ${r.max_ms.toFixed(0).padStart(4)} ms`,
    );
  const out = arg('--out');
  if (out) writeFileSync(out, `${JSON.stringify({ load_average: Number(load), results }, null, 2)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
