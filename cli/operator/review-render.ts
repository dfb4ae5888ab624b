/**
 * A schema review as the review verbs show it: the API's answer with its diff, the table columns
 * of a review list (also under a lineage's page), and the page of one review.
 */
import type { ReviewView } from '../../projections';
import { type Column, fields, table } from '../table';
import { ago } from './common';

/** A review as `GET /schema-reviews/{id}` answers: with its diff and the bindings in force. */
export type ReviewDetail = ReviewView & {
  diff?: {
    against_hash: string | null;
    added: string[];
    removed: string[];
    retyped: { column: string; from: string; to: string }[];
    rekeyed: { column: string; from: number; to: number }[];
  } | null;
  current_bindings?: { column: string; action: string; target: string | null }[];
};

export const reviewCols: Column<ReviewView>[] = [
  { header: 'REVIEW', get: (r) => r.review_id, max: 36 },
  { header: 'LINEAGE', get: (r) => r.lineage_id, max: 36 },
  { header: 'TABLE', get: (r) => r.source_table, max: 24 },
  { header: 'STATUS', get: (r) => r.status },
  { header: 'VERSION', get: (r) => r.action_version, right: true },
  { header: 'CLASS', get: (r) => r.classification },
  { header: 'CLAIMED BY', get: (r) => r.claimed_by, max: 16 },
  { header: 'CREATED', get: (r) => ago(r.created_at) },
];

type SchemaColumn = { name: string; decl_type_affinity?: string; pk_ordinal?: number; not_null?: boolean };
export const schemaColumnsOf = (r: ReviewView): SchemaColumn[] | undefined => {
  const sc = r.schema_columns as { columns?: SchemaColumn[] } | null;
  return Array.isArray(sc?.columns) ? sc.columns : undefined;
};

export function renderReview(r: ReviewDetail): string {
  let out = fields([
    ['review', r.review_id],
    ['lineage', r.lineage_id],
    ['table', r.source_table],
    ['status', r.status],
    ['action_version', r.action_version],
    ['classification', r.classification],
    ['schema hash', r.schema_hash],
    ['claimed by', r.claimed_by],
    ['decided by', r.decided_by],
    ['reason', r.reason],
    ['created', ago(r.created_at)],
  ]);
  const cols = schemaColumnsOf(r);
  out += cols
    ? `\ncolumns\n${table(cols, [
        { header: 'NAME', get: (c) => c.name },
        { header: 'AFFINITY', get: (c) => c.decl_type_affinity },
        { header: 'KEY', get: (c) => (c.pk_ordinal ? c.pk_ordinal : '') },
        { header: 'NOT NULL', get: (c) => (c.not_null ? 'yes' : '') },
      ])}`
    : '\ncolumns: not sent by the device yet (the cloud asked it to re-announce its schema; they come with its next batch)\n';
  const d = r.diff;
  if (d) {
    const changes = [
      ...d.added.map((c) => `+ ${c}`),
      ...d.removed.map((c) => `- ${c}`),
      ...d.retyped.map((c) => `~ ${c.column}: ${c.from} → ${c.to}`),
      ...d.rekeyed.map((c) => `~ ${c.column}: key position ${c.from} → ${c.to}`),
    ];
    out += `\nagainst ${d.against_hash ? `the approved schema ${d.against_hash.slice(0, 12)}` : 'nothing approved yet'}: ${
      changes.length ? `\n${changes.map((c) => `  ${c}`).join('\n')}\n` : 'no column changes\n'
    }`;
  }
  if (r.current_bindings?.length)
    out += `\ncurrent bindings (kept by an approval unless changed)\n${table(r.current_bindings, [
      { header: 'COLUMN', get: (b) => b.column },
      { header: 'ACTION', get: (b) => b.action },
      { header: 'TARGET', get: (b) => b.target },
    ])}`;
  if (r.status === 'queued')
    out += `\nnext: sluice reviews claim ${r.review_id}   (or approve with --claim)\n`;
  if (r.status === 'in_review')
    out += `\nnext: sluice reviews approve ${r.review_id} [--mirror col:name] [--ignore col]   or   sluice reviews reject ${r.review_id} --reason …\n`;
  return out;
}
