import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ControlDispatcher } from '../../bridge/downlink/dispatcher';
import { UplinkBridge } from '../../bridge/uplink/bridge';
import { type Env, topicProjects } from '../../infra/config/env';
import { uploadUrl } from '../../infra/uploads/token';
import { connectNats, type RoleHandle, type Shared } from './shared';

/**
 * Unique per bridge (two on one id take each other's session) and stable across restarts of the
 * same bridge (its persistent session holds the uplinks it had not acked): the host name, or
 * SLUICE_BRIDGE_ID where several bridges share a host. docs/scale-out.md.
 */
export function bridgeClientId(env: Env): string {
  if (env.SLUICE_BRIDGE_CLIENT_ID) return env.SLUICE_BRIDGE_CLIENT_ID;
  const id = env.SLUICE_BRIDGE_ID ?? hostname().replace(/[^A-Za-z0-9_-]/g, '-');
  return `sluice-bridge-${id}`;
}

/** The bridge's TLS material for the broker (files read once, at start). */
function mqttTls(env: Env): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(env.SLUICE_MQTT_TLS_CA ? { ca: readFileSync(env.SLUICE_MQTT_TLS_CA) } : {}),
    ...(env.SLUICE_MQTT_TLS_CERT ? { cert: readFileSync(env.SLUICE_MQTT_TLS_CERT) } : {}),
    ...(env.SLUICE_MQTT_TLS_KEY ? { key: readFileSync(env.SLUICE_MQTT_TLS_KEY) } : {}),
  };
}

/** The bridge role: MQTT → JetStream ingress and receipts; controls → MQTT. */
export async function startBridge(env: Env, shared: Shared): Promise<RoleHandle> {
  const { nc, registry, commands, handler, signingKey, uploadKey, uploadBase, log, metrics } = shared;
  const bridge = new UplinkBridge({
    nc,
    mqttUrl: env.SLUICE_MQTT_URL,
    clientId: bridgeClientId(env),
    uplinks: env.SLUICE_BRIDGE_UPLINKS,
    ...(env.SLUICE_MQTT_USERNAME
      ? { username: env.SLUICE_MQTT_USERNAME, password: env.SLUICE_MQTT_PASSWORD ?? '' }
      : {}),
    ...(env.SLUICE_MQTT_TLS_CA || env.SLUICE_MQTT_TLS_CERT ? { tls: mqttTls(env) } : {}),
    projectOf: topicProjects(env),
    // Pings every 2 s: a reader stalled by an undeliverable subject is noticed within ~6 s.
    uplinkConnection: () =>
      connectNats(env, log, 'sluice-bridge-uplinks', { pingInterval: 2_000, maxPingOut: 2 }),
    log,
    metrics,
  });
  await bridge.start();
  if (!signingKey)
    log.warn(
      'no SLUICE_CONTROL_SIGNING_KEY: controls go out unsigned, and agents that verify signatures will drop them',
    );
  const dispatcher = new ControlDispatcher({
    nc,
    registry,
    commands: commands,
    publish: (topic, body) => bridge.publishToDevice(topic, body),
    deviceKeyOf: async (lineageId) => {
      const { state } = await handler.load(lineageId);
      return state.status === 'registered' && state.topic_slug !== null
        ? `${state.topic_slug}/${state.device_name}`
        : undefined;
    },
    ...(signingKey ? { signingKey } : {}),
    ...(uploadKey ? { uploadUrl: (claims) => uploadUrl(uploadBase, claims, uploadKey) } : {}),
    log,
  });
  await dispatcher.start();
  return {
    stop: async () => {
      await dispatcher.stop();
      await bridge.stop();
    },
  };
}
