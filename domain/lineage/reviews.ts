/**
 * A lineage's own schema review (SPEC §4): claim, approve with column actions, reject with a
 * reason, reopen. An approval binds the columns and settles the gates like a registry approval.
 */
import type { Policy } from '../policy/policy';
import { findReview, requireStatus } from '../shared/reviews';
import { DomainError } from '../shared/errors';
import { bindSchema } from './bindings';
import { requireLineage } from './common';
import type { ColumnAction, ColumnBinding, LineageEvent } from './events';
import { settleApproval } from './governance';
import type { ActiveLineage, LineageState } from './state';

type ReviewRef = { review_id: string; action_version: number };

export type ApproveReviewData = ReviewRef & {
  column_actions?: readonly ColumnAction[];
  replay_id: string;
  policy?: Policy;
};

/** The bindings an approval of `hash` gives: unbound columns (an adopted additive change) are new again. */
export function bindColumns(
  s: ActiveLineage,
  hash: string,
  actions: readonly ColumnAction[] = [],
): ColumnBinding[] {
  const unbound = new Set(s.unbound_columns);
  return bindSchema(
    s.schemas[hash] ?? null,
    actions,
    s.bindings.filter((b) => !unbound.has(b.column)),
  );
}

export function decideClaim(state: LineageState, d: ReviewRef): LineageEvent[] {
  const s = requireLineage(state);
  const review = findReview(s.reviews, d.review_id, d.action_version, 'review');
  requireStatus(review, 'queued', 'only a queued review can be claimed', 'review');
  return [
    {
      type: 'SchemaReviewClaimed',
      data: { review_id: review.review_id, action_version: review.action_version + 1 },
    },
  ];
}

export function decideApprove(state: LineageState, d: ApproveReviewData): LineageEvent[] {
  const s = requireLineage(state);
  const review = findReview(s.reviews, d.review_id, d.action_version, 'review');
  requireStatus(review, 'in_review', 'claim it before approving', 'review');
  if (!s.schemas[review.schema_hash]) {
    const resync = s.kind === 'rows' ? s.schema_resync : null;
    throw new DomainError(
      'schema_columns_missing',
      resync
        ? `the device has not sent the columns of this schema yet; the cloud asked it for them (resync ${resync}). ` +
            'Nothing was approved; approve once `sluice reviews show` lists the columns.'
        : 'the device has not sent the columns of this schema yet; nothing was approved. Its next batch makes the cloud ask for them.',
      { schema_hash: review.schema_hash, ...(resync ? { resync_id: resync } : {}) },
    );
  }
  const bindings = bindColumns(s, review.schema_hash, d.column_actions);
  const events: LineageEvent[] = [];
  settleApproval(
    s,
    events,
    {
      type: 'SchemaReviewApproved',
      data: {
        review_id: review.review_id,
        schema_hash: review.schema_hash,
        action_version: review.action_version + 1,
        bindings,
      },
    },
    d.replay_id,
  );
  return events;
}

export function decideReject(state: LineageState, d: ReviewRef & { reason: string }): LineageEvent[] {
  const s = requireLineage(state);
  if (d.reason.trim() === '') {
    throw new DomainError(
      'reason_required',
      'a rejection needs a reason (it is kept with the review for whoever reopens it); nothing was changed',
    );
  }
  const review = findReview(s.reviews, d.review_id, d.action_version, 'review');
  requireStatus(review, 'in_review', 'claim it before rejecting', 'review');
  return [
    {
      type: 'SchemaReviewRejected',
      data: { review_id: review.review_id, action_version: review.action_version + 1, reason: d.reason },
    },
  ];
}

export function decideReopen(state: LineageState, d: ReviewRef): LineageEvent[] {
  const s = requireLineage(state);
  const review = findReview(s.reviews, d.review_id, d.action_version, 'review');
  requireStatus(review, 'rejected', 'only a rejected review can be reopened', 'review');
  return [
    {
      type: 'SchemaReviewReopened',
      data: { review_id: review.review_id, action_version: review.action_version + 1 },
    },
  ];
}
