/**
 * Text-to-image with a FLUX transformer, as diffusers' FluxPipeline runs it: precomputed
 * T5 (`prompt_embeds`) and pooled CLIP (`pooled_prompt_embeds`) embeddings, the guidance
 * embedder fed the guidance scale (FLUX.1-dev) or nothing (schnell), flow-matching Euler
 * on sigmas linspace(1, 1/N, N) shifted by the scheduler (dynamic μ from the image
 * sequence length, or a fixed shift), the model fed t / 1000. True classifier-free
 * guidance (`trueCfg` > 1 with negative embeddings) is optional and off by default.
 *
 * Latents are unpacked [B, C, H, W] (C = in_channels / 4) in and out; the 2×2 packing and
 * the position ids are the model's business.
 *
 * @module
 */
import type { Runtime } from "../../runtime/gpu/device.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import { Prng } from "../../runtime/io/prng.ts";
import type { GenerateResult, SampledRequest } from "../../runtime/pipeline.ts";
import {
  calculateShift,
  type FlowEulerConfig,
  FlowEulerGpu,
  fluxSigmas,
} from "../../runtime/sampling/flow_euler.ts";
import { type Denoiser, sampleLoop } from "../../runtime/sampling/generate.ts";
import type { FluxModel } from "./flux.ts";
import { fluxModelTime } from "./flux_time.ts";

/** Default latent height and width: 128 (1024 px through the VAE's factor 8). */
export const FLUX_DEFAULT_LATENT_SIZE = 128;

/** μ of the FLUX pipeline for an image sequence length, from the scheduler's config. */
export function fluxMu(imageSeqLen: number, s: FlowEulerConfig): number {
  return calculateShift(
    imageSeqLen,
    s.baseImageSeqLen ?? 256,
    s.maxImageSeqLen ?? 4096,
    s.baseShift ?? 0.5,
    s.maxShift ?? 1.15,
  );
}

/** The flow-matching sampler FluxPipeline sets up for `steps` steps at an H×W latent. */
export function fluxSampler(
  steps: number,
  scheduler: FlowEulerConfig,
  height: number,
  width: number,
): FlowEulerGpu {
  const mu = fluxMu((height / 2) * (width / 2), scheduler);
  return new FlowEulerGpu(steps, scheduler, { sigmas: fluxSigmas(steps), mu });
}

/**
 * Runs a FLUX generation request (see the module doc); called by `Pipeline.generate`, which
 * keeps `stepTimes` (sampleLoop's) across requests.
 */
export async function generateFlux(
  rt: Runtime,
  model: FluxModel,
  scheduler: FlowEulerConfig,
  req: SampledRequest,
  stepTimes?: Map<string, number>,
): Promise<GenerateResult> {
  const t0 = performance.now();
  const c = model.config;
  const { steps, sampler } = req;
  if (sampler !== "flow-euler") {
    throw new TypeError(`FLUX models sample with flow-euler, not ${sampler}`);
  }
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000) {
    throw new RangeError(`steps must be an integer in [1, 1000], got ${steps}`);
  }
  const guidance = req.guidance; // the dev guidance embedder's input
  const trueCfg = req.trueCfg ?? 1;
  for (const [k, v] of [["guidance", guidance], ["trueCfg", trueCfg]] as const) {
    if (!Number.isFinite(v) || v < 0) {
      throw new RangeError(`${k} must be a finite number ≥ 0, got ${v}`);
    }
  }
  const emb = req.captionEmbeds;
  if (!emb) {
    throw new TypeError(
      "FLUX models take precomputed embeddings: prompt_embeds (--caption-embeds) and " +
        "pooled_prompt_embeds (--pooled-embeds)",
    );
  }
  const [B, L, J] = emb.shape;
  if (J !== c.jointAttentionDim) {
    throw new RangeError(
      `prompt_embeds have ${J} channels, the model takes ${c.jointAttentionDim}`,
    );
  }
  const P = c.pooledProjectionDim;
  if (!emb.pooled) throw new TypeError("FLUX models need pooled_prompt_embeds (--pooled-embeds)");
  if (emb.pooled.length !== B * P) {
    throw new RangeError(
      `pooled_prompt_embeds must be [${B}, ${P}], got ${emb.pooled.length} values`,
    );
  }
  // diffusers: do_true_cfg = true_cfg_scale > 1 and a negative prompt is given.
  const guided = trueCfg > 1 && emb.negative !== undefined;
  if (guided && !emb.negative!.pooled) {
    throw new TypeError("True CFG needs negative_pooled_prompt_embeds");
  }
  const H = req.height ?? FLUX_DEFAULT_LATENT_SIZE;
  const W = req.width ?? FLUX_DEFAULT_LATENT_SIZE;
  for (const [k, v] of [["height", H], ["width", W]] as const) {
    if (!Number.isInteger(v) || v < 2 || v % 2) {
      throw new RangeError(`${k} must be a positive even number of latent cells, got ${v}`);
    }
  }
  const C = c.latentChannels;
  if (c.latentOutChannels !== C) {
    throw new RangeError(
      `out_channels ${c.outChannels} differs from in_channels ${c.inChannels}: cannot sample`,
    );
  }
  const encodeMs = performance.now() - t0;

  // Conditioning rows: [negative, positive] under true CFG, as the guidance helpers expect.
  const rows = guided ? 2 * B : B;
  const embeds = new Float32Array(rows * L * J);
  const pooled = new Float32Array(rows * P);
  if (guided) {
    embeds.set(emb.negative!.embeds, 0);
    embeds.set(emb.embeds, B * L * J);
    pooled.set(emb.negative!.pooled!, 0);
    pooled.set(emb.pooled, B * P);
  } else {
    embeds.set(emb.embeds);
    pooled.set(emb.pooled);
  }
  const dt = model.dtype;
  const embT = uploadTensor(rt, embeds, [rows, L, J], dt);
  const poolT = uploadTensor(rt, pooled, [rows, P], dt);
  const rec = new Recorder(rt, "conditioning");
  const cond = model.prepare(
    rec,
    embT,
    poolT,
    c.guidanceEmbeds ? new Array(rows).fill(guidance) : undefined,
    { cfgPair: guided },
  );
  await rec.submit();
  embT.release();
  poolT.release();

  const n = B * C * H * W;
  let noise = req.latents;
  if (noise && noise.length !== n) {
    cond.release();
    throw new RangeError(
      `latents must hold [${B}, ${C}, ${H}, ${W}] = ${n} values, got ${noise.length}`,
    );
  }
  noise ??= new Prng(req.seed ?? 0).normals(n);
  const lat = uploadTensor(rt, noise, [B, C, H, W]);
  const denoiser: Denoiser = {
    inChannels: C,
    outChannels: C,
    dtype: dt,
    forward: (r, x, t, step) => model.forward(r, x, t, cond, step),
    // FluxPipeline passes t.to(latents.dtype) / 1000; the model multiplies by 1000 again.
    modelTime: (t) => fluxModelTime(t, dt),
  };
  try {
    const { latents, stepMs, profile } = await sampleLoop(rt, denoiser, lat, {
      sampler: fluxSampler(steps, scheduler, H, W),
      guidance: guided ? trueCfg : 1,
      signal: req.signal,
      onStep: req.onStep,
      onSubmitted: req.onSubmitted,
      inFlight: req.inFlight,
      stepTimes,
      profileStep: req.profileStep,
    });
    const host = await readTensor(rt, latents);
    latents.release();
    return {
      latents: host,
      shape: [B, C, H, W],
      unknownWords: [],
      timings: { encodeMs, stepMs, totalMs: performance.now() - t0 },
      ...(profile ? { profile } : {}),
    };
  } finally {
    lat.release();
    cond.release();
  }
}
