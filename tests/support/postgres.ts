import pg from 'pg';

export type TestDatabase = { url: string; name: string; drop: () => Promise<void> };

let counter = 0;

/** A fresh database for one suite, in the run's private cluster (or SLUICE_TEST_PG_URL's server). */
export async function createTestDatabase(prefix = 'sluice'): Promise<TestDatabase> {
  const admin = process.env.SLUICE_TEST_PG_URL;
  if (!admin) throw new Error('SLUICE_TEST_PG_URL is not set: run the suites through jest (global setup)');
  const name = `${prefix}_${process.pid}_${Date.now()}_${counter++}`.toLowerCase();
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
