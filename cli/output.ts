/** Where the CLI writes: stdout for answers, stderr for errors and progress. */
export type Io = Readonly<{
  out: (text: string) => Promise<void>;
  err: (text: string) => void;
  /** A stream for a progress bar, when stderr is a terminal (never in tests or pipes). */
  progress?: NodeJS.WritableStream;
}>;

export function processIo(): Io {
  return {
    // Respect backpressure: `rows staged --all --json` can print a lot.
    out: (text) =>
      process.stdout.write(text)
        ? Promise.resolve()
        : new Promise((resolve) => process.stdout.once('drain', () => resolve())),
    err: (text) => {
      process.stderr.write(text);
    },
    ...(process.stderr.isTTY ? { progress: process.stderr } : {}),
  };
}

export const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

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
  /** Longer cells are cut with "…" (default 48). */
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
