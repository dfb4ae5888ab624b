import type { NatsConnection } from '@nats-io/transport-node';
import {
  type ConsumerConfig,
  type ConsumerMessages,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { Logger } from '../log';

export type DurableConsumerOptions = Readonly<{
  nc: NatsConnection;
  stream: string;
  config: Partial<ConsumerConfig> & { durable_name: string };
  /** Handles one message; it acks, naks or terms it itself. */
  handle: (m: JsMsg) => Promise<void>;
  /**
   * Hand-off mode only: handles every message that arrived while the previous call ran, in
   * delivery order, so a handler can decide several at once. Each is acked, nak'ed or termed by it.
   */
  handleMany?: (ms: JsMsg[]) => Promise<void>;
  log: Logger;
  what: string;
  maxMessages?: number;
  /**
   * Pull in bounded fetches and handle every fetched message before stopping, so a consumer handed
   * to another process (a partition) leaves nothing delivered-but-unhandled to wait out ack_wait.
   * Stopping then takes up to one fetch's expiry. Otherwise messages stream in (`consume`).
   */
  handOff?: boolean;
}>;

/** How long one hand-off fetch waits for messages; also the longest a hand-off stop waits. */
const HANDOFF_FETCH_MS = 1_000;
/** A hand-off fetch silent this long (no message, no end) has lost its pull request. */
const FETCH_SILENT_MS = HANDOFF_FETCH_MS + 4_000;
/**
 * How long each pull request of a streaming consumer lives. After a reconnect the client checks
 * the consumer and, while that fails (a cluster still electing leaders after a node died), tries
 * again every `expires`: the library's 30 s default kept uplinks stalled for up to a minute.
 */
const CONSUME_EXPIRES_MS = 5_000;

/**
 * A durable pull consumer processed one message at a time, shared by any number of processes.
 * An error re-enters the consume loop (server restart, consumer recreated) instead of ending it.
 */
export class DurableConsumer {
  private messages: ConsumerMessages | undefined;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: DurableConsumerOptions) {}

  async start(): Promise<void> {
    const { nc, stream, config } = this.opts;
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(stream, config).catch(async (err: unknown) => {
      // It exists with another config (another ack_wait, say): keep the existing one.
      if (!(await jsm.consumers.info(stream, config.durable_name).catch(() => undefined))) throw err;
    });
    this.running = true;
    this.loop = this.run();
  }

  get isRunning(): boolean {
    return this.running;
  }

  async stop(): Promise<void> {
    this.running = false;
    if (!this.opts.handOff) await this.messages?.close();
    await this.loop;
  }

  /**
   * Handle a fetch's messages as they come; with handleMany, what queued up meanwhile goes together.
   *
   * A fetch ends with the server's answer at its expiry. The client's own heartbeat check does not
   * survive every reconnect: when the consumer cannot be looked up right after one (a cluster
   * still electing leaders after a node died), the fetch waits for an answer that never comes and
   * the partition would stall until the process restarts. So a fetch that neither yields a message
   * nor ends for FETCH_SILENT_MS is stopped with an error and the loop fetches again: nothing it
   * was sent is lost (unacked messages are redelivered after ack_wait).
   */
  private async drain(batch: ConsumerMessages): Promise<void> {
    const queued: JsMsg[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    let failed: unknown;
    let watchdog: NodeJS.Timeout | undefined;
    const watch = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(
        () => batch.stop(new Error(`fetch unanswered for ${FETCH_SILENT_MS} ms`)),
        FETCH_SILENT_MS,
      );
    };
    const reader = (async () => {
      watch();
      try {
        for await (const m of batch) {
          watch();
          queued.push(m);
          wake?.();
        }
      } catch (err) {
        failed = err; // rethrown below, never left as an unhandled rejection while a step runs
      } finally {
        clearTimeout(watchdog);
        done = true;
        wake?.();
      }
    })();
    const many = this.opts.handleMany;
    for (;;) {
      if (queued.length === 0) {
        if (done) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      if (many) await many(queued.splice(0));
      else await this.opts.handle(queued.shift()!);
    }
    await reader;
    if (failed) throw failed;
  }

  private async run(): Promise<void> {
    const js = jetstream(this.opts.nc);
    while (this.running) {
      try {
        const consumer = await js.consumers.get(this.opts.stream, this.opts.config.durable_name);
        if (this.opts.handOff) {
          while (this.running) {
            const batch = await consumer.fetch({
              max_messages: this.opts.maxMessages ?? 128,
              expires: HANDOFF_FETCH_MS,
            });
            await this.drain(batch);
          }
          break;
        }
        this.messages = await consumer.consume({
          max_messages: this.opts.maxMessages ?? 256,
          expires: CONSUME_EXPIRES_MS,
        });
        for await (const m of this.messages) {
          await this.opts.handle(m);
          if (!this.running) break;
        }
      } catch (err) {
        if (!this.running) break;
        this.opts.log.warn(
          { err: (err as Error).message },
          `${this.opts.what} consume loop failed; restarting`,
        );
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}
