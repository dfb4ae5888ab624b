/** One broker address as mqtt.js's `servers` option takes it. */
export type BrokerServer = Readonly<{ host: string; port: number; protocol: BrokerProtocol }>;
type BrokerProtocol = 'mqtt' | 'mqtts' | 'tcp' | 'ssl';

const URL_FORM = /^(mqtt|mqtts|tcp|ssl|tls):\/\/[^/]+/;
const TLS_PROTOCOLS: readonly string[] = ['mqtts', 'ssl', 'tls'];

/** `a,b,c` (a setting or the agent's `server_url`) as a list of URLs; blanks dropped. */
export function splitBrokerUrls(list: string): string[] {
  return list
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
}

/** The URLs in a list that are not broker URLs like mqtt://host:1883 (empty when all are). */
export function badBrokerUrls(list: string): string[] {
  return splitBrokerUrls(list).filter((u) => !URL_FORM.test(u) || !parses(u));
}

export const anyTls = (list: string): boolean =>
  splitBrokerUrls(list).some((u) => TLS_PROTOCOLS.includes(u.split(':')[0] ?? ''));

/**
 * The brokers in the order a client tries them: the first at start, then mqtt.js moves to the
 * next one at every reconnect (round robin), so a dead node costs one failed connect. To spread a
 * fleet over the nodes, give devices the list in different orders.
 */
export function brokerServers(list: string): BrokerServer[] {
  const servers = splitBrokerUrls(list).map((u): BrokerServer => {
    const url = new URL(u);
    const scheme = url.protocol.replace(/:$/, '');
    // mqtt.js reads `tls:` only from URLs; it is the same transport as `ssl:`.
    const protocol = (scheme === 'tls' ? 'ssl' : scheme) as BrokerProtocol;
    const port = url.port ? Number(url.port) : TLS_PROTOCOLS.includes(protocol) ? 8883 : 1883;
    return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port, protocol };
  });
  if (servers.length === 0) throw new Error('no broker URL given');
  return servers;
}

function parses(u: string): boolean {
  try {
    return new URL(u).hostname !== '';
  } catch {
    return false;
  }
}
