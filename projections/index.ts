/** The read side's public API: store, migrations, projector, queries. */
export { openReadStore, type ReadStore, type ReadStoreConfig } from './store/open';
export { migrate, MIGRATIONS } from './store/migrations';
export type { ReadStoreDB } from './store/schema';
export type { SqlDialect } from './store/dialect';
export { quoteIdent, mirrorTableName, telemetryTableName } from './store/identifiers';
export * from './store/page';
// lineages and reviews are named: their row mappers, shared with getLineage, are not public.
export * from './store/queries/ledgers';
export * from './store/queries/lineage-detail';
export {
  listLineages,
  lineageExists,
  type LineageSummary,
  type ListLineagesQuery,
} from './store/queries/lineages';
export * from './store/queries/mirror-rows';
export { listReviews, getReview, type ReviewView, type ListReviewsQuery } from './store/queries/reviews';
export * from './store/queries/staged-rows';
export * from './store/queries/verify';
export {
  startProjector,
  type Projector,
  type ProjectorOptions,
  type CaughtUpTarget,
} from './runner/projector';
export type { Progress, ProjectionStatus } from './runner/worker';
export type {
  CommandSender,
  MaterializationFailure,
  Projection,
  Log,
  VerifyOutcomeReport,
} from './runner/types';
export { createProjections, PROJECTION_NAMES } from './registry';
export { checkpointNames, projectionOfCheckpoint } from './runner/checkpoints';
export * from './store/registry-queries';
export * from './telemetry/queries';
