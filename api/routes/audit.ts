import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type LineageState, evolve, initialState } from '../../domain/lineage/state';
import type { StoredCommit } from '../../infra/nats/event-store';
import { ApiError, notFound } from '../errors';

type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** The API's read access to the event store: a lineage's decisions, in order. */
export type EventReader = Readonly<{
  readCommits(
    lineageId: string,
    opts?: { fromVersion?: number; limit?: number },
  ): Promise<readonly StoredCommit[]>;
}>;

export type AuditEvent = Readonly<{
  /** Stream sequence of the decision that appended the event (the lineage's version after it). */
  seq: number;
  /** Position of the event within its decision. */
  index: number;
  id: string;
  type: string;
  occurred_at: string;
  /** When JetStream stored the decision. */
  recorded_at: string;
  data: unknown;
  metadata: unknown;
}>;

/** Commits read per round trip while paging or folding; bounds memory on long histories. */
const CHUNK = 500;
/** Events one page may skip from the start (`page`); deeper reads use the `after` cursor. */
const MAX_OFFSET = 200_000;

const params = z.object({ project_id: z.string().uuid(), lineage_id: z.string().uuid() });
const query = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).optional(),
  limit: z.coerce.number().int().min(1).max(500).optional(),
  after: z.string().max(200).optional(),
  as_of: z
    .string()
    .max(64)
    .refine((s) => Number.isFinite(Date.parse(s)), 'must be an ISO-8601 time, e.g. 2026-04-28T09:00:00Z')
    .optional(),
});

const encodeCursor = (seq: number, index: number) =>
  Buffer.from(JSON.stringify([seq, index]), 'utf8').toString('base64url');

function decodeCursor(s: string): { seq: number; index: number } {
  try {
    const v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(v) &&
      Number.isSafeInteger(v[0]) &&
      Number.isSafeInteger(v[1]) &&
      v[0] > 0 &&
      v[1] >= 0
    ) {
      return { seq: v[0] as number, index: v[1] as number };
    }
  } catch {
    // fall through
  }
  throw new ApiError(
    400,
    'invalid_cursor',
    'after: not a cursor of this endpoint; pass a next_cursor back as is',
  );
}

/** Read commits from `fromVersion` chunk by chunk until `visit` says stop or the history ends. */
async function scan(
  events: EventReader,
  lineageId: string,
  fromVersion: number,
  visit: (c: StoredCommit) => boolean,
): Promise<void> {
  let from = fromVersion;
  for (;;) {
    const chunk = await events.readCommits(lineageId, { fromVersion: from, limit: CHUNK });
    for (const c of chunk) if (!visit(c)) return;
    if (chunk.length < CHUNK) return;
    from = chunk[chunk.length - 1]!.seq;
  }
}

/**
 * A lineage belongs to the project its first event registered it in. Checked against the event
 * store, not the read store, so an audit works while projections are being rebuilt.
 */
async function assertOwned(events: EventReader, projectId: string, lineageId: string): Promise<void> {
  const [first] = await events.readCommits(lineageId, { limit: 1 });
  const e = first?.events[0];
  if (!e || e.type !== 'LineageRegistered' || e.data.project_id !== projectId) throw notFound('lineage');
}

const toAudit = (c: StoredCommit, index: number): AuditEvent => {
  const e = c.events[index]!;
  return {
    seq: c.seq,
    index,
    id: e.id,
    type: e.type,
    occurred_at: e.occurred_at,
    recorded_at: c.time,
    data: e.data,
    metadata: e.metadata,
  };
};

/** `GET /lineages/{id}/events`: the audit trail, or with `as_of` the lineage's state at that time. */
export async function registerAuditRoutes(app: App, deps: Readonly<{ events: EventReader }>): Promise<void> {
  app.get(
    '/edge/lineages/:lineage_id/events',
    {
      schema: {
        tags: ['audit'],
        description:
          "The lineage's events in order (paginated with page/limit or the next_cursor as after). " +
          'With as_of, the state folded from the events that occurred up to that time instead.',
        params,
        querystring: query,
      },
    },
    async (req) => {
      const { project_id, lineage_id } = req.params;
      await assertOwned(deps.events, project_id, lineage_id);

      if (req.query.as_of !== undefined) {
        const asOf = Date.parse(req.query.as_of);
        let state: LineageState = initialState();
        let version = 0;
        let folded = 0;
        // A prefix of the history: stop at the first decision that happened after as_of.
        await scan(deps.events, lineage_id, 0, (c) => {
          const at = c.events[0] ? Date.parse(c.events[0].occurred_at) : Date.parse(c.time);
          if (at > asOf) return false;
          for (const e of c.events) state = evolve(state, e);
          version = c.seq;
          folded += c.events.length;
          return true;
        });
        return { as_of: new Date(asOf).toISOString(), lineage_id, version, events: folded, state };
      }

      const limit = req.query.limit ?? 50;
      const page = req.query.page ?? 1;
      const cursor = req.query.after !== undefined ? decodeCursor(req.query.after) : null;
      let skip = cursor ? 0 : (page - 1) * limit;
      if (skip > MAX_OFFSET)
        throw new ApiError(
          400,
          'page_too_deep',
          `page ${page} skips more than ${MAX_OFFSET} events; follow next_cursor with after instead`,
        );
      const items: AuditEvent[] = [];
      await scan(deps.events, lineage_id, cursor ? cursor.seq - 1 : 0, (c) => {
        for (let i = 0; i < c.events.length; i++) {
          if (cursor && c.seq === cursor.seq && i <= cursor.index) continue;
          if (skip > 0) {
            skip--;
            continue;
          }
          // One more than asked for tells whether there is a next page.
          if (items.length > limit) return false;
          items.push(toAudit(c, i));
        }
        return items.length <= limit;
      });
      const more = items.length > limit;
      const pageItems = more ? items.slice(0, limit) : items;
      const last = pageItems[pageItems.length - 1];
      return {
        lineage_id,
        items: pageItems,
        page: cursor ? null : page,
        limit,
        next_cursor: more && last ? encodeCursor(last.seq, last.index) : null,
      };
    },
  );
}
