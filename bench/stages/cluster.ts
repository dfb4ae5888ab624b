/**
 * The full system on a 3-node JetStream cluster: Sluice's streams and the MQTT listener's own at
 * R3, one of each role, the agent and the roles given every node's URL. The same stage as the
 * single-server `full.sustained` (1 device, then freshness at half its rate), named
 * `full.sustained.cluster`; `cluster/single` on the ratios line is its rows/s over the single
 * server's, measured in the same run.
 */
import { startNatsCluster } from '../../tests/support/nats-cluster';
import { onCleanup } from '../lib/cleanup';
import { type Ctx, natsTracked, type StageResult } from '../lib/context';
import { PeakRss, type Tracked } from '../lib/rss';
import { fullSystem, startCloud } from './full';

export async function clusterFull(
  ctx: Ctx,
  size: number,
  sharedTracked: readonly Tracked[],
): Promise<StageResult[]> {
  const cluster = await startNatsCluster();
  const forgetCluster = onCleanup(() => cluster.stop());
  try {
    const cctx: Ctx = {
      ...ctx,
      nats: { url: cluster.urls, mqttUrl: cluster.mqttUrls },
      streamReplicas: 3,
      rss: new PeakRss([...cluster.nodes.map((n) => natsTracked(n, n.name)), ...sharedTracked]),
    };
    const cloud = await startCloud(cctx, await ctx.createDatabase(`read_cluster_${ctx.profile}`));
    const forgetCloud = onCleanup(() => cloud.stop());
    try {
      const { results, device, agents } = await fullSystem(cctx, cloud, size, 1);
      await agents?.stop();
      device?.db.close();
      return results;
    } finally {
      await cloud.stop();
      forgetCloud();
    }
  } finally {
    await cluster.stop();
    forgetCluster();
  }
}
