import { uuidv7 } from 'uuidv7';
import { isDomainError } from '../domain/shared/errors';
import type { IngressMessage } from '../infra/nats/ingress';
import type { Registry } from '../infra/nats/registry';
import type { LineageCommandHandler } from './handler';

export type SchemaObserveDeps = Readonly<{
  registry: Registry;
  handler: LineageCommandHandler;
  fleetOf?: (slug: string) => string | null;
}>;

/**
 * A device's sync/schema/observe: resolve (device, table) → lineage as a batch does, and record
 * it there (ObserveSchema → SchemaObserved; domain/lineage/observe.ts). A deleted lineage is over:
 * the same (device, table) starts a new one.
 */
export async function recordSchemaObserve(
  deps: SchemaObserveDeps,
  msg: Extract<IngressMessage, { kind: 'schema' }>,
): Promise<void> {
  const { registry, handler } = deps;
  const o = msg.payload;
  const device = await registry.resolveDevice(
    msg.project_id,
    msg.topic_slug,
    msg.device_name,
    uuidv7(),
    deps.fleetOf?.(msg.topic_slug) ?? null,
  );
  let { lineageId } = await registry.resolveLineage(device.device_id, o.source_table, uuidv7());
  // The same ingress message redelivered is the same decision (the event store dedupes it).
  const decisionId = `${msg.device_key}:schema:${o.source_table}:${o.schema_hash}:${msg.received_at}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    const now = handler.clock().toISOString();
    try {
      await handler.execute(
        lineageId,
        {
          type: 'ObserveSchema',
          data: {
            project_id: msg.project_id,
            device_id: device.device_id,
            device_name: device.device_name,
            topic_slug: msg.topic_slug,
            new_lineage_id: lineageId,
            observe: o,
            now,
          },
        },
        { decision_id: decisionId, now },
      );
      return;
    } catch (err) {
      if (!isDomainError(err) || err.code !== 'lineage_deleted') throw err;
      lineageId = await registry.replaceLineage(device.device_id, o.source_table, lineageId, uuidv7());
    }
  }
  throw new Error(`could not settle the lineage of ${msg.device_key} ${o.source_table}`);
}
