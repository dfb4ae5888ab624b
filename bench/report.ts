/**
 * Markdown of a benchmark run's JSON, for docs/performance.md:
 *   node --import ./node_modules/tsx/dist/loader.mjs bench/report.ts .data/bench/latest.json
 * The results table (without memory), then peak RSS and CPU seconds per process of the stages
 * that run the whole system, and where rows queued there.
 */
import { readFileSync } from 'node:fs';
import { markdownTable } from '../cli/table';
import type { StageResult } from './lib/context';
import { resultColumns } from './lib/table';

type Run = {
  started_at: string;
  elapsed_s: number;
  machine: { cpus: number; model?: string; loadavg_end: number[]; node: string };
  ratios: Record<string, number>;
  results: StageResult[];
  failures: { stage: string; profile: string; error: string }[];
};

export function report(run: Run): string {
  const out: string[] = [];
  out.push(
    `Run of ${run.started_at}, ${run.elapsed_s} s, ${run.machine.cpus} × ${run.machine.model ?? 'CPU'}, Node ${run.machine.node}, ` +
      `load average at the end ${run.machine.loadavg_end.map((x) => x.toFixed(1)).join(' / ')}.`,
    '',
  );
  out.push(
    markdownTable(run.results, [
      ...resultColumns('p50 / p99 ms'),
      { header: 'latency of', get: (r) => r.latency_of ?? '' },
    ]),
    '',
  );
  out.push(
    `Ratios at ${run.ratios.row_bytes} B: ` +
      Object.entries(run.ratios)
        .filter(([k]) => k !== 'row_bytes')
        .map(([k, v]) => `${k} **${v}**`)
        .join(', '),
    '',
  );
  const whole = run.results.filter((r) => r.group === 'full' || r.group === 'drain');
  if (whole.length) {
    const procs = [...new Set(whole.flatMap((r) => Object.keys(r.rss_mb)))];
    out.push('Peak RSS (MB) / CPU seconds per process, whole-system stages (all runs of the stage):', '');
    out.push(
      markdownTable(whole, [
        { header: 'profile', get: (r) => r.profile },
        { header: 'stage', get: (r) => r.label },
        { header: 'row B', get: (r) => String(r.row_bytes ?? '') },
        ...procs.map((p) => ({
          header: p,
          get: (r: StageResult) => `${r.rss_mb[p] ?? ''} / ${r.cpu_s?.[p] ?? ''}`,
        })),
      ]),
      '',
    );
    out.push('Where rows queued (mean over the stage, sampled every 100 ms):', '');
    for (const r of whole.filter((x) => x.backlog))
      out.push(
        `- ${r.profile}, ${r.label}${r.row_bytes ? `, ${r.row_bytes} B` : ''}: ${JSON.stringify((r.backlog as { mean: unknown }).mean)}`,
      );
    out.push('');
  }
  if (run.failures.length)
    out.push(
      `Failed stages: ${run.failures.map((f) => `${f.stage} (${f.profile}): ${f.error.slice(0, 200)}`).join('; ')}`,
      '',
    );
  return out.join('\n');
}

if (require.main === module) {
  console.log(report(JSON.parse(readFileSync(process.argv[2] ?? '.data/bench/latest.json', 'utf8')) as Run));
}
