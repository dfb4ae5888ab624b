import type { Kysely } from 'kysely';
import type { SqlDialect } from './dialect';
import { createPostgresStore } from './postgres';
import type { ReadStoreDB } from './schema';
import { createSqliteStore } from './sqlite';

export type ReadStoreConfig =
  Readonly<{ kind: 'sqlite'; path: string }> | Readonly<{ kind: 'postgres'; url: string; poolSize?: number }>;

/** A read store: the Kysely instance every query and projection uses, plus its dialect's specifics. */
export type ReadStore = Readonly<{
  db: Kysely<ReadStoreDB>;
  dialect: SqlDialect;
  close: () => Promise<void>;
}>;

/** Open the read store (SQLite file in WAL mode, or a PostgreSQL pool). Run `migrate` before use. */
export function openReadStore(config: ReadStoreConfig): ReadStore {
  return config.kind === 'sqlite'
    ? createSqliteStore(config.path)
    : createPostgresStore(config.url, config.poolSize);
}
