import { type Column, markdownTable } from '../../cli/table';
import type { StageResult } from './context';

export const n0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
export const ms = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '—');

/** The columns every results table starts with: stage, row size, throughput, latency. */
export function resultColumns(latencyHeader: string): Column<StageResult>[] {
  return [
    { header: 'profile', get: (r) => r.profile },
    { header: 'stage', get: (r) => r.label },
    { header: 'row B', get: (r) => (r.row_bytes ? String(r.row_bytes) : ''), right: true },
    { header: 'rows/s (median)', get: (r) => (r.rows_per_s ? n0(r.rows_per_s.median) : ''), right: true },
    {
      header: 'min–max',
      get: (r) =>
        r.rows_per_s && r.rows_per_s.n > 1 ? `${n0(r.rows_per_s.min)}–${n0(r.rows_per_s.max)}` : '',
      right: true,
    },
    {
      header: latencyHeader,
      get: (r) => (r.latency_ms ? `${ms(r.latency_ms.p50)} / ${ms(r.latency_ms.p99)}` : ''),
      right: true,
    },
  ];
}

/** The results as a plain-text table (also valid Markdown). */
export function renderTable(results: readonly StageResult[]): string {
  return markdownTable(results, [
    ...resultColumns('latency p50 / p99 ms'),
    {
      header: 'peak RSS MB',
      get: (r) =>
        Object.entries(r.rss_mb)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
    },
  ]);
}
