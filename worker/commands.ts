import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { uuidv7 } from 'uuidv7';
import { z } from 'zod';
import { type LineageCommand, MAX_WRITE_ROWS } from '../domain/lineage/decide';
import type { CommandSender } from '../projections/runner/types';
import type { LineageState } from '../domain/lineage/state';
import { DEFAULT_POLICY, type Policy } from '../domain/policy/policy';
import { type RowChange, wireValueSchema } from '../domain/protocol/contracts';
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

/** Column values as the wire carries them (docs/wire-values.md); `__proto__` never names a column. */
const wireRecord = z
  .record(z.string().min(1).max(255), wireValueSchema)
  .refine((o) => !Object.hasOwn(o, '__proto__'), 'a column may not be named __proto__');

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
  'review.reopen': z.object({ ...scoped, review_id: id, action_version: z.number().int().positive() }),
  'lineage.delete': z.object({ ...scoped, reason: z.string().max(2000).default('deleted by operator') }),
  'lineage.verify': z.object({
    ...scoped,
    trigger: z.enum(['operator', 'schedule']).default('operator'),
    /** schedule: the project's verify_interval_minutes (no run while the last is younger). */
    interval_minutes: z.number().int().positive().optional(),
  }),
  'lineage.complete-verify': z.object({
    ...scoped,
    verify_id: id,
    outcome: z.enum(['equal', 'divergent', 'not_comparable']),
    divergent_buckets: z.array(z.number().int().min(0).max(255)).max(256),
    device_rows: z.number().int().nonnegative(),
    mirror_rows: z.number().int().nonnegative(),
    detail: z.string().max(2000).optional(),
  }),
  'lineage.resync': z.object({
    ...scoped,
    buckets: z.array(z.number().int().min(0).max(255)).min(1).max(256).nullable().default(null),
  }),
  'lineage.reset-materialization': z.object({ ...scoped }),
  'lineage.complete-replay': z.object({ ...scoped, replay_id: id, rows: z.number().int().nonnegative() }),
  'lineage.report-failure': z.object({
    ...scoped,
    source_seq: z.number().int().positive(),
    code: z.string().max(200),
    message: z.string().max(4000),
    permanent: z.boolean(),
    rows: z.array(z.any()).max(4096),
    journal_epoch: z.string().nullable(),
  }),
  'control.delivered': z.object({ ...scoped, control_id: id }),
  'control.ack': z.object({ ...scoped, control_id: id }),
  'lineage.authority': z.object({
    ...scoped,
    authority: z.enum(['cloud_authoritative', 'device_authoritative']),
  }),
  'lineage.write-rows': z.object({
    ...scoped,
    rows: z
      .array(z.object({ pk: wireRecord, values: wireRecord }).strict())
      .min(1)
      .max(MAX_WRITE_ROWS),
  }),
} as const;
export type CommandVerb = keyof typeof COMMAND_SCHEMAS;
export const COMMAND_VERBS = Object.keys(COMMAND_SCHEMAS) as CommandVerb[];

export type CommandReply =
  | { ok: true; lineage_id: string; version: number; events: { id: string; type: string }[] }
  | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

type Inputs = { [V in CommandVerb]: z.infer<(typeof COMMAND_SCHEMAS)[V]> };

type Ctx = Readonly<{
  policy: Policy;
  now: string;
  new_control_id: string;
  new_replay_id: string;
  /** Id of a verify or resync the command starts. */
  new_run_id: string;
}>;

/** What each verb's input becomes as a lineage command; ids, time and policy come from `Ctx`. */
const CONVERTERS: { [V in CommandVerb]: (i: Inputs[V], c: Ctx) => LineageCommand } = {
  'review.claim': (i) => ({
    type: 'ClaimReview',
    data: { review_id: i.review_id, action_version: i.action_version },
  }),
  'review.approve': (i, c) => ({
    type: 'ApproveReview',
    data: {
      review_id: i.review_id,
      action_version: i.action_version,
      replay_id: c.new_replay_id,
      policy: c.policy,
      ...(i.column_actions ? { column_actions: i.column_actions } : {}),
    },
  }),
  'review.reject': (i) => ({
    type: 'RejectReview',
    data: { review_id: i.review_id, action_version: i.action_version, reason: i.reason },
  }),
  'review.reopen': (i) => ({
    type: 'ReopenReview',
    data: { review_id: i.review_id, action_version: i.action_version },
  }),
  'lineage.delete': (i) => ({ type: 'DeleteLineage', data: { reason: i.reason } }),
  'lineage.verify': (i, c) => ({
    type: 'RequestVerify',
    data: {
      verify_id: c.new_run_id,
      control_id: c.new_control_id,
      now: c.now,
      trigger: i.trigger,
      ...(i.interval_minutes !== undefined ? { interval_minutes: i.interval_minutes } : {}),
    },
  }),
  'lineage.complete-verify': (i, c) => ({
    type: 'CompleteVerify',
    data: {
      verify_id: i.verify_id,
      outcome: i.outcome,
      divergent_buckets: i.divergent_buckets,
      device_rows: i.device_rows,
      mirror_rows: i.mirror_rows,
      ...(i.detail !== undefined ? { detail: i.detail } : {}),
      new_resync_id: c.new_run_id,
      new_control_id: c.new_control_id,
      now: c.now,
    },
  }),
  'lineage.resync': (i, c) => ({
    type: 'RequestResync',
    data: { resync_id: c.new_run_id, control_id: c.new_control_id, now: c.now, buckets: i.buckets },
  }),
  'lineage.reset-materialization': (_i, c) => ({ type: 'ResetMaterialization', data: c }),
  'lineage.complete-replay': (i, c) => ({
    type: 'CompleteReplay',
    data: { ...c, replay_id: i.replay_id, rows: i.rows },
  }),
  'lineage.report-failure': (i, c) => ({
    type: 'ReportMaterializationFailure',
    data: {
      ...c,
      source_seq: i.source_seq,
      code: i.code,
      message: i.message,
      permanent: i.permanent,
      rows: i.rows as RowChange[],
      journal_epoch: i.journal_epoch,
    },
  }),
  'control.delivered': (i, c) => ({
    type: 'RecordControlDelivery',
    data: { control_id: i.control_id, delivered_at: c.now },
  }),
  'control.ack': (i, c) => ({
    type: 'AcknowledgeControl',
    data: { control_id: i.control_id, acknowledged_at: c.now },
  }),
  'lineage.authority': (i) => ({ type: 'SetLineageAuthority', data: { authority: i.authority } }),
  'lineage.write-rows': (i, c) => ({
    type: 'WriteCloudRows',
    data: { rows: i.rows, new_control_id: c.new_control_id, now: c.now },
  }),
};

function toCommand<V extends CommandVerb>(verb: V, input: Inputs[V], ctx: Ctx): LineageCommand {
  return (CONVERTERS[verb] as (i: Inputs[V], c: Ctx) => LineageCommand)(input, ctx);
}

export type PolicySource = { policy(projectId: string): Promise<Policy> };

/** The one place operator commands are executed: the HTTP API and the NATS subjects both call it. */
export class CommandService {
  constructor(
    private readonly handler: LineageCommandHandler,
    private readonly policies: PolicySource = { policy: async () => DEFAULT_POLICY },
    /** The time of operator commands; by default the handler's, which stamps their events. */
    private readonly clock: () => Date = handler.clock,
  ) {}

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
    const { state } = await this.handler.load(d.lineage_id);
    const policy =
      state.status === 'registered' ? await this.policies.policy(state.project_id) : DEFAULT_POLICY;
    const now = this.clock().toISOString();
    const command = toCommand(verb, parsed.data as Inputs[typeof verb], {
      policy,
      now,
      new_control_id: uuidv7(),
      new_replay_id: uuidv7(),
      new_run_id: uuidv7(),
    });
    return this.handler.execute(d.lineage_id, command, {
      decision_id: d.idempotency_key ? `cmd:${d.idempotency_key}` : `cmd:${uuidv7()}`,
      now,
      ...(d.actor ? { actor: d.actor } : {}),
      ...(d.project_id ? { project_id: d.project_id } : {}),
    });
  }

  /** The lineage as the write side holds it (for a verify's progress; the read store follows it). */
  async lineageState(lineageId: string): Promise<LineageState> {
    return (await this.handler.load(lineageId)).state;
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
/** More verbs on the same subscription (registry and device commands), answered by their own service. */
export type ExtraCommands = Readonly<{
  verbs: readonly string[];
  reply(verb: string, input: unknown): Promise<unknown>;
}>;

export function serveCommands(
  nc: NatsConnection,
  service: CommandService,
  log: Logger,
  extra?: ExtraCommands,
): Subscription {
  return nc.subscribe(subjects.cmd('>'), {
    queue: 'sluice-commands',
    callback: (err, msg) => {
      if (err) {
        log.warn({ err: err.message }, 'command subscription error');
        return;
      }
      const verb = msg.subject.slice('edge.cmd.'.length) as CommandVerb;
      const respond = (body: unknown) => {
        if (msg.reply) msg.respond(JSON.stringify(body));
      };
      if (extra?.verbs.includes(verb)) {
        let input: unknown;
        try {
          input = msg.json();
        } catch {
          respond({ ok: false, error: { code: 'invalid_json', message: 'the request body is not JSON' } });
          return;
        }
        extra
          .reply(verb, input)
          .then(respond, (e: unknown) =>
            respond({ ok: false, error: { code: 'internal', message: String(e) } }),
          );
        return;
      }
      if (!COMMAND_VERBS.includes(verb)) {
        respond({
          ok: false,
          error: {
            code: 'unknown_command',
            message: `no command ${verb}; known: ${[...COMMAND_VERBS, ...(extra?.verbs ?? [])].join(', ')}`,
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

/** The projector's way back to the lineages: replay confirmations, materialization failures, verify outcomes. */
export function projectorCommands(service: CommandService): CommandSender {
  const check = (r: CommandReply, what: string) => {
    if (!r.ok) throw new Error(`${what} refused: ${r.error.code}: ${r.error.message}`);
  };
  return {
    send: async (lineageId, command) => {
      if (command.type !== 'CompleteReplay') throw new Error(`the projector does not send ${command.type}`);
      const { replay_id, rows } = command.data;
      check(
        await service.reply('lineage.complete-replay', {
          lineage_id: lineageId,
          replay_id,
          rows,
          idempotency_key: `replay:${replay_id}`,
        }),
        'CompleteReplay',
      );
    },
    reportMaterializationFailure: async (lineageId, f) => {
      check(
        await service.reply('lineage.report-failure', {
          lineage_id: lineageId,
          source_seq: f.source_seq,
          code: f.code,
          message: f.message.slice(0, 4000),
          permanent: f.permanent,
          rows: f.rows,
          journal_epoch: f.journal_epoch,
          idempotency_key: `failure:${f.source_seq}:${f.journal_epoch ?? ''}`,
        }),
        'ReportMaterializationFailure',
      );
    },
    reportVerifyOutcome: async (lineageId, v) => {
      check(
        await service.reply('lineage.complete-verify', {
          lineage_id: lineageId,
          verify_id: v.verify_id,
          outcome: v.outcome,
          divergent_buckets: v.divergent_buckets,
          device_rows: v.device_rows,
          mirror_rows: v.mirror_rows,
          ...(v.detail !== undefined ? { detail: v.detail.slice(0, 2000) } : {}),
          // One comparison per verify: a projector that restarts and reports again changes nothing.
          idempotency_key: `verify:${v.verify_id}`,
        }),
        'CompleteVerify',
      );
    },
  };
}
