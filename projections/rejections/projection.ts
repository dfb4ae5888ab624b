/** `rejections`: every uplink the bridge refused (SPEC §2), from the SLUICE_REJECTIONS stream. */
import type { UplinkRejected } from '../runner/decode';
import type { ApplyContext, Projection, Tx } from '../runner/types';

async function apply(tx: Tx, event: UplinkRejected, ctx: ApplyContext): Promise<void> {
  const d = event.data;
  await tx
    .insertInto('edge_rejections')
    .values({
      stream_seq: ctx.seq,
      project_id: d.project_id,
      device_key: d.device_key,
      kind: d.kind,
      topic: d.topic,
      code: d.code,
      message: d.message,
      received_at: d.received_at,
      payload_excerpt: d.payload_excerpt,
    })
    .onConflict((oc) => oc.column('stream_seq').doNothing())
    .execute();
}

export function rejectionsProjection(): Projection<UplinkRejected> {
  return {
    name: 'rejections',
    version: 1,
    stream: 'SLUICE_REJECTIONS',
    handles: ['UplinkRejected'],
    apply,
    async truncate(tx) {
      await tx.deleteFrom('edge_rejections').execute();
    },
  };
}
