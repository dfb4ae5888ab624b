import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import { z } from 'zod';
import type { LineageCommand } from '../domain/lineage/decide';
import { DomainError, isDomainError } from '../domain/shared/errors';
import { subjects } from '../infra/nats/names';
import type { Logger } from '../infra/log';
import type { CommandResult, LineageCommandHandler } from './handler';

const id = z.string().uuid();
const columnAction = z.object({
  column: z.string().min(1),
  action: z.enum(['mirror', 'map', 'ignore', 'defer', 'auto_create_and_map']),
  mirror_column_name: z.string().min(1).max(63).optional(),
  data_point: z.string().min(1).max(200).optional(),
});

const scoped = {
  project_id: id.optional(),
  lineage_id: id,
  idempotency_key: z.string().max(200).optional(),
  actor: z.string().max(200).optional(),
};

/** Operator and internal commands, by verb; the NATS subject is `edge.cmd.<verb>`. */
export const COMMAND_SCHEMAS = {
  'review.claim': z.object({ ...scoped, review_id: id, action_version: z.number().int().positive() }),
  'review.approve': z.object({
    ...scoped,
    review_id: id,
    action_version: z.number().int().positive(),
    column_actions: z.array(columnAction).max(2000).optional(),
  }),
  'review.reject': z.object({
    ...scoped,
    review_id: id,
    action_version: z.number().int().positive(),
    reason: z.string().max(2000).default(''),
  }),
  'lineage.delete': z.object({ ...scoped, reason: z.string().max(2000).default('deleted by operator') }),
  'lineage.complete-replay': z.object({ ...scoped, replay_id: id, rows: z.number().int().nonnegative() }),
} as const;
export type CommandVerb = keyof typeof COMMAND_SCHEMAS;
export const COMMAND_VERBS = Object.keys(COMMAND_SCHEMAS) as CommandVerb[];

export type CommandReply =
  | { ok: true; lineage_id: string; version: number; events: { id: string; type: string }[] }
  | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

function toCommand(verb: CommandVerb, input: Record<string, unknown>): LineageCommand {
  switch (verb) {
    case 'review.claim': {
      const d = COMMAND_SCHEMAS[verb].parse(input);
      return { type: 'ClaimReview', data: { review_id: d.review_id, action_version: d.action_version } };
    }
    case 'review.approve': {
      const d = COMMAND_SCHEMAS[verb].parse(input);
      return {
        type: 'ApproveReview',
        data: {
          review_id: d.review_id,
          action_version: d.action_version,
          replay_id: uuidv7(),
          ...(d.column_actions ? { column_actions: d.column_actions } : {}),
        },
      };
    }
    case 'review.reject': {
      const d = COMMAND_SCHEMAS[verb].parse(input);
      return {
        type: 'RejectReview',
        data: { review_id: d.review_id, action_version: d.action_version, reason: d.reason },
      };
    }
    case 'lineage.delete': {
      const d = COMMAND_SCHEMAS[verb].parse(input);
      return { type: 'DeleteLineage', data: { reason: d.reason } };
    }
    case 'lineage.complete-replay': {
      const d = COMMAND_SCHEMAS[verb].parse(input);
      return { type: 'CompleteReplay', data: { replay_id: d.replay_id, rows: d.rows } };
    }
  }
}

/** The one place operator commands are executed: the HTTP API and the NATS subjects both call it. */
export class CommandService {
  constructor(private readonly handler: LineageCommandHandler) {}

  async run(verb: CommandVerb, input: unknown): Promise<CommandResult> {
    const schema = COMMAND_SCHEMAS[verb];
    const parsed = schema.safeParse(input);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      throw new DomainError(
        'invalid_command',
        `${first?.path.join('.') || 'input'}: ${first?.message ?? 'invalid'}`,
      );
    }
    const d = parsed.data as z.infer<(typeof COMMAND_SCHEMAS)['lineage.delete']>;
    const command = toCommand(verb, parsed.data as Record<string, unknown>);
    return this.handler.execute(d.lineage_id, command, {
      decision_id: d.idempotency_key ? `cmd:${d.idempotency_key}` : `cmd:${uuidv7()}`,
      ...(d.actor ? { actor: d.actor } : {}),
      ...(d.project_id ? { project_id: d.project_id } : {}),
    });
  }

  async reply(verb: CommandVerb, input: unknown): Promise<CommandReply> {
    try {
      const r = await this.run(verb, input);
      return {
        ok: true,
        lineage_id: r.lineage_id,
        version: r.version,
        events: r.events.map((e) => ({ id: e.id, type: e.type })),
      };
    } catch (err) {
      if (isDomainError(err))
        return { ok: false, error: { code: err.code, message: err.message, details: { ...err.details } } };
      return { ok: false, error: { code: 'internal', message: (err as Error).message } };
    }
  }
}

/** Serve `edge.cmd.<verb>` request/reply in a queue group, so any number of replicas can answer. */
export function serveCommands(nc: NatsConnection, service: CommandService, log: Logger): Subscription {
  return nc.subscribe(subjects.cmd('>'), {
    queue: 'sluice-commands',
    callback: (err, msg) => {
      if (err) {
        log.warn({ err: err.message }, 'command subscription error');
        return;
      }
      const verb = msg.subject.slice('edge.cmd.'.length) as CommandVerb;
      const respond = (body: CommandReply) => {
        if (msg.reply) msg.respond(JSON.stringify(body));
      };
      if (!COMMAND_VERBS.includes(verb)) {
        respond({
          ok: false,
          error: {
            code: 'unknown_command',
            message: `no command ${verb}; known: ${COMMAND_VERBS.join(', ')}`,
          },
        });
        return;
      }
      let input: unknown;
      try {
        input = msg.json();
      } catch {
        respond({ ok: false, error: { code: 'invalid_json', message: 'the request body is not JSON' } });
        return;
      }
      service
        .reply(verb, input)
        .then(respond, (e: unknown) =>
          respond({ ok: false, error: { code: 'internal', message: String(e) } }),
        );
    },
  });
}
