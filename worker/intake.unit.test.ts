import type { IngressMessage } from '../infra/nats/ingress';
import { groupBatches } from './intake';

const source = (device: string) => ({
  project_id: 'p',
  topic_slug: 'fleet',
  device_name: device,
  device_key: `fleet/${device}`,
  received_at: '2026-01-01T00:00:00.000Z',
});
const batch = (device: string, table: string, id: string) =>
  ({
    msg: { ...source(device), kind: 'rows', payload: { source_table: table, batch_id: id } },
  }) as unknown as {
    msg: IngressMessage;
  };
const report = (device: string, id: string) =>
  ({
    msg: { ...source(device), kind: 'request', payload: { request_kind: 'verify_report', request_id: id } },
  }) as {
    msg: IngressMessage;
  };
const ids = (units: { msg: IngressMessage }[][]) =>
  units.map((u) =>
    u.map(({ msg }) =>
      msg.kind === 'request'
        ? `r:${String(msg.payload['request_id'])}`
        : (msg.payload as { batch_id: string }).batch_id,
    ),
  );

describe('groupBatches', () => {
  it("gathers one table's batches where the first stood, other tables and devices apart", () => {
    const units = groupBatches([
      batch('a', 't', 'a1'),
      batch('b', 't', 'b1'),
      batch('a', 'u', 'u1'),
      batch('a', 't', 'a2'),
      batch('b', 't', 'b2'),
    ]);
    expect(ids(units)).toEqual([['a1', 'a2'], ['b1', 'b2'], ['u1']]);
  });

  it("never moves a device's batch ahead of its verify report", () => {
    const units = groupBatches([
      batch('a', 't', 'a1'),
      batch('b', 't', 'b1'),
      report('a', 'v'),
      batch('a', 't', 'a2'),
      batch('b', 't', 'b2'),
      batch('a', 't', 'a3'),
    ]);
    // a2 and a3 come after the report; b's batches, another device's, still go together.
    expect(ids(units)).toEqual([['a1'], ['b1', 'b2'], ['r:v'], ['a2', 'a3']]);
  });
});
