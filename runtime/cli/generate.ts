/**
 * `deno task generate`: a prompt (or precomputed caption embeddings) to a PNG, per the
 * CLI contract in ARCHITECTURE.md.
 *
 * @module
 */
import { TEXT_WEIGHTS } from "../../plugins/models/text_weights.ts";
import { ADAPTER_CHOICES, type AdapterChoice, createRuntime } from "../gpu/device.ts";
import { tensorToImage, writePng } from "../io/png.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { loadPipeline, type Pipeline, type SamplerName, SAMPLERS } from "../pipeline.ts";
import { samplersFor } from "../model_defaults.ts";
import { readGenerateInputs } from "./embeds.ts";
import { FluxModel } from "../../plugins/models/flux.ts";
import { byKernel, formatKernelTimes } from "../gpu/launch_times.ts";
import {
  checkDistinctOutputs,
  checkWritable,
  emitJson,
  info,
  parseCommand,
  ProgressBar,
  UsageError,
} from "./common.ts";

/** Usage text of generate. */
export const GENERATE_USAGE = `deno task generate --prompt TEXT [options]
  --prompt TEXT           what to draw (the bundled model knows emoji names)
  --negative-prompt TEXT  what guidance steers away from (diffusers' negative_prompt): PixArt's
                          negative caption instead of "" (the default); FLUX: with --true-cfg > 1
  --model PATH            model folder (diffusers layout); default models/emoji-s
  --seed N                seed of the initial noise (default 0)
  --steps N               sampler steps (default: the model's; PixArt 20, FLUX 28)
  --guidance F            classifier-free guidance scale (default: the model's; PixArt 4.5, the
                          bundled model 3.5; ≤ 1 turns it off); FLUX.1-dev: the guidance
                          embedder's scale (default 3.5); schnell: unused
  --sampler S             dpm++2m (default) or ddim; flow-euler (the default and only one for FLUX)
                          (a model's own defaults: model_index.json's webdit.default_steps,
                          default_guidance, default_sampler)
  --true-cfg F            FLUX: true classifier-free guidance scale with negative embeddings
                          (default 1: off, as FluxPipeline)
  --adapter A             auto (default), gpu or cpu
  --dtype T               f32 (default) or f16 transformer
  --n N                   images (default 1; with --latents or --caption-embeds, their batch,
                          which --n must match)
  --out FILE.png          output image (default generated from the prompt and seed)
  --force                 overwrite existing output files
  --caption-embeds FILE   precomputed embeddings: prompt_embeds [B,L,C] (+ prompt_attention_mask or
                          mask, negative_prompt_embeds, negative_prompt_attention_mask) instead of
                          --prompt; guided without negatives, the model's own encoder gives them
                          (its null caption, as diffusers encodes negative_prompt)
  --pooled-embeds FILE    FLUX: pooled_prompt_embeds [B,P] (+ negative_pooled_prompt_embeds); may
                          also sit in the --caption-embeds file
  --latents FILE          initial noise: tensor "latents" [B,C,H,W] (as diffusers' latents=; FLUX:
                          unpacked, C = in_channels/4)
  --save-latents FILE     write the final latents as "latents" [B,C,H,W] (f32 safetensors)
  --vae PATH              a latent model's VAE decoder (AutoencoderKL): a model folder with
                          vae/, or the vae folder (default the model folder's vae/; a
                          quantized artifact has none of its own)
  --text-encoder PATH     a real checkpoint's prompt encoders (PixArt: T5 in text_encoder/ +
                          tokenizer/; FLUX: CLIP there, T5 in text_encoder_2/ + tokenizer_2/):
                          a folder holding them (default the model folder; a quantized
                          artifact has none of its own)
  --text-encoder-dtype D  the prompt encoders' weights on the GPU: auto (default: f16 where the
                          checkpoint stores f16/bf16, exact; else f32), f32, or f16 (half the
                          bytes of an f32 T5, rounded); their activations are f32 always
  --max-sequence-length N T5's tokens per prompt (default the diffusers pipeline's: PixArt-α
                          120, PixArt-Σ 300, FLUX 512)
  --vae-tiling            decode in tiles of the VAE's sample_size, blended, as diffusers'
                          vae.enable_tiling() (large images on a small adapter)
  --height PX, --width PX image size in pixels, as diffusers' height=/width= (default the
                          model's sample size; FLUX 1024): a multiple of the patch (PixArt) or
                          of 16 (FLUX: 8 pixels a latent cell, 2×2 packing)
  --profile-step N        time step N's kernels on the GPU (timestamp queries; 0-based) and
                          print them by kernel, largest first
  --json                  print a JSON summary as the last line of stdout`;

function defaultOut(prompt: string | undefined, seed: number): string {
  const slug = (prompt ?? "embeds").toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "")
    .slice(0, 40);
  return `${slug || "image"}_${seed}.png`;
}

/** The image files of a run of `n`: `base`, then `base` with _1, _2… before ".png". */
function imagePaths(base: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => i ? base.replace(/\.png$/i, `_${i}.png`) : base);
}

/**
 * The batch of a run: the --latents and --caption-embeds files' (which must agree with
 * each other and with --n, when given), else --n (default 1).
 */
function batchOf(
  n: number | undefined,
  latents: [string, number] | undefined,
  embeds: number | undefined,
): number {
  const files: [string, number][] = [];
  if (latents) files.push([`--latents ${latents[0]}`, latents[1]]);
  if (embeds !== undefined) files.push(["--caption-embeds", embeds]);
  if (files.length === 2 && files[0][1] !== files[1][1]) {
    throw new UsageError(`--caption-embeds has batch ${embeds}, --latents ${latents![1]}`);
  }
  if (n !== undefined && files.length && files[0][1] !== n) {
    throw new UsageError(
      `--n ${n} disagrees with ${files[0][0]} (batch ${files[0][1]}): drop --n or match it`,
    );
  }
  return files[0]?.[1] ?? n ?? 1;
}

/** Checks the sampler is one of the model's (samplersFor its architecture's defaults). */
function checkSampler(pipe: Pipeline, sampler: SamplerName): void {
  const own = samplersFor(pipe.defaults);
  if (!own.includes(sampler)) {
    const kind = pipe.model instanceof FluxModel ? "FLUX" : "(epsilon)";
    throw new UsageError(
      `--sampler must be ${own.join(" or ")} for this ${kind} model, got ${sampler}`,
    );
  }
}

/**
 * Checks --latents against the loaded model: its channels (FLUX: unpacked, in_channels/4)
 * and a height and width of whole patches (FLUX: whole 2×2 packing cells).
 */
function checkLatentsShape(pipe: Pipeline, path: string, shape: readonly number[]): void {
  const m = pipe.model;
  const C = m instanceof FluxModel ? m.config.latentChannels : m.config.inChannels;
  const cells = m instanceof FluxModel ? 2 : m.config.patchSize;
  const [B, , H, W] = shape;
  if (shape[1] !== C) {
    throw new UsageError(
      `--latents ${path}: expected [B, C, H, W] = [${B}, ${C}, ${H}, ${W}] (the model's ` +
        `${C} latent channels), got [${shape.join(", ")}]`,
    );
  }
  for (const [what, v] of [["height", H], ["width", W]] as const) {
    if (v % cells) {
      throw new UsageError(
        `--latents ${path}: the latents' ${what} ${v} is not a multiple of the model's ` +
          `${m instanceof FluxModel ? "2×2 packing" : "patch size"} ${cells}`,
      );
    }
  }
}

/**
 * The latent height and width of a run: from --latents, else from --height/--width in
 * pixels (each must be a whole number of the model's size step), else the model's default.
 */
function latentSize(
  pipe: Pipeline,
  latentsShape: readonly number[] | undefined,
  heightPx: number | undefined,
  widthPx: number | undefined,
): { height?: number; width?: number } {
  const ppl = pipe.pixelsPerLatent;
  // PixArt: whole patches; FLUX: whole 2×2 packing cells.
  const cells = pipe.model instanceof FluxModel ? 2 : pipe.model.config.patchSize;
  const out: { height?: number; width?: number } = {};
  for (const [flag, px, dim] of [["height", heightPx, 2], ["width", widthPx, 3]] as const) {
    if (px === undefined) {
      if (latentsShape) out[flag] = latentsShape[dim];
      continue;
    }
    if (px % (ppl * cells)) {
      throw new UsageError(`--${flag} must be a multiple of ${ppl * cells} pixels, got ${px}`);
    }
    if (latentsShape && latentsShape[dim] * ppl !== px) {
      throw new UsageError(
        `--${flag} ${px} disagrees with --latents (${latentsShape[dim] * ppl} pixels)`,
      );
    }
    out[flag] = px / ppl;
  }
  return out;
}

/** Runs generate; returns the exit code. */
export async function generate(args: string[]): Promise<number> {
  const o = parseCommand(args, {
    prompt: { type: "string" },
    model: { type: "string" },
    seed: { type: "string" },
    steps: { type: "string" },
    guidance: { type: "string" },
    sampler: { type: "string" },
    adapter: { type: "string" },
    dtype: { type: "string" },
    n: { type: "string" },
    out: { type: "string" },
    force: { type: "boolean" },
    "caption-embeds": { type: "string" },
    "pooled-embeds": { type: "string" },
    "true-cfg": { type: "string" },
    "negative-prompt": { type: "string" },
    latents: { type: "string" },
    "save-latents": { type: "string" },
    vae: { type: "string" },
    "text-encoder": { type: "string" },
    "max-sequence-length": { type: "string" },
    "text-encoder-dtype": { type: "string" },
    "vae-tiling": { type: "boolean" },
    height: { type: "string" },
    width: { type: "string" },
    "profile-step": { type: "string" },
  }, GENERATE_USAGE);
  if (!o) return 0;
  const v = o.values;
  if (v.prompt === undefined && v["caption-embeds"] === undefined) {
    throw new UsageError("give --prompt TEXT (or --caption-embeds FILE)");
  }
  if (v.prompt !== undefined && v["caption-embeds"] !== undefined) {
    throw new UsageError("give --prompt or --caption-embeds, not both");
  }
  const seed = o.number("seed", 0, { min: 0, max: 2 ** 32 - 1, integer: true });
  // Steps, guidance and sampler default to the model's (Pipeline.defaults) once it is loaded.
  const stepsArg = o.optionalNumber("steps", { min: 1, max: 1000, integer: true });
  const guidanceArg = o.optionalNumber("guidance", { min: 0, max: 100 });
  const trueCfg = o.number("true-cfg", 1, { min: 0, max: 100 });
  const nArg = o.optionalNumber("n", { min: 1, max: 64, integer: true });
  const profileStep = o.optionalNumber("profile-step", { min: 0, integer: true });
  const maxSequenceLength = o.optionalNumber("max-sequence-length", {
    min: 1,
    max: 4096,
    integer: true,
  });
  const heightPx = o.optionalNumber("height", { min: 1, max: 16384, integer: true });
  const widthPx = o.optionalNumber("width", { min: 1, max: 16384, integer: true });
  const samplerArg = o.optionalChoice<SamplerName>("sampler", SAMPLERS);
  const adapter = o.choice<AdapterChoice>("adapter", ADAPTER_CHOICES, "auto");
  const dtype = o.choice("dtype", ["f32", "f16"] as const, "f32");
  const force = v.force ?? false;
  if (v.out !== undefined && !v.out.toLowerCase().endsWith(".png")) {
    throw new UsageError("--out must name a .png file");
  }

  // One file may hold several of them (a reference run's record).
  const { captionEmbeds, latents } = await readGenerateInputs({
    captionEmbeds: v["caption-embeds"],
    pooledEmbeds: v["pooled-embeds"],
    latents: v.latents,
  });
  const B = batchOf(nArg, latents && [v.latents!, latents.shape[0]], captionEmbeds?.shape[0]);
  // Every output is checked before any work: the images (named when --out is given; the
  // default names, in the current folder, once the model says it makes images).
  const outBase = v.out ?? defaultOut(v.prompt, seed);
  const outs = imagePaths(outBase, B);
  const saveLatents = v["save-latents"];
  checkDistinctOutputs([
    ...outs.map((p) => ["--out", p] as const),
    ...(saveLatents ? [["--save-latents", saveLatents] as const] : []),
  ]);
  if (saveLatents) await checkWritable(saveLatents, force, "--save-latents");
  if (v.out) { for (const p of outs) await checkWritable(p, force, "--out"); }

  const rt = await createRuntime({ adapter, f16: dtype === "f16" ? true : "auto" });
  try {
    info(`adapter: ${rt.info.description}${rt.info.fallback ? " (CPU)" : ""}`);
    const tLoad = performance.now();
    const pipe = await loadPipeline(rt, {
      path: v.model,
      dtype,
      vae: v.vae,
      textEncoder: v["text-encoder"],
      maxSequenceLength,
      textEncoderDtype: o.choice("text-encoder-dtype", TEXT_WEIGHTS, "auto"),
    });
    const loadMs = performance.now() - tLoad;
    try {
      const steps = stepsArg ?? pipe.defaults.steps;
      const sampler: SamplerName = samplerArg ?? pipe.defaults.sampler;
      checkSampler(pipe, sampler);
      const guidance = guidanceArg ?? pipe.defaults.guidance;
      if (profileStep !== undefined && profileStep >= steps) {
        throw new UsageError(
          `--profile-step must be in [0, ${steps - 1}], got ${profileStep}`,
        );
      }
      if (latents) checkLatentsShape(pipe, v.latents!, latents.shape);
      const images = pipe.makesImages;
      if (!images) outs.length = 0;
      if (!images && v.out) {
        throw new UsageError(
          "this model works in a latent space and has no VAE decoder (no vae/ in its folder; " +
            "--vae PATH names one): use --save-latents",
        );
      }
      if (!v.out) { for (const p of outs) await checkWritable(p, force, "--out"); }
      const size = latentSize(pipe, latents?.shape, heightPx, widthPx);
      const decodeOpts = { tiling: v["vae-tiling"] ?? false };
      const tooBig = outs.length ? pipe.vaeProblem(size.height, size.width, decodeOpts) : undefined;
      if (tooBig) throw new UsageError(`--height/--width: ${tooBig} (or --save-latents alone)`);

      if (v["negative-prompt"] !== undefined && pipe.model instanceof FluxModel && trueCfg <= 1) {
        info("note: FLUX uses --negative-prompt only with --true-cfg > 1 (as FluxPipeline)");
      }
      const bar = new ProgressBar("sampling", steps);
      const res = await pipe.generate({
        prompt: v.prompt,
        negativePrompt: v["negative-prompt"],
        captionEmbeds,
        n: B,
        seed,
        steps,
        guidance,
        sampler,
        trueCfg,
        latents: latents?.data,
        ...size,
        onStep: (s) => bar.update(s.step),
        profileStep,
      });
      bar.done();
      const kernels = res.profile ? byKernel(res.profile) : undefined;
      if (kernels) info(`step ${profileStep}'s kernels (GPU time):\n${formatKernelTimes(kernels)}`);
      if (res.truncatedPrompts?.length) {
        info(
          `warning: the prompt was cut to the text encoder's ${pipe.prompts?.length} tokens ` +
            "(as diffusers does; --max-sequence-length sets it)",
        );
      }
      if (res.unknownWords.length) {
        info(`warning: unknown words (read as <unk>): ${res.unknownWords.join(", ")}`);
      }
      const tDecode = performance.now();
      const dec = outs.length ? await pipe.decode(res.latents, res.shape, decodeOpts) : undefined;
      if (pipe.vae && dec) {
        info(`VAE decode ${((performance.now() - tDecode) / 1000).toFixed(2)} s`);
      }
      const [, C, H, W] = dec?.shape ?? res.shape;
      for (let i = 0; i < outs.length; i++) {
        const img = tensorToImage(
          dec!.images.subarray(i * C * H * W, (i + 1) * C * H * W),
          C,
          H,
          W,
        );
        await writePng(outs[i], img);
        info(`wrote ${outs[i]}`);
      }
      if (saveLatents) {
        await writeSafetensors(saveLatents, {
          latents: { dtype: "F32", shape: res.shape, data: res.latents },
        });
        info(`wrote ${saveLatents}`);
      }
      const total = res.timings.totalMs;
      const mean = res.timings.stepMs.reduce((a, b) => a + b, 0) / res.timings.stepMs.length;
      info(
        `${steps} steps in ${(total / 1000).toFixed(2)} s (${mean.toFixed(1)} ms/step), load ${
          (loadMs / 1000).toFixed(2)
        } s`,
      );
      if (v.json) {
        emitJson({
          images: outs,
          latents: saveLatents ?? null,
          shape: res.shape,
          negative_prompt: v["negative-prompt"] ?? null,
          seed,
          steps,
          guidance,
          sampler,
          true_cfg: trueCfg,
          dtype,
          adapter: rt.info.description,
          fallback: rt.info.fallback,
          ms: total,
          load_ms: loadMs,
          ms_per_step: mean,
          unknown_words: res.unknownWords,
          truncated_prompts: res.truncatedPrompts ?? [],
          ...(kernels ? { profile: { step: profileStep, kernels } } : {}),
        });
      }
      return 0;
    } finally {
      pipe.release();
    }
  } finally {
    rt.destroy();
  }
}
