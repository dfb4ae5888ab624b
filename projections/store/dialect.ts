import type { Kysely, Transaction } from 'kysely';
import type { WireValue } from '../../domain/protocol/contracts';
import type { Affinity } from '../../domain/protocol/fingerprint';
import type { ReadStoreDB } from './schema';
import type { DbValue } from './values';

export type DialectKind = 'sqlite' | 'postgres';
export type Executor = Kysely<ReadStoreDB> | Transaction<ReadStoreDB>;
export type ErrorClass = 'transient' | 'permanent';

/**
 * Everything that differs between SQLite and PostgreSQL, in one object per dialect
 * (`sqlite.ts`, `postgres.ts`). Projections and queries use Kysely for the rest, unchanged.
 */
export interface SqlDialect {
  readonly kind: DialectKind;
  /** Most bound parameters one statement may carry. */
  readonly maxParams: number;
  /** SELECT … FOR UPDATE exists: two projectors of one projection serialise on its checkpoint row. */
  readonly rowLocks: boolean;
  /** Column type of a SQLite affinity in a mirror or telemetry table. */
  columnType(affinity: Affinity): string;
  /**
   * Array type of a column of `affinity` (`bigint[]`…), where one array parameter can carry a
   * column of many rows (`unnest`): one statement text for any number of rows, no parameter
   * limit. Absent: rows are written as multi-row VALUES lists.
   */
  arrayType?(affinity: Affinity): string;
  /** Positional parameter `i` (1-based) in raw SQL. */
  placeholder(i: number): string;
  /** A wire value as this dialect binds it into a column of `affinity`; throws MaterializationError. */
  bindValue(affinity: Affinity, value: WireValue): DbValue;
  /**
   * Run raw SQL with positional parameters; rows come back with exact integers normalised
   * (number, or bigint beyond 2^53). Within a transaction SQLite reuses prepared statements.
   */
  exec(db: Executor, text: string, params: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /**
   * Run a raw read whose values go through `toWire`: integers are not normalised (SQLite hands
   * back bigint for INTEGER and number for REAL), so the storage class survives.
   */
  execExact(db: Executor, text: string, params: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** A value read by `execExact` from a mirror/telemetry column of `affinity` → its wire form. */
  toWire(affinity: Affinity, value: unknown): WireValue;
  /** Permanent: constraint, type, missing table or column; retrying cannot help. */
  classifyError(err: unknown): ErrorClass;
  isMissingTable(err: unknown): boolean;
  listTables(db: Executor): Promise<string[]>;
}

/** Errors without a database code: ours are permanent, anything else (network, bugs) is retried. */
export function classifyGenericError(err: unknown): ErrorClass {
  if (err instanceof Error && (err.name === 'MaterializationError' || err.name === 'IdentifierError')) {
    return 'permanent';
  }
  return 'transient';
}

export const errorCode = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};
