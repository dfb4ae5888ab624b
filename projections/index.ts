/** The read side's public API: store, migrations, projector, queries. */
export { openReadStore, type ReadStore, type ReadStoreConfig } from './store/open';
export { migrate, MIGRATIONS } from './store/migrations';
export type { ReadStoreDB } from './store/schema';
export type { SqlDialect } from './store/dialect';
export { quoteIdent, mirrorTableName, telemetryTableName } from './store/identifiers';
export * from './store/page';
export * from './store/queries';
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
