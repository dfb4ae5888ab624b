import type { ColumnBinding } from '../../domain/lineage/events';
import { planTable } from './columns';

const b = (column: string, over: Partial<ColumnBinding> = {}): ColumnBinding => ({
  column,
  action: 'mirror',
  target: column,
  affinity: 'TEXT',
  pk_ordinal: 0,
  not_null: false,
  ...over,
});
const id = b('id', { affinity: 'INTEGER', pk_ordinal: 1, not_null: true });

describe('mirror table plan', () => {
  it('creates one column per mirrored binding, leaving ignored and deferred ones out', () => {
    const plan = planTable(
      [
        id,
        b('mode'),
        b('secret', { action: 'ignore', target: null }),
        b('later', { action: 'defer', target: null }),
      ],
      null,
    );
    expect(plan.kind).toBe('create');
    if (plan.kind !== 'create') return;
    expect(plan.columns.map((c) => [c.name, c.key])).toEqual([
      ['id', 1],
      ['mode', 0],
    ]);
  });

  it('renames a column that would clash with a system column', () => {
    const plan = planTable([id, b('device_id'), b('source_commit_seq')], null);
    if (plan.kind !== 'create') throw new Error(plan.kind);
    expect(plan.columns.map((c) => c.name)).toEqual([
      'id',
      expect.stringMatching(/^device_id_[0-9a-f]{8}$/),
      expect.stringMatching(/^source_commit_seq_[0-9a-f]{8}$/),
    ]);
  });

  it('refuses to provision without a mirrored key', () => {
    expect(planTable([b('id', { pk_ordinal: 1, action: 'defer', target: null }), b('mode')], null).kind).toBe(
      'no_key',
    );
    expect(planTable([b('mode')], null).kind).toBe('no_key');
  });

  it('alters in place for new columns and keeps columns no longer bound', () => {
    const first = planTable([id, b('mode'), b('old')], null);
    if (first.kind !== 'create') throw new Error(first.kind);
    const next = planTable([id, b('mode'), b('fan', { affinity: 'INTEGER' })], first.columns);
    expect(next.kind).toBe('alter');
    if (next.kind !== 'alter') return;
    expect(next.added.map((c) => c.name)).toEqual(['fan']);
    expect(next.columns.map((c) => [c.name, c.bound])).toEqual([
      ['id', true],
      ['mode', true],
      ['old', false],
      ['fan', true],
    ]);
  });

  it('starts a new generation when the key or a column type changes', () => {
    const first = planTable([id, b('mode')], null);
    if (first.kind !== 'create') throw new Error(first.kind);
    expect(
      planTable([b('id', { affinity: 'INTEGER' }), b('mode', { pk_ordinal: 1 })], first.columns).kind,
    ).toBe('recreate');
    expect(planTable([id, b('mode', { affinity: 'INTEGER' })], first.columns).kind).toBe('recreate');
  });
});
