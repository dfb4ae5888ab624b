import type { WireValue } from './types';

/** "4 s ago", "3 min ago", "2 h ago", "5 d ago"; the exact time goes into a title. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export const time = (iso: string | null | undefined): string =>
  iso
    ? new Date(iso)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '—';

export const count = (n: number | null | undefined): string => (n ?? 0).toLocaleString('en-US');

export const short = (id: string | null | undefined, n = 8): string => (id ? id.slice(0, n) : '—');

/** A wire value as text: `{$int}` and `{$real}` as their digits, a BLOB as its size. */
export function wire(v: WireValue | undefined): string {
  if (v === undefined || v === null) return 'NULL';
  if (typeof v !== 'object') return String(v);
  if ('$int' in v) return v.$int ?? '';
  if ('$real' in v) return v.$real ?? '';
  if ('$blob' in v) return `BLOB (${Math.floor(((v.$blob ?? '').length * 3) / 4)} bytes)`;
  return JSON.stringify(v);
}
