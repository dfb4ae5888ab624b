/**
 * The review workflow both deciders share (a lineage's own schema review and a registry entry's):
 * every action names the action_version it saw (compare-and-set), and each action needs the
 * review in one status (claim: queued; approve and reject: in_review; reopen: rejected).
 */
import { DomainError } from './errors';

type Review = Readonly<{ review_id: string; status: string; action_version: number }>;

/** `review` for a lineage's own review, `registry review` for a registry entry's. */
export type ReviewNoun = 'review' | 'registry review';

export function findReview<R extends Review>(
  reviews: readonly R[],
  reviewId: string,
  actionVersion: number,
  noun: ReviewNoun,
): R {
  const review = reviews.find((r) => r.review_id === reviewId);
  if (!review) throw new DomainError('review_not_found', `${noun} ${reviewId} not found`);
  if (review.action_version !== actionVersion) {
    throw new DomainError(
      'stale_action_version',
      `action_version ${actionVersion} is stale; the ${noun} is at ${review.action_version}`,
      { current_action_version: review.action_version, status: review.status },
    );
  }
  return review;
}

/** The review must be in `status`; otherwise `<noun> is <status>; <what>`. */
export function requireStatus(review: Review, status: string, what: string, noun: ReviewNoun): void {
  if (review.status !== status) {
    throw new DomainError('illegal_transition', `${noun} is ${review.status}; ${what}`, {
      status: review.status,
    });
  }
}
