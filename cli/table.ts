/**
 * Tables as text, for every table this repository prints: the CLI's plain aligned tables, and the
 * Markdown tables of benchmark and fault reports. Columns are described once (`Column`), for both.
 */

/** One cell as text: null as "-", objects as compact JSON. */
export function cell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.length ? v.join(',') : '-';
  return JSON.stringify(v);
}

export type Column<T> = Readonly<{
  header: string;
  get: (row: T) => unknown;
  /** Longer cells are cut with "…" (default 48 in plain tables; Markdown cuts only when set). */
  max?: number;
  right?: boolean;
}>;

const clip = (s: string, max: number) => {
  const one = s.replace(/\s+/g, ' ');
  return one.length <= max ? one : `${one.slice(0, Math.max(1, max - 1))}…`;
};

/** Column widths for these rows (at least the header). */
export function widths<T>(rows: readonly T[], cols: readonly Column<T>[]): number[] {
  return cols.map((c) =>
    Math.max(c.header.length, ...rows.map((r) => clip(cell(c.get(r)), c.max ?? 48).length)),
  );
}

export function tableHeader<T>(cols: readonly Column<T>[], w: readonly number[]): string {
  return `${cols
    .map((c, i) => (c.right ? c.header.padStart(w[i]!) : c.header.padEnd(w[i]!)))
    .join('  ')
    .trimEnd()}\n`;
}

export function tableRows<T>(rows: readonly T[], cols: readonly Column<T>[], w: readonly number[]): string {
  return rows
    .map(
      (r) =>
        `${cols
          .map((c, i) => {
            const text = clip(cell(c.get(r)), w[i]!);
            return c.right ? text.padStart(w[i]!) : text.padEnd(w[i]!);
          })
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** A plain aligned table, no borders, easy to grep and to paste ids from. */
export function table<T>(rows: readonly T[], cols: readonly Column<T>[]): string {
  const w = widths(rows, cols);
  return tableHeader(cols, w) + tableRows(rows, cols, w);
}

/** `label  value` lines for one object. */
export function fields(pairs: readonly (readonly [string, unknown])[]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${cell(v)}\n`).join('');
}

/**
 * A Markdown table, its columns padded so the text reads as a table too. Cells are cut only where
 * a column sets `max`; right-aligned columns are marked so in the rule line.
 */
export function markdownTable<T>(rows: readonly T[], cols: readonly Column<T>[]): string {
  const cells = rows.map((r) => cols.map((c) => (c.max ? clip(cell(c.get(r)), c.max) : cell(c.get(r)))));
  const w = cols.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (texts: readonly string[]) =>
    `| ${texts.map((t, i) => (cols[i]!.right ? t.padStart(w[i]!) : t.padEnd(w[i]!))).join(' | ')} |`;
  const rule = `|${w.map((n, i) => (cols[i]!.right ? `${'-'.repeat(n + 1)}:` : '-'.repeat(n + 2))).join('|')}|`;
  return [line(cols.map((c) => c.header)), rule, ...cells.map(line)].join('\n');
}
