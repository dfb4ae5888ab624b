import { join } from 'node:path';
import { createTestDatabase } from '../../tests/support/postgres';
import { tempDir } from '../../tests/support/proc';
import { migrate } from '../store/migrations';
import { openReadStore, type ReadStore } from '../store/open';

export type TestStore = Readonly<{
  store: ReadStore;
  /** Open another store on the same database (a second process, a restarted one). */
  reopen: () => ReadStore;
  cleanup: () => Promise<void>;
}>;

export type DialectName = 'sqlite' | 'postgres';

/** Every read-store test runs on both dialects: `describe.each(DIALECTS)`. */
export const DIALECTS: readonly DialectName[] = ['sqlite', 'postgres'];

export async function openTestStore(kind: DialectName, opts: { migrate?: boolean } = {}): Promise<TestStore> {
  const extra: ReadStore[] = [];
  let make: () => ReadStore;
  let drop = async () => {};
  if (kind === 'sqlite') {
    const path = join(tempDir('readstore'), 'read.db');
    make = () => openReadStore({ kind: 'sqlite', path });
  } else {
    const db = await createTestDatabase('proj');
    make = () => openReadStore({ kind: 'postgres', url: db.url, poolSize: 5 });
    drop = db.drop;
  }
  const store = make();
  if (opts.migrate !== false) await migrate(store);
  return {
    store,
    reopen: () => {
      const s = make();
      extra.push(s);
      return s;
    },
    cleanup: async () => {
      for (const s of extra) await s.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      await drop();
    },
  };
}
