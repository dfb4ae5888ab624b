import { canonicalJson, compareCodePoints, sha256Hex } from '../shared/canonical';

export type Affinity = 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC';

export type SchemaColumn = Readonly<{
  name: string;
  decl_type_affinity: Affinity;
  pk_ordinal: number;
  not_null: boolean;
}>;

export type SchemaColumns = Readonly<{ table_name: string; columns: readonly SchemaColumn[] }>;

/** SQLite's type-affinity rules (https://sqlite.org/datatype3.html §3.1), in their order. */
export function affinityOf(declaredType: string | null | undefined): Affinity {
  const t = (declaredType ?? '').toUpperCase();
  if (t.includes('INT')) return 'INTEGER';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT';
  if (t.includes('BLOB') || t.trim() === '') return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL';
  return 'NUMERIC';
}

/** Columns sorted by name, keys sorted, no whitespace: column order never changes the hash. */
export function canonicalSchema(schema: SchemaColumns): string {
  const columns = [...schema.columns]
    .sort((a, b) => compareCodePoints(a.name, b.name))
    .map((c) => ({
      name: c.name,
      decl_type_affinity: c.decl_type_affinity,
      pk_ordinal: c.pk_ordinal,
      not_null: c.not_null,
    }));
  return canonicalJson({ table_name: schema.table_name, columns });
}

export function schemaHash(schema: SchemaColumns): string {
  return sha256Hex(canonicalSchema(schema));
}
