import Database from 'better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { uuidv7 } from 'uuidv7';
import {
  CONTROL_TOPIC,
  MAX_BATCH_ROWS,
  MAX_PAYLOAD_BYTES,
  parseJsonPayload,
  RECEIPT_TOPIC,
  type Receipt,
  UPLINK_TOPICS,
} from '../domain/protocol/contracts';
import type { AgentConfig } from './config/load';
import { ensureInfra, reconcile, type ReconcileResult, resyncTable, type Strategy } from './capture/install';
import { Journal, type Withheld } from './capture/journal';
import { Retention } from './capture/retention';
import { ControlHandler, type ControlCounters } from './control/handler';
import { agentLogger } from './log';
import type { LaneCounters, LaneDeps } from './publish/lane';
import { MqttLink } from './publish/mqtt-link';
import { RowsLane } from './publish/rows-lane';
import { TelemetryLane } from './publish/telemetry-lane';
import { putUpload } from './publish/upload';
import { StateStore } from './state/state-store';
import { FilterKeys } from './state/filter-keys';
import { SchemaObserver } from './publish/observe';
import { controlApplier } from './agent/controls';
import { type AgentLane, rowsLane, tableStats } from './agent/lanes';
import { reconcileLogger } from './agent/reconcile-log';
import { stepFailure } from './agent/step-failed';
import { telemetryTableUsable } from './agent/telemetry-tables';
import type { AgentHandle, AgentOptions, AgentStats, TableStats } from './agent/types';

export type { AgentHandle, AgentOptions, AgentStats, TableStats } from './agent/types';

/** Ids come from a clock that never goes backwards within the process (UUIDv7). */
const defaultId = () => uuidv7();

export async function startAgent(config: AgentConfig, opts: AgentOptions = {}): Promise<AgentHandle> {
  const rep = config.replication;
  const conn = config.connection;
  const log = opts.logger ?? agentLogger(conn.deviceId);
  const now = opts.now ?? Date.now;
  const newId = opts.newId ?? defaultId;
  const root = conn.rootTopic;

  if (!existsSync(rep.sourceDbPath)) {
    throw new Error(
      `source database ${rep.sourceDbPath} does not exist. The agent captures an existing application ` +
        'database; start the application first or fix sqlite-replication.source_db_path.',
    );
  }
  const state = new StateStore(rep.stateDbPath, () => new Date(now()));
  const stepFailed = stepFailure({ log, state, now, stateDbPath: rep.stateDbPath });
  const db = new Database(rep.sourceDbPath, { fileMustExist: true });
  // The application's writes win: the agent waits briefly for the lock and retries later.
  db.pragma('busy_timeout = 2000');
  const mode = db.pragma('journal_mode', { simple: true }) as string;
  if (mode !== 'wal') {
    log.warn(
      { event: 'source_not_wal', journal_mode: mode },
      'the application database is not in WAL mode: the agent reading the journal will briefly block ' +
        'application writers. PRAGMA journal_mode=WAL on the application side avoids that.',
    );
  }
  ensureInfra(db);
  const journal = new Journal(db, {
    keys: new FilterKeys(state.db),
    filterOf: (t) => rep.tableStrategies[t]?.filter,
  });
  // A read that finds the schema changed reconciles first, in the same flow, then reads.
  journal.onSchemaChanged = () => checkSchema(true);

  const strategyOf = (t: string): Strategy => rep.tableStrategies[t]?.strategy ?? 'rows';
  const counters: LaneCounters = {
    publishedBatches: 0,
    publishedRows: 0,
    resentBatches: 0,
    confirmedBatches: 0,
    confirmedRows: 0,
  };
  const controlCounters: ControlCounters = { received: 0, rejected: 0, applied: 0, stale: 0 };
  const lanes = new Map<string, AgentLane>();
  const rowLanes = () => [...lanes.values()].flatMap((l) => (l.kind === 'rows' ? [l] : []));

  // Created last (after state is restored); lanes and controls reach it through this holder.
  const net: { link?: MqttLink } = {};
  const sender = {
    connected: () => net.link?.connected === true,
    publish: (topic: string, payload: string) => net.link!.publish(topic, payload),
  };
  let wakeScheduled = false;
  const wake = () => {
    if (wakeScheduled) return;
    wakeScheduled = true;
    setImmediate(() => {
      wakeScheduled = false;
      if (stopped) return;
      try {
        pumpAll();
      } catch (err) {
        stepFailed(err, 'pump_failed', 'sending the next batches failed; retrying on the next tick');
      }
    });
  };
  const laneDeps = (topic: string): LaneDeps => ({
    sender,
    topic: `${root}/${topic}`,
    delivery: rep.delivery,
    receiptTimeoutMs: rep.receiptTimeoutMs,
    window: rep.maxInflightBatches,
    log,
    now,
    counters,
    wake,
    failed: stepFailed,
  });
  const maxRows = Math.min(rep.maxBatchRows, MAX_BATCH_ROWS);
  const maxBytes = Math.min(rep.maxBatchBytes, MAX_PAYLOAD_BYTES);
  // The upload flow follows a URL the cloud sends: only a signed, verified url_grant is obeyed,
  // so without signed controls the agent sends everything as batches.
  const uploadsEnabled = config.security.signedControl.enabled;
  const uploadDeps = uploadsEnabled
    ? {
        uploads: {
          requestTopic: `${root}/${UPLINK_TOPICS.request}`,
          resync: (tid: number) => {
            const done = resyncTable(db, tid, newId(), null);
            return done && { through: done.sweepSeq - 1, sweepSeq: done.sweepSeq };
          },
          // An https upload URL is checked against the broker's CA too (the cloud's own CA).
          ...(conn.tls?.caPath
            ? {
                put: (url: string, body: AsyncIterable<Buffer>) =>
                  putUpload(url, body, { ca: readFileSync(conn.tls!.caPath!) }),
              }
            : {}),
        },
      }
    : {};

  const observer = new SchemaObserver({
    state,
    log,
    topic: `${root}/${UPLINK_TOPICS.schema}`,
    sender,
    failed: stepFailed,
  });

  const retention = new Retention({
    journal,
    state,
    limitBytes: rep.localRetentionBytes,
    log,
    newEpoch: newId,
    now,
  });

  // ---- capture: install triggers, keep lanes in line with the registry ----
  const logReconcile = reconcileLogger(log);
  function applyReconcile(res: ReconcileResult): void {
    logReconcile(res);
    for (const reg of res.registry) {
      const st = state.tables.ensure(reg.name, 'rows');
      let lane = rowsLane(lanes.get(reg.name));
      if (st.epoch !== reg.epoch) {
        if (st.epoch !== null) {
          log.warn(
            { event: 'epoch_changed', table: reg.name, old_epoch: st.epoch, journal_epoch: reg.epoch },
            `the journal of ${reg.name} was reinitialised (new journal_epoch); its cursor restarts at commit_seq 1`,
          );
        }
        state.batches.resetEpoch(reg.name, reg.epoch);
        if (lane) {
          lanes.delete(reg.name);
          lane = undefined;
        }
      }
      // The schema as sent (filtered): its first sight and every change go out as an observation.
      const sent = journal.tableSchema(reg.tid);
      if (sent && reg.capturing) observer.note(reg.name, 'rows', sent.hash, sent.fingerprint);
      if (!lane) {
        lane = new RowsLane(
          reg.name,
          {
            ...laneDeps(UPLINK_TOPICS.rows),
            journal,
            state,
            newId,
            maxRows,
            maxBytes,
            uploadsTopic: `${root}/${UPLINK_TOPICS.request}`,
            ...uploadDeps,
          },
          { tid: reg.tid, epoch: reg.epoch, seq: journal.maxSeq(reg.tid) },
        );
        lanes.set(reg.name, lane);
        lane.cleanup();
      } else lane.journaledThrough(journal.maxSeq(reg.tid));
      if (res.changed.includes(reg.name)) lane.resetAnnounced();
    }
    for (const r of res.resyncs) {
      const lane = rowsLane(lanes.get(r.table));
      log.warn(
        {
          event: 'resync',
          table: r.table,
          reason: r.reason,
          resync_id: r.resyncId,
          rows: r.rows,
          first_commit_seq: r.firstSeq,
          sweep_seq: r.sweepSeq,
        },
        `a schema change of ${r.table} (${r.reason}) changed rows without journaling them: every current row ` +
          `(${r.rows}) was journaled again, followed by a sweep, so the cloud converges on the table as it is`,
      );
      if (lane) {
        lane.resetAnnounced();
        if (r.rows > maxRows)
          lane.markForUpload({ epoch: lane.epoch, throughSeq: r.sweepSeq - 1, reason: 'resync' });
      }
    }
    // A first-run snapshot larger than one batch goes through the upload flow.
    for (const [t, n] of Object.entries(res.snapshotted)) {
      const lane = rowsLane(lanes.get(t));
      const reg = res.registry.find((r) => r.name === t);
      if (n > 0 && reg && lane) {
        lane.markForUpload({ epoch: reg.epoch, throughSeq: journal.maxSeq(reg.tid), reason: 'snapshot' });
      }
    }
  }

  let schemaVersion = -1;
  let dataVersion = -1;
  function checkSchema(force = false): void {
    const v = db.pragma('schema_version', { simple: true }) as number;
    if (!force && v === schemaVersion) return;
    const res = reconcile(db, { strategyOf, snapshotOnFirstRun: rep.snapshotOnFirstRun, newEpoch: newId });
    // The version the reconcile saw at its end, inside its IMMEDIATE transaction: a DDL after it
    // is seen by the next read.
    schemaVersion = res.schemaVersion;
    reportWithheld(journal.setRegistry(res.registry, res.schemaVersion));
    dataVersion = -1;
    applyReconcile(res);
    for (const l of lanes.values()) {
      if (l.kind !== 'telemetry') continue;
      l.refreshSchema();
      const sent = l.sentSchema;
      if (sent) observer.note(l.table, 'telemetry', sent.hash, sent.fingerprint);
    }
  }
  const reportedWithheld = new Map<string, string>();
  function reportWithheld(withheld: readonly Withheld[]): void {
    for (const w of withheld) {
      const why = w.problems.map((p) => `${p.field}: ${p.message}`).join('; ');
      if (reportedWithheld.get(w.table) === why) continue;
      reportedWithheld.set(w.table, why);
      log.error(
        { event: 'table_withheld', table: w.table, problems: w.problems },
        `the filters of ${w.table} cannot apply to its schema now (${why}): nothing of ${w.table} is sent, ` +
          'its changes stay journaled on the device. Fix table_strategies in the config (sluice-agent validate ' +
          'checks it) or the schema; sending resumes after the next restart or schema change.',
      );
    }
    for (const t of [...reportedWithheld.keys()])
      if (!withheld.some((w) => w.table === t)) reportedWithheld.delete(t);
  }
  function refreshCounters(): void {
    const v = db.pragma('data_version', { simple: true }) as number;
    if (v === dataVersion) return;
    dataVersion = v;
    for (const c of journal.counters()) {
      rowsLane(lanes.get(c.name))?.setCounter(c.tid, c.seq);
    }
  }

  checkSchema(true);

  for (const [table, s] of Object.entries(rep.tableStrategies)) {
    if (s.strategy !== 'telemetry') continue;
    if (!telemetryTableUsable(db, log, table, s)) continue;
    state.tables.ensure(table, 'telemetry');
    const lane = new TelemetryLane(table, {
      ...laneDeps(UPLINK_TOPICS.telemetry),
      db,
      state,
      newId,
      maxRows,
      maxBytes,
      timestampColumn: s.timestampColumn!,
      ...(s.filter ? { filter: s.filter } : {}),
    });
    lanes.set(table, lane);
    const sent = lane.sentSchema;
    if (sent) observer.note(table, 'telemetry', sent.hash, sent.fingerprint);
  }

  // ---- downlinks ----
  const applyControl = controlApplier({
    db,
    state,
    log,
    lanes,
    newId,
    maxRows,
    uploadsEnabled,
    checkSchema: () => checkSchema(),
    journaled: () => {
      dataVersion = -1;
    },
  });
  const controls = new ControlHandler(
    state,
    {
      ack: (id) =>
        net.link!.publish(
          `${root}/${UPLINK_TOPICS.ack}`,
          JSON.stringify({ format_version: 1, control_id: id }),
        ),
      apply: applyControl,
      connected: () => net.link?.connected === true,
    },
    log,
    config.security.signedControl.enabled ? config.security.signedControl.publicKey : undefined,
    controlCounters,
    root,
  );
  controls.applyPending();

  function onReceipt(payload: Buffer): void {
    const parsed = parseJsonPayload(payload);
    const r = parsed.ok ? (parsed.value as Receipt) : undefined;
    if (!r || typeof r.batch_id !== 'string' || typeof r.source_table !== 'string') {
      log.warn({ event: 'receipt_invalid' }, 'unreadable receipt ignored');
      return;
    }
    const lane = lanes.get(r.source_table);
    if (!lane?.onReceipt(r)) {
      log.debug(
        { event: 'receipt_unknown', batch_id: r.batch_id, table: r.source_table },
        'receipt for no in-flight batch',
      );
    }
  }

  // ---- the loop ----
  let stopped = false;
  // The first flush runs at once: a restarted device catches up without waiting an interval.
  let nextFlushAt = now();
  function pumpAll(): void {
    refreshCounters();
    observer.pump();
    for (const l of lanes.values()) l.pump();
  }
  function tick(): void {
    if (stopped) return;
    try {
      checkSchema();
      refreshCounters();
      const t = now();
      if (t >= nextFlushAt) {
        nextFlushAt = t + rep.flushIntervalMs;
        for (const l of lanes.values()) l.drain();
        retention.enforce(rowLanes());
      }
      for (const l of lanes.values()) {
        if (l.kind === 'rows') l.cleanup();
        l.resendOverdue();
        l.pump();
      }
    } catch (err) {
      stepFailed(err, 'tick_failed', 'flush step failed; retrying on the next tick');
    }
  }

  const link = new MqttLink(
    conn,
    [`${root}/${CONTROL_TOPIC}`, `${root}/${RECEIPT_TOPIC}`],
    {
      onUp: () => {
        try {
          controls.reackPending();
          observer.pump();
          for (const l of lanes.values()) l.resendAll();
          pumpAll();
        } catch (err) {
          stepFailed(
            err,
            'catch_up_failed',
            'catching up after connecting failed; retrying on the next tick',
          );
        }
      },
      onDown: () => undefined,
      onMessage: (topic, payload) => {
        try {
          if (topic === `${root}/${RECEIPT_TOPIC}`) onReceipt(payload);
          else if (topic === `${root}/${CONTROL_TOPIC}`) controls.onMessage(payload);
        } catch (err) {
          stepFailed(err, 'message_failed', 'could not handle a downlink; the cloud sends it again');
        }
      },
    },
    log,
    opts.backoff,
  );
  net.link = link;
  link.start();
  const poll = setInterval(tick, opts.pollIntervalMs ?? Math.min(100, rep.flushIntervalMs));

  log.info(
    {
      event: 'started',
      root_topic: root,
      delivery: rep.delivery,
      tables: [...lanes.keys()],
      signed_control: config.security.signedControl.enabled,
    },
    'sluice-agent started',
  );

  return {
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(poll);
      await link.stop();
      db.close();
      state.close();
      log.info({ event: 'stopped' }, 'sluice-agent stopped');
    },
    async flushNow() {
      if (stopped) return;
      checkSchema();
      for (const l of lanes.values()) l.drain();
      pumpAll();
    },
    stats(): AgentStats {
      const tables: Record<string, TableStats> = {};
      for (const [name, l] of lanes) {
        tables[name] = tableStats(l);
      }
      return {
        ...counters,
        connected: net.link?.connected === true,
        controls: { ...controlCounters },
        dropped_rows: retention.droppedRows,
        tables,
      };
    },
  };
}
