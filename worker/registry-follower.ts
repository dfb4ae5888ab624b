import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import { uuidv7 } from 'uuidv7';
import type { RegisteredEntry } from '../domain/registry/state';
import { isDomainError } from '../domain/shared/errors';
import { DurableConsumer } from '../infra/nats/durable-consumer';
import { STREAMS } from '../infra/nats/names';
import { type RegistryCommit, decodeRegistryCommit } from '../infra/nats/registry-events';
import type { Logger } from '../infra/log';
import type { LineageCommandHandler } from './handler';
import type { RegistryCommandHandler } from './registry-handler';
import type { PolicySource } from './commands';
import type { Policy } from '../domain/policy/policy';

export const REGISTRY_FOLLOWER = 'sluice-registry-follower';

/**
 * Carries a registry entry's approval to every lineage enrolled in it. A message is acked only
 * once each of its lineages has the approval appended, so a worker that dies half-way leaves the
 * rest for the redelivery
 * (the lineage decider ignores an approval it already took).
 */
export class RegistryFollower {
  private readonly consumer: DurableConsumer;

  constructor(
    private readonly opts: {
      nc: NatsConnection;
      lineages: LineageCommandHandler;
      registries: RegistryCommandHandler;
      log: Logger;
      /** The project's policy, for the data points an approval of telemetry creates. */
      policies?: PolicySource;
    },
  ) {
    this.consumer = new DurableConsumer({
      nc: opts.nc,
      stream: STREAMS.registry,
      config: {
        durable_name: REGISTRY_FOLLOWER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 60_000_000_000,
        max_ack_pending: 100,
      },
      handle: (m) => this.process(m),
      log: opts.log,
      what: 'registry follower',
    });
  }

  start(): Promise<void> {
    return this.consumer.start();
  }

  stop(): Promise<void> {
    return this.consumer.stop();
  }

  private async process(m: JsMsg): Promise<void> {
    let commit: RegistryCommit;
    try {
      commit = decodeRegistryCommit(m.data);
    } catch {
      this.opts.log.error({ seq: m.seq }, 'undecodable registry message skipped (term)');
      m.term();
      return;
    }
    try {
      await this.follow(commit);
      m.ack();
    } catch (err) {
      this.opts.log.warn(
        { err: (err as Error).message, registry_id: commit.registry_id },
        'registry approval not carried to every lineage yet; will retry',
      );
      m.nak(1000);
    }
  }

  /**
   * Only approvals fan out. A lineage enrolls only while the entry is undecided (an approved entry
   * takes no enrollment; the enrolling worker applies the approval itself), so every lineage that
   * waits is in `lineages` when the approval message is handled.
   */
  private async follow(commit: RegistryCommit): Promise<void> {
    const approval = commit.events.find(
      (e) => e.type === 'RegistryReviewApproved' || e.type === 'RegistryApprovalAdopted',
    );
    if (!approval) return;
    const { state } = await this.opts.registries.load(commit.registry_id);
    if (state.status !== 'registered' || state.decision?.kind !== 'approved') return;
    const policy = await this.opts.policies?.policy(state.project_id);
    for (const lineageId of state.lineages) {
      await applyApproval(this.opts.lineages, state, lineageId, {
        causation_id: approval.id,
        ...(policy ? { policy } : {}),
        ...(approval.metadata.actor ? { actor: approval.metadata.actor } : {}),
      });
    }
  }
}

/** Append the entry's approval to one lineage (no-op when it has it or does not wait for it). */
export async function applyApproval(
  lineages: LineageCommandHandler,
  entry: RegisteredEntry,
  lineageId: string,
  meta: { causation_id: string; actor?: string; policy?: Policy },
): Promise<void> {
  if (entry.decision?.kind !== 'approved') return;
  try {
    await lineages.execute(
      lineageId,
      {
        type: 'ApplyRegistryApproval',
        data: {
          registry_id: entry.registry_id,
          review_id: entry.decision.review_id,
          schema_hash: entry.schema_hash,
          scope: entry.scope,
          scope_id: entry.scope_id,
          bindings: entry.decision.bindings,
          replay_id: uuidv7(),
          ...(meta.policy ? { policy: meta.policy } : {}),
        },
      },
      {
        decision_id: `registry:${entry.registry_id}`,
        causation_id: meta.causation_id,
        correlation_id: entry.registry_id,
        ...(meta.actor ? { actor: meta.actor } : {}),
      },
    );
  } catch (err) {
    // A lineage deleted since it enrolled has nothing left to approve.
    if (isDomainError(err) && (err.code === 'lineage_deleted' || err.code === 'not_found')) return;
    throw err;
  }
}
