import { affinityOf, canonicalSchema, schemaHash } from './fingerprint';

// SPEC §2 prints the vector in field order for reading; the hashed bytes have every object's
// keys sorted (that is what yields the published hash), see docs/wire-protocol.md.
const vector =
  '{"columns":[{"decl_type_affinity":"INTEGER","name":"id","not_null":true,"pk_ordinal":1},{"decl_type_affinity":"TEXT","name":"ts","not_null":true,"pk_ordinal":0},{"decl_type_affinity":"REAL","name":"value","not_null":false,"pk_ordinal":0}],"table_name":"temps"}';

const temps = {
  table_name: 'temps',
  columns: [
    { name: 'value', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'ts', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: true },
  ],
} as const;

describe('schema fingerprint', () => {
  it('matches the SPEC test vector byte for byte', () => {
    expect(canonicalSchema(temps)).toBe(vector);
    expect(schemaHash(temps)).toBe('3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142');
  });

  it('ignores column order but not a retype, a new column or a key change', () => {
    const base = schemaHash(temps);
    const reordered = { ...temps, columns: [...temps.columns].reverse() };
    expect(schemaHash(reordered)).toBe(base);
    const retyped = {
      ...temps,
      columns: temps.columns.map((c) =>
        c.name === 'value' ? { ...c, decl_type_affinity: 'TEXT' as const } : c,
      ),
    };
    expect(schemaHash(retyped)).not.toBe(base);
    const added = {
      ...temps,
      columns: [
        ...temps.columns,
        { name: 'unit', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
      ],
    };
    expect(schemaHash(added)).not.toBe(base);
    const rekeyed = {
      ...temps,
      columns: temps.columns.map((c) => (c.name === 'ts' ? { ...c, pk_ordinal: 2 } : c)),
    };
    expect(schemaHash(rekeyed)).not.toBe(base);
  });

  it.each([
    ['INT', 'INTEGER'],
    ['BIGINT', 'INTEGER'],
    ['VARCHAR(20)', 'TEXT'],
    ['CLOB', 'TEXT'],
    ['BLOB', 'BLOB'],
    ['', 'BLOB'],
    [null, 'BLOB'],
    ['DOUBLE PRECISION', 'REAL'],
    ['FLOAT', 'REAL'],
    ['DECIMAL(10,2)', 'NUMERIC'],
    ['BOOLEAN', 'NUMERIC'],
    ['CHARINT', 'INTEGER'],
  ])('affinity of %p is %s', (decl, aff) => {
    expect(affinityOf(decl)).toBe(aff);
  });
});
