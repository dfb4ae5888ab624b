import { uuidv7 } from 'uuidv7';
import { z } from 'zod';
import type { RegistryCommand } from '../domain/registry/decide';
import { type RegistryKey, coalescingScope, registryId } from '../domain/registry/events';
import { DomainError, isDomainError } from '../domain/shared/errors';
import type { Policy } from '../domain/policy/policy';
import type { Registry } from '../infra/nats/registry';
import type { LineageCommandHandler } from './handler';
import { applyApproval } from './registry-follower';
import type { RegistryCommandHandler, RegistryResult } from './registry-handler';

const id = z.string().uuid();
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a registry id is 64 lowercase hex digits');
const columnAction = z.object({
  column: z.string().min(1),
  action: z.enum(['mirror', 'map', 'ignore', 'defer', 'auto_create_and_map']),
  mirror_column_name: z.string().min(1).max(63).optional(),
  data_point: z.string().min(1).max(200).optional(),
});
const common = {
  project_id: id.optional(),
  registry_id: hex64,
  review_id: id,
  action_version: z.number().int().positive(),
  idempotency_key: z.string().max(200).optional(),
  actor: z.string().max(200).optional(),
};

/** `edge.cmd.<verb>` of registry entries and devices. */
export const REGISTRY_COMMAND_SCHEMAS = {
  'registry.claim': z.object(common),
  'registry.approve': z.object({ ...common, column_actions: z.array(columnAction).max(2000).optional() }),
  'registry.reject': z.object({ ...common, reason: z.string().max(2000).default('') }),
  'registry.abandon': z.object({ ...common, reason: z.string().max(2000).default('abandoned by operator') }),
  'registry.consolidate': z.object({ project_id: id, actor: z.string().max(200).optional() }),
  'device.assign-fleet': z.object({
    project_id: id,
    device: z.string().min(1).max(300),
    fleet_id: id.nullable(),
    actor: z.string().max(200).optional(),
  }),
} as const;
export type RegistryVerb = keyof typeof REGISTRY_COMMAND_SCHEMAS;
export const REGISTRY_VERBS = Object.keys(REGISTRY_COMMAND_SCHEMAS) as RegistryVerb[];
type Inputs = { [V in RegistryVerb]: z.infer<(typeof REGISTRY_COMMAND_SCHEMAS)[V]> };

export type ConsolidationResult = Readonly<{ lineages: number; entries: number }>;

export type RegistryReply =
  | { ok: true; [k: string]: unknown }
  | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

function parse<V extends RegistryVerb>(verb: V, input: unknown): Inputs[V] {
  const parsed = REGISTRY_COMMAND_SCHEMAS[verb].safeParse(input);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new DomainError(
      'invalid_command',
      `${first?.path.join('.') || 'input'}: ${first?.message ?? 'invalid'}`,
    );
  }
  return parsed.data as Inputs[V];
}

/**
 * Operator commands on registry entries (claim, approve, reject, abandon a registry review),
 * consolidation of device-scoped approvals into coalesced ones, and fleet assignment. The HTTP
 * API and `edge.cmd.registry.*` / `edge.cmd.device.*` both call it.
 */
export class RegistryCommandService {
  constructor(
    private readonly registries: RegistryCommandHandler,
    private readonly lineages: LineageCommandHandler,
    private readonly devices: Registry,
  ) {}

  async review(
    verb: 'registry.claim' | 'registry.approve' | 'registry.reject' | 'registry.abandon',
    input: unknown,
  ): Promise<RegistryResult> {
    const i = parse(verb, input);
    const v = { review_id: i.review_id, action_version: i.action_version };
    const command: RegistryCommand =
      verb === 'registry.claim'
        ? { type: 'ClaimRegistryReview', data: v }
        : verb === 'registry.approve'
          ? {
              type: 'ApproveRegistryReview',
              data: {
                ...v,
                ...('column_actions' in i && i.column_actions ? { column_actions: i.column_actions } : {}),
              },
            }
          : verb === 'registry.reject'
            ? {
                type: 'RejectRegistryReview',
                data: { ...v, reason: (i as Inputs['registry.reject']).reason },
              }
            : {
                type: 'AbandonRegistryReview',
                data: { ...v, reason: (i as Inputs['registry.abandon']).reason },
              };
    return this.registries.execute(i.registry_id, command, {
      decision_id: i.idempotency_key ? `cmd:${i.idempotency_key}` : `cmd:${uuidv7()}`,
      ...(i.actor ? { actor: i.actor } : {}),
      ...(i.project_id ? { project_id: i.project_id } : {}),
    });
  }

  /**
   * Move every approved rows lineage of the project that materializes on its own into the
   * coalesced table of its scope: the first lineage's approval of a hash becomes the entry's
   * (unless a registry review decided it already), then each lineage takes the entry's approval.
   * Idempotent; `PATCH /policy` runs it when the coalescing mode changes.
   */
  async consolidate(projectId: string, policy: Policy, actor?: string): Promise<ConsolidationResult> {
    const entries = new Set<string>();
    let moved = 0;
    for (const device of await this.devices.listDevices(projectId)) {
      const scope = coalescingScope(policy.schema_coalescing_mode, projectId, device.fleet_id);
      if (!scope) continue;
      for (const { lineage_id } of await this.devices.lineagesOfDevice(device.device_id)) {
        const { state } = await this.lineages.load(lineage_id);
        if (state.status !== 'registered' || state.kind !== 'rows' || !state.approved_hash || state.coalesced)
          continue;
        const key: RegistryKey = {
          project_id: projectId,
          ...scope,
          source_table: state.source_table,
          schema_hash: state.approved_hash,
        };
        const rid = registryId(key);
        const review = [...state.reviews]
          .reverse()
          .find((r) => r.status === 'approved' && r.schema_hash === state.approved_hash);
        const r = await this.registries.execute(
          rid,
          {
            type: 'AdoptApproval',
            data: {
              ...key,
              lineage_id,
              review_id: review?.review_id ?? null,
              bindings: state.bindings,
              schema_columns: state.schemas[state.approved_hash] ?? null,
            },
          },
          {
            decision_id: `adopt:${lineage_id}:${uuidv7()}`,
            correlation_id: rid,
            ...(actor ? { actor } : {}),
          },
        );
        entries.add(rid);
        if (r.state.status === 'registered' && r.state.decision?.kind === 'approved') {
          await applyApproval(this.lineages, r.state, lineage_id, {
            causation_id: r.events[0]?.id ?? rid,
            ...(actor ? { actor } : {}),
          });
          moved++;
        }
      }
    }
    return { lineages: moved, entries: entries.size };
  }

  /** Put a device in a fleet (or none): its record, then every lineage of it (fleet filters). */
  async assignFleet(
    input: unknown,
  ): Promise<{ device_id: string; fleet_id: string | null; lineages: number }> {
    const i = parse('device.assign-fleet', input);
    const device = await this.devices.assignFleet(i.project_id, i.device, i.fleet_id);
    if (!device) throw new DomainError('not_found', `device ${i.device} not found in this project`);
    const lineages = await this.devices.lineagesOfDevice(device.device_id);
    let n = 0;
    for (const l of lineages) {
      try {
        const r = await this.lineages.execute(
          l.lineage_id,
          { type: 'AssignFleet', data: { fleet_id: i.fleet_id } },
          { decision_id: `fleet:${uuidv7()}`, ...(i.actor ? { actor: i.actor } : {}) },
        );
        if (r.events.length > 0) n++;
      } catch (err) {
        if (!(isDomainError(err) && err.code === 'lineage_deleted')) throw err;
      }
    }
    return { device_id: device.device_id, fleet_id: i.fleet_id, lineages: n };
  }

  /** NATS request/reply of `edge.cmd.<verb>` for the verbs above. */
  async reply(
    verb: RegistryVerb,
    input: unknown,
    policyOf: (p: string) => Promise<Policy>,
  ): Promise<RegistryReply> {
    try {
      if (verb === 'registry.consolidate') {
        const i = parse(verb, input);
        return { ok: true, ...(await this.consolidate(i.project_id, await policyOf(i.project_id), i.actor)) };
      }
      if (verb === 'device.assign-fleet') return { ok: true, ...(await this.assignFleet(input)) };
      const r = await this.review(verb, input);
      const reviewId = (input as { review_id?: string }).review_id;
      const review =
        r.state.status === 'registered' ? r.state.reviews.find((x) => x.review_id === reviewId) : undefined;
      return {
        ok: true,
        registry_id: r.registry_id,
        version: r.version,
        events: r.events.map((e) => ({ id: e.id, type: e.type })),
        ...(review
          ? {
              review: {
                review_id: review.review_id,
                status: review.status,
                action_version: review.action_version,
              },
            }
          : {}),
      };
    } catch (err) {
      if (isDomainError(err))
        return { ok: false, error: { code: err.code, message: err.message, details: { ...err.details } } };
      return { ok: false, error: { code: 'internal', message: (err as Error).message } };
    }
  }
}
