import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/load';
import { backoffDelay } from '../../infra/backoff';
import { anyTls, brokerServers } from '../../infra/config/brokers';

export type Backoff = Readonly<{ minMs: number; maxMs: number }>;

export type LinkEvents = Readonly<{
  /** Connected and subscribed to control and receipt topics. */
  onUp: () => void;
  onDown: () => void;
  onMessage: (topic: string, payload: Buffer) => void;
}>;

/**
 * One MQTT 3.1.1 connection with a persistent session (clean=false, stable client id), so the
 * broker queues controls and receipts while the device is away. Reconnects with capped
 * exponential backoff; mqtt.js's own fixed-period reconnect is off. With several broker URLs
 * (cluster nodes sharing sessions), each reconnect tries the next one.
 */
export class MqttLink {
  private client: MqttClient | undefined;
  private stopping = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private up = false;

  constructor(
    private readonly conn: AgentConfig['connection'],
    private readonly subscriptions: readonly string[],
    private readonly events: LinkEvents,
    private readonly log: Logger,
    private readonly backoff: Backoff = { minMs: 200, maxMs: 10_000 },
  ) {}

  get connected(): boolean {
    return this.up && this.client?.connected === true;
  }

  start(): void {
    const tls = this.conn.tls;
    if (tls?.caPath === undefined && anyTls(this.conn.serverUrl))
      this.log.warn(
        { event: 'tls_without_ca' },
        'TLS without connection.mqtt.tls.ca_env: the broker is checked against the system CAs only',
      );
    const options: IClientOptions = {
      clientId: this.conn.clientId,
      clean: false,
      protocolVersion: 4,
      keepalive: this.conn.keepaliveSec,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      resubscribe: false,
      ...(this.conn.username !== undefined ? { username: this.conn.username } : {}),
      ...(this.conn.password !== undefined ? { password: this.conn.password } : {}),
      ...tlsFiles(tls),
    };
    const servers = brokerServers(this.conn.serverUrl);
    const client = mqtt.connect({ ...options, ...servers[0], servers });
    this.client = client;
    client.on('connect', (ack) => {
      this.attempt = 0;
      this.log.info(
        {
          event: 'mqtt_connected',
          session_present: ack.sessionPresent,
          client_id: this.conn.clientId,
          broker: `${client.options.host ?? ''}:${client.options.port ?? ''}`,
        },
        'connected to the broker',
      );
      client
        .subscribeAsync(
          this.subscriptions.map((t) => t),
          { qos: 1 },
        )
        .then(
          () => {
            if (!client.connected) return;
            this.up = true;
            // Its own failures are the agent's (a full disk, say), not the subscription's: they
            // must not tear the connection down and loop through reconnects.
            this.events.onUp();
          },
          (err: Error) => {
            this.log.error(
              { event: 'mqtt_subscribe_failed', err: err.message },
              'subscribe failed; reconnecting',
            );
            client.end(true);
          },
        )
        .catch((err: Error) => {
          this.log.error(
            { event: 'link_up_failed', err: err.message },
            'catching up after connecting failed; retrying on the next tick',
          );
        });
    });
    client.on('message', (topic, payload) => this.events.onMessage(topic, payload));
    client.on('error', (err) => {
      this.log.warn({ event: 'mqtt_error', err: err.message }, 'MQTT connection error');
    });
    client.on('close', () => {
      const wasUp = this.up;
      this.up = false;
      if (wasUp) {
        this.log.warn(
          { event: 'mqtt_disconnected' },
          'lost the broker; still capturing changes into the journal, will reconnect',
        );
        this.events.onDown();
      }
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopping || this.timer) return;
    const delay = Math.round(
      backoffDelay(this.attempt, { baseMs: this.backoff.minMs, maxMs: this.backoff.maxMs, jitter: 0.2 }),
    );
    this.attempt = Math.min(this.attempt + 1, 20);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopping || !this.client || this.client.connected) return;
      // Certificate files are read again at every connect: a device rotated to a new certificate
      // (docs/security.md, "Rotation") uses it from its next connection on, without a restart.
      try {
        Object.assign(this.client.options, tlsFiles(this.conn.tls));
      } catch (err) {
        this.log.warn(
          { event: 'tls_files_unreadable', err: (err as Error).message },
          'could not read the TLS files again; reconnecting with the ones read before',
        );
      }
      this.log.debug({ event: 'mqtt_reconnect', attempt: this.attempt }, 'reconnecting');
      this.client.reconnect();
    }, delay);
  }

  /** QoS 1 publish; resolves on PUBACK. Rejects if the client gives up on the packet. */
  publish(topic: string, payload: string): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error('not started'));
    return client.publishAsync(topic, payload, { qos: 1 }).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const client = this.client;
    if (!client) return;
    this.up = false;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        client.end(true, {}, () => resolve());
      }, 2000);
      client.end(false, {}, () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

function tlsFiles(tls: AgentConfig['connection']['tls']): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(tls?.caPath ? { ca: readFileSync(tls.caPath) } : {}),
    ...(tls?.certPath ? { cert: readFileSync(tls.certPath) } : {}),
    ...(tls?.keyPath ? { key: readFileSync(tls.keyPath) } : {}),
  };
}
