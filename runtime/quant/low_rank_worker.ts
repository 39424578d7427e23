/**
 * Worker of runtime/quant/low_rank_pool.ts: one step of a layer's hessian low-rank fit (H's
 * factor, or the branch of one round), off the main thread.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { type LowRankJob, type LowRankReply, runLowRankJob } from "./low_rank_pool.ts";

self.onmessage = (e: MessageEvent<LowRankJob>) => {
  try {
    const r = runLowRankJob(e.data);
    const buf = "c" in r ? r.c.buffer : r.b.buffer;
    self.postMessage(r satisfies LowRankReply, { transfer: [buf as ArrayBuffer] });
  } catch (err) {
    self.postMessage({ error: (err as Error).message } satisfies LowRankReply);
  }
};
