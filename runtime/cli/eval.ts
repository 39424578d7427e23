/**
 * `deno task eval`: prompt fidelity of a model over a prompt list and, with --reference,
 * PSNR/SSIM/cosine of its images against the reference model's (same prompts and seeds),
 * per the CLI contract in ARCHITECTURE.md.
 *
 * @module
 */
import { TEXT_WEIGHTS } from "../../plugins/models/text_weights.ts";
import { ADAPTER_CHOICES, type AdapterChoice } from "../gpu/device.ts";
import {
  DEFAULT_PROMPTS_FILE,
  evaluate,
  type EvaluateResult,
  parsePromptList,
} from "../eval/eval.ts";
import { outDirImagePaths } from "../eval/eval_images.ts";
import type { FidelityResult } from "../eval/fidelity.ts";
import { exists } from "../io/fs.ts";
import { makeGrid, writePng } from "../io/png.ts";
import { DEFAULT_MODEL_DIR, type SamplerName, SAMPLERS } from "../pipeline.ts";
import {
  checkDistinctOutputs,
  checkNoOverwrite,
  checkOutputFolder,
  checkWritable,
  emitJson,
  info,
  parseCommand,
  ProgressBar,
  UsageError,
} from "./common.ts";

/** Usage text of eval. */
export const EVAL_USAGE = `deno task eval [options]
  --model PATH            model folder or quantized artifact; default models/emoji-s
  --reference PATH        score the model's images against this model's (PSNR, SSIM, cosine)
  --prompts FILE          prompt list, one per line; default bench/prompts/emoji_fidelity.txt
  --limit N               only the first N prompts
  --seeds N               images per prompt, seeds 0..N-1 (default 1)
  --steps N               sampler steps (default: the model's, as generate)
  --negative-prompt TEXT  every image's negative prompt, both models (default the model's own)
  --guidance F            guidance scale (default: the model's, as generate; the bundled model 3.5)
  --sampler S             dpm++2m or ddim (default: the model's)
  --height PX, --width PX image size in pixels (default the model's own; FLUX 1024): a multiple
                          of the patch (PixArt) or of 16 (FLUX)
  --text-encoder PATH     the folder holding the model's prompt encoders (a real checkpoint's
                          T5, or FLUX's CLIP + T5) for a quantized artifact, which carries none
                          (default the model folder's; an artifact: the --reference folder's)
  --text-encoder-dtype D  both models' prompt encoders' weights: auto (default: f16 where the
                          checkpoint stores f16/bf16, exact; else f32), f32, or f16 (half the
                          bytes of an f32 T5, rounded); their activations are f32 always
  --dtype T               the model's transformer: f32 (default) or f16 (the reference is f32)
  --adapter A             auto (default), gpu or cpu
  --batch N               images per GPU batch (default 1 on a CPU adapter, 8 on a GPU)
  --fidelity M            auto (default: when the images are 64×64 emoji), on or off
  --dataset DIR           an unpacked emoji-datasource-google@16.0.0, or the folder tools/torch/train/prepare_data.ts
                          writes (emoji_meta.json + emoji64.u8.gz); default: fetched through npm
  --out-dir DIR           write every image as PNG under DIR/model and DIR/reference
  --grid FILE.png         write the model's images as one grid (8 per row, prompt-major)
  --force                 overwrite existing output files (--grid, the images under --out-dir)
  --json                  print the figures as one JSON object, the last line of stdout

PSNR (dB) and SSIM are on the 8-bit images (R = 255; SSIM as scikit-image's Gaussian form),
cosine on the final latents; means over images. Fidelity: share of images whose nearest dataset
emoji (pixel MSE, 64×64 on white) is the prompted one.`;

/** A finite number, or null for ±Infinity/NaN (JSON has no infinities). */
function num(x: number | undefined): number | null {
  return x === undefined || !Number.isFinite(x) ? null : x;
}

function fidelityJson(f: FidelityResult | undefined) {
  if (!f) return null;
  return {
    pct: f.fidelity,
    hits: f.hits,
    images: f.total,
    per_category_pct: f.perCategory,
    per_category: f.perCategoryCounts,
    // Every image: [prompt, seed, hit, the nearest emoji's name].
    outcomes: f.images.map((h) => [h.prompt, h.seed, h.hit, h.nearestName]),
  };
}

function report(r: EvaluateResult): void {
  const s = r.samples;
  const n = s.samples.length;
  info(
    `${n} images (${s.prompts.length} prompts × ${s.seeds.length} seeds), ${s.steps} steps, ` +
      `guidance ${s.guidance}, ${(s.ms / n / 1000).toFixed(1)} s/image`,
  );
  if (s.unknownWords.length) {
    info(`warning: unknown words (read as <unk>): ${s.unknownWords.join(", ")}`);
  }
  if (r.fidelity) {
    info(`fidelity: ${r.fidelity.fidelity}% (${r.fidelity.hits}/${r.fidelity.total})`);
    const cats = Object.entries(r.fidelity.perCategory).map(([k, v]) => `${k} ${v}%`);
    info(`  per category: ${cats.join(", ")}`);
  } else {
    info(`fidelity: skipped (${r.fidelitySkipped})`);
  }
  if (r.referenceFidelity) {
    info(`reference fidelity: ${r.referenceFidelity.fidelity}%`);
  }
  const c = r.comparison;
  if (c) {
    const db = (x: number) => x === Infinity ? "∞" : x.toFixed(2);
    info(
      `vs reference: PSNR ${db(c.psnr)} dB (min ${db(c.psnrMin)}), SSIM ${c.ssim.toFixed(4)}, ` +
        `cosine ${c.cosine.toFixed(6)}; ${c.identical}/${n} images identical`,
    );
  }
}

/** The prompt list of --prompts (a file; its first `limit` prompts), or a usage error. */
async function readPrompts(file: string, limit: number | undefined): Promise<string[]> {
  const st = await Deno.stat(file).catch(() => undefined);
  if (!st) throw new UsageError(`--prompts: no such file ${file}`);
  if (!st.isFile) throw new UsageError(`--prompts ${file} is not a file`);
  const prompts = parsePromptList(await Deno.readTextFile(file));
  if (!prompts.length) throw new UsageError(`--prompts ${file} holds no prompts`);
  return prompts.slice(0, limit);
}

/** Checks, before any work, that --model, --reference, --text-encoder and --dataset (when used) exist. */
async function checkInputs(
  model: string | undefined,
  reference: string | undefined,
  textEncoder: string | undefined,
  dataset: string | undefined,
): Promise<void> {
  for (const [flag, path] of [["model", model], ["reference", reference]] as const) {
    if (path !== undefined && !await exists(path)) {
      throw new UsageError(`--${flag} ${path} does not exist (a model folder or artifact)`);
    }
  }
  if (textEncoder !== undefined && !await exists(textEncoder)) {
    throw new UsageError(`--text-encoder ${textEncoder} does not exist (a model folder)`);
  }
  if (dataset !== undefined && !(await Deno.stat(dataset).catch(() => undefined))?.isDirectory) {
    throw new UsageError(`--dataset ${dataset} is not a folder`);
  }
}

/**
 * Checks, before any work, that --grid and the images under --out-dir can be written and
 * overwrite nothing unless `force`, and that they are distinct files.
 */
async function checkOutputs(
  outDir: string | undefined,
  grid: string | undefined,
  o: { prompts: string[]; seeds: number[]; reference: boolean; force: boolean },
): Promise<void> {
  const images = outDir ? outDirImagePaths(outDir, o.prompts, o.seeds, o.reference) : [];
  checkDistinctOutputs([
    ...(grid ? [["--grid", grid] as const] : []),
    ...images.map((p) => ["--out-dir", p] as const),
  ]);
  if (grid) await checkWritable(grid, o.force, "--grid");
  if (outDir) {
    await checkOutputFolder(outDir, "--out-dir");
    for (const p of images) await checkNoOverwrite(p, o.force, "--out-dir");
  }
}

/** Runs eval; returns the exit code. */
export async function evalCommand(args: string[]): Promise<number> {
  const o = parseCommand(args, {
    model: { type: "string" },
    reference: { type: "string" },
    prompts: { type: "string" },
    limit: { type: "string" },
    seeds: { type: "string" },
    steps: { type: "string" },
    guidance: { type: "string" },
    sampler: { type: "string" },
    dtype: { type: "string" },
    adapter: { type: "string" },
    batch: { type: "string" },
    height: { type: "string" },
    "negative-prompt": { type: "string" },
    width: { type: "string" },
    "text-encoder": { type: "string" },
    "text-encoder-dtype": { type: "string" },
    fidelity: { type: "string" },
    dataset: { type: "string" },
    "out-dir": { type: "string" },
    grid: { type: "string" },
    force: { type: "boolean" },
  }, EVAL_USAGE);
  if (!o) return 0;
  const v = o.values;
  const nSeeds = o.number("seeds", 1, { min: 1, max: 1000, integer: true });
  const seeds = Array.from({ length: nSeeds }, (_, i) => i);
  // Steps, guidance and sampler: the model's defaults where not given (evaluate).
  const steps = o.optionalNumber("steps", { min: 1, max: 1000, integer: true });
  const guidance = o.optionalNumber("guidance", { min: 0, max: 100 });
  const limit = o.optionalNumber("limit", { min: 1, max: 1e6, integer: true });
  const batch = o.optionalNumber("batch", { min: 1, max: 256, integer: true });
  const height = o.optionalNumber("height", { min: 1, max: 16384, integer: true });
  const width = o.optionalNumber("width", { min: 1, max: 16384, integer: true });
  const sampler = o.optionalChoice<SamplerName>("sampler", SAMPLERS);
  const adapter = o.choice<AdapterChoice>("adapter", ADAPTER_CHOICES, "auto");
  const dtype = o.choice("dtype", ["f32", "f16"] as const, "f32");
  const fid = o.choice("fidelity", ["auto", "on", "off"] as const, "auto");
  if (v.grid !== undefined && !v.grid.toLowerCase().endsWith(".png")) {
    throw new UsageError("--grid must name a .png file");
  }
  const promptsFile = v.prompts ?? DEFAULT_PROMPTS_FILE;
  const prompts = await readPrompts(promptsFile, limit);
  await checkInputs(
    v.model,
    v.reference,
    v["text-encoder"],
    fid === "off" ? undefined : v.dataset,
  );
  await checkOutputs(v["out-dir"], v.grid, {
    prompts,
    seeds,
    reference: v.reference !== undefined,
    force: v.force ?? false,
  });

  let bar: ProgressBar | undefined;
  let phase = "";
  const r = await evaluate({
    model: v.model ?? DEFAULT_MODEL_DIR,
    reference: v.reference,
    prompts,
    seeds,
    steps,
    guidance,
    sampler,
    height,
    width,
    negativePrompt: v["negative-prompt"],
    textEncoder: v["text-encoder"],
    textEncoderDtype: o.choice("text-encoder-dtype", TEXT_WEIGHTS, "auto"),
    dtype,
    adapter,
    batch,
    fidelity: fid === "auto" ? "auto" : fid === "on",
    dataset: v.dataset,
    outDir: v["out-dir"],
    onProgress: (p, done, total) => {
      if (p !== phase) {
        bar?.done();
        phase = p;
        bar = new ProgressBar(p, total);
      }
      bar!.update(done);
    },
  });
  bar?.done();
  info(`adapter: ${r.adapter}${r.fallback ? " (CPU)" : ""}`);
  for (const n of r.notes) info(`note: ${n}`);
  report(r);
  if (v["out-dir"]) info(`wrote images under ${v["out-dir"]}`);
  const images = r.samples.samples.flatMap((s) => s.image ? [s.image] : []);
  if (v.grid && images.length) {
    await writePng(v.grid, makeGrid(images, { cols: Math.min(8, images.length) }));
    info(`wrote ${v.grid}`);
  }
  if (v.json) {
    const s = r.samples;
    const c = r.comparison;
    emitJson({
      model: s.model,
      reference: r.referenceSamples?.model ?? null,
      prompts_file: promptsFile,
      prompts: s.prompts.length,
      seeds: s.seeds.length,
      images: s.samples.length,
      steps: s.steps,
      guidance: s.guidance,
      sampler: s.sampler,
      negative_prompt: s.negativePrompt ?? null,
      latent_shape: s.shape,
      dtype,
      adapter: r.adapter,
      fallback: r.fallback,
      ms_per_image: s.ms / s.samples.length,
      fidelity: r.fidelity?.fidelity ?? null,
      fidelity_detail: fidelityJson(r.fidelity),
      fidelity_skipped: r.fidelitySkipped ?? null,
      reference_fidelity: r.referenceFidelity?.fidelity ?? null,
      // JSON has no Infinity: psnr is null when an image equals its reference (see identical).
      psnr: c ? num(c.psnr) : null,
      psnr_min: c ? num(c.psnrMin) : null,
      ssim: c?.ssim ?? null,
      cosine: c?.cosine ?? null,
      identical: c?.identical ?? null,
      unknown_words: s.unknownWords,
      notes: r.notes,
      out_dir: v["out-dir"] ?? null,
    });
  }
  return 0;
}
