import type { StageResult } from './context';

const n0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const ms = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '—');

/** The results as a plain-text table (also valid Markdown). */
export function renderTable(results: readonly StageResult[]): string {
  const head = [
    'profile',
    'stage',
    'row B',
    'rows/s (median)',
    'min–max',
    'latency p50 / p99 ms',
    'peak RSS MB',
  ];
  const rows = results.map((r) => [
    r.profile,
    r.label,
    r.row_bytes ? String(r.row_bytes) : '',
    r.rows_per_s ? n0(r.rows_per_s.median) : '',
    r.rows_per_s && r.rows_per_s.n > 1 ? `${n0(r.rows_per_s.min)}–${n0(r.rows_per_s.max)}` : '',
    r.latency_ms ? `${ms(r.latency_ms.p50)} / ${ms(r.latency_ms.p99)}` : '',
    Object.entries(r.rss_mb)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const right = new Set([2, 3, 4, 5]);
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (right.has(i) ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join(' | ')} |`;
  const rule = `|${width.map((w, i) => (right.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(head), rule, ...rows.map(line)].join('\n');
}
