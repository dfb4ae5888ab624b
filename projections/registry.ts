import { cloudRowsProjection } from './cloud_rows/projection';
import { controlsProjection } from './controls/projection';
import { lineagesProjection } from './lineages/projection';
import { mirrorProjection } from './mirror/projection';
import { rejectionsProjection } from './rejections/projection';
import { registryProjection } from './schema_registry/projection';
import type { AnyProjection, CommandSender, Log } from './runner/types';
import { segmentsProjection } from './segments/projection';
import { stagedRowsProjection } from './staged_rows/projection';
import { telemetryProjection } from './telemetry/projection';

/** Every projection Sluice runs, in no particular order: each one is independent. */
export function createProjections(deps: { commands?: CommandSender; log?: Log } = {}): AnyProjection[] {
  return [
    lineagesProjection(),
    stagedRowsProjection(),
    segmentsProjection(),
    controlsProjection(),
    rejectionsProjection(),
    mirrorProjection(deps),
    telemetryProjection(deps),
    registryProjection(),
    cloudRowsProjection(),
  ];
}

export const PROJECTION_NAMES = [
  'lineages',
  'staged_rows',
  'segments',
  'controls',
  'rejections',
  'mirror',
  'telemetry',
  'registry',
  'cloud_rows',
] as const;
