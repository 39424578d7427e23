/**
 * Worker of runtime/quant/gptq_pool.ts: GPTQ for one layer (runtime/quant/gptq.ts), off the
 * main thread so that the layers of a large model round on every core. It needs no plugin:
 * the grid carries the values the codes decode to.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { type GptqJob, runGptqJob } from "./gptq_pool.ts";

self.onmessage = (e: MessageEvent<GptqJob>) => {
  try {
    const r = runGptqJob(e.data);
    self.postMessage(r, { transfer: [r.codes.buffer as ArrayBuffer] });
  } catch (err) {
    self.postMessage({ id: e.data.id, error: (err as Error).message });
  }
};
