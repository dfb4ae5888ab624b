import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { canonicalJson } from '../domain/shared/canonical';

type IdemDB = {
  api_idempotency: {
    project_id: string;
    idem_key: string;
    request_hash: string;
    status: number;
    body: string | null;
    created_at: string;
  };
};

export type StoredResponse = { status: number; body: unknown };
export type Claim =
  | { kind: 'new' }
  | { kind: 'replay'; response: StoredResponse }
  | { kind: 'mismatch' }
  | { kind: 'in_progress' };

const PENDING = 0;

/**
 * `Idempotency-Key` bookkeeping: the first request with a key claims it (a pending row, unique on
 * (project, key)); its response is stored; a repeat with the same body gets that response back and
 * has no second effect; a repeat with another body is refused.
 */
export class IdempotencyStore {
  private readonly db: Kysely<IdemDB>;
  constructor(db: Kysely<unknown>) {
    this.db = db as unknown as Kysely<IdemDB>;
  }

  async migrate(): Promise<void> {
    await this.db.schema
      .createTable('api_idempotency')
      .ifNotExists()
      .addColumn('project_id', 'text', (c) => c.notNull())
      .addColumn('idem_key', 'text', (c) => c.notNull())
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('status', 'integer', (c) => c.notNull())
      .addColumn('body', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('api_idempotency_pk', ['project_id', 'idem_key'])
      .execute();
  }

  static requestHash(method: string, route: string, body: unknown): string {
    return createHash('sha256')
      .update(`${method} ${route} ${canonicalJson(body ?? null)}`)
      .digest('hex');
  }

  async claim(projectId: string, key: string, requestHash: string): Promise<Claim> {
    const inserted = await this.db
      .insertInto('api_idempotency')
      .values({
        project_id: projectId,
        idem_key: key,
        request_hash: requestHash,
        status: PENDING,
        body: null,
        created_at: new Date().toISOString(),
      })
      .onConflict((oc) => oc.columns(['project_id', 'idem_key']).doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) return { kind: 'new' };
    const row = await this.db
      .selectFrom('api_idempotency')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('idem_key', '=', key)
      .executeTakeFirst();
    if (!row) return this.claim(projectId, key, requestHash);
    if (row.request_hash !== requestHash) return { kind: 'mismatch' };
    if (row.status === PENDING) return { kind: 'in_progress' };
    return {
      kind: 'replay',
      response: { status: row.status, body: row.body === null ? null : JSON.parse(row.body) },
    };
  }

  async complete(projectId: string, key: string, response: StoredResponse): Promise<void> {
    await this.db
      .updateTable('api_idempotency')
      .set({ status: response.status, body: JSON.stringify(response.body) })
      .where('project_id', '=', projectId)
      .where('idem_key', '=', key)
      .execute();
  }

  /** A failed attempt (5xx) releases the key so the client may retry. */
  async release(projectId: string, key: string): Promise<void> {
    await this.db
      .deleteFrom('api_idempotency')
      .where('project_id', '=', projectId)
      .where('idem_key', '=', key)
      .where('status', '=', PENDING)
      .execute();
  }

  async purgeOlderThan(cutoff: Date): Promise<void> {
    await this.db
      .deleteFrom('api_idempotency')
      .where('created_at', '<', cutoff.toISOString())
      .where(sql`status`, '<>', PENDING)
      .execute();
  }
}
