import { validateSchemaObserve } from '../protocol/contracts';
import { schemaHash, type SchemaColumns } from '../protocol/fingerprint';
import { decide } from './decide';
import { evolve, initialState, type LineageState } from './state';

const cols: SchemaColumns = {
  table_name: 'temps',
  columns: [{ name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true }],
};
const hash = schemaHash(cols);
const ids = { project_id: 'p', device_id: 'd', device_name: 'gw', topic_slug: 'e2e', new_lineage_id: 'L1' };
const observe = (state: LineageState, body: unknown, now = '2026-01-01T00:00:00Z') => {
  const v = validateSchemaObserve(body);
  if (!v.ok) throw new Error(v.rejection.message);
  const events = decide({ type: 'ObserveSchema', data: { ...ids, observe: v.value, now } }, state);
  return { events, state: events.reduce(evolve, state) };
};

describe('sync/schema/observe', () => {
  it("accepts the reference product's shape (no schema_columns) and Sluice's", () => {
    expect(validateSchemaObserve({ format_version: 1, source_table: 'temps', schema_hash: hash }).ok).toBe(
      true,
    );
    expect(
      validateSchemaObserve({
        format_version: 1,
        source_table: 'temps',
        schema_hash: hash,
        schema_columns: cols,
      }).ok,
    ).toBe(true);
    const wrong = validateSchemaObserve({
      format_version: 1,
      source_table: 'temps',
      schema_hash: 'a'.repeat(64),
      schema_columns: cols,
    });
    expect(wrong.ok || wrong.rejection.code).toBe('invalid_schema_hash');
  });

  it('registers the lineage on first sight and records the last observation', () => {
    const first = observe(initialState(), { format_version: 1, source_table: 'temps', schema_hash: hash });
    expect(first.events.map((e) => e.type)).toEqual(['LineageRegistered', 'SchemaObserved']);
    expect(first.state.status === 'registered' && first.state.kind).toBe('rows');
    expect(first.state.status === 'registered' && first.state.observed_schema).toEqual({
      schema_hash: hash,
      schema_columns: null,
      observed_at: '2026-01-01T00:00:00Z',
    });
    // The same again records nothing; columns for the same hash are recorded.
    expect(
      observe(first.state, { format_version: 1, source_table: 'temps', schema_hash: hash }).events,
    ).toEqual([]);
    const withCols = observe(first.state, {
      format_version: 1,
      source_table: 'temps',
      schema_hash: hash,
      schema_columns: cols,
    });
    expect(withCols.events.map((e) => e.type)).toEqual(['SchemaObserved']);
    // Advisory: no review, no pause, no classification.
    expect(withCols.state.status === 'registered' && withCols.state.pause_reasons).toEqual([]);
    expect(withCols.state.status === 'registered' && withCols.state.reviews).toEqual([]);
  });

  it('takes the kind from capture_strategy', () => {
    const t = observe(initialState(), {
      format_version: 1,
      source_table: 'temps',
      schema_hash: hash,
      capture_strategy: 'sqlite_telemetry_batch_v1',
    });
    expect(t.state.status === 'registered' && t.state.kind).toBe('telemetry');
  });
});
