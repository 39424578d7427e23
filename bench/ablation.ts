/**
 * `deno task ablation [--matrix FILE] [--resume] [--json]`: the plugin-swap ablation on the
 * bundled model. Every setting of the matrix (bench/ablation_matrix.ts; default
 * bench/matrices/default.json) is quantized with the real plugins, sampled over the fixed
 * prompts and seeds, and scored against the FP32 dense model's images: PSNR, SSIM, cosine,
 * prompt fidelity, ms/step, weight bytes and peak pool bytes. Rows go to
 * `bench/results/<device>/<date>_ablation.{json,md,svg}` (`--name N`: `…_ablation_N.…`) after
 * every setting.
 *
 * Progress is kept in `.cache/ablation/<hash of model, prompts, seeds, sampler settings>/`
 * (the FP32 reference images and the rows done), so `--resume` goes on where a run
 * stopped, also after the matrix gained rows. PARO plans come from one calibration of the
 * FP32 model per matrix (the statistics `deno task quantize --attention paro` computes),
 * re-planned per density and bit width.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type AdapterChoice, createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import {
  compareSamples,
  fidelityBlocker,
  generateSamples,
  type SampleSet,
  scoreFidelity,
} from "../runtime/eval/eval.ts";
import { type EmojiDataset, loadEmojiDataset } from "../runtime/eval/fidelity.ts";
import { tensorToImage } from "../runtime/io/png.ts";
import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../runtime/io/safetensors.ts";
import { loadPipeline, type Pipeline } from "../runtime/pipeline.ts";
import { vaeDir } from "../runtime/vae_load.ts";
import { transformerWeightsHash } from "../runtime/quant/calibrate.ts";
import { cachedParoStats } from "../runtime/quant/paro_calibrate.ts";
import { type ParoStats, planKeptMass, planParo } from "../runtime/quant/paro_plan.ts";
import { quantizeModel, writeArtifact } from "../runtime/quant/quantize.ts";
import type { QuantizeOptions } from "../runtime/quant/quantize_types.ts";
import { PARO_CALIBRATION_PROMPTS, ParoSelfAttention } from "../plugins/attention/paro.ts";
import { CalibrationProgress, ProgressBar } from "../runtime/cli/common.ts";
import { WebditError } from "../runtime/errors.ts";
import {
  type AblationMatrix,
  type AblationSetting,
  DEFAULT_MATRIX_FILE,
  readMatrix,
  settingKey,
  settingLabel,
} from "./ablation_matrix.ts";
import {
  type AblationRow,
  massKeptResults,
  mergeAblation,
  psnrStandardError,
  writeAblation,
} from "./ablation_report.ts";
import { deviceSlug, gitCommit, resultsHeader, resultsRoot, today } from "./harness.ts";

/** Usage text. */
export const ABLATION_USAGE = `deno task ablation [options]
  --matrix FILE    the plugin matrix (JSON, bench/ablation_matrix.ts); default ${
  DEFAULT_MATRIX_FILE.replace(/.*\/bench\//, "bench/")
}
  --resume         go on from the rows an earlier run of the same matrix finished
  --model PATH     override the matrix's model
  --adapter A      auto (default), gpu or cpu
  --out DIR        results root (default bench/results)
  --name NAME      results file <date>_ablation_NAME (lower-case letters, digits, - and _)
  --state DIR      progress folder (default .cache/ablation)
  --dataset DIR    an unpacked emoji-datasource-google@16.0.0, or prepare_data.ts's folder (.train), for prompt fidelity
                   (default: fetched through npm; without it fidelity is left out)
  --json           print the rows as one JSON object, the last line of stdout

Writes <out>/<device>/<date>_ablation[_NAME].{json,md,svg} after every row.`;

const REPO = new URL("..", import.meta.url).pathname;
const log = (s: string) =>
  console.error(`[ablation ${new Date().toISOString().slice(11, 19)}] ${s}`);

/** The model's name in the rows: its folder's name. */
const modelName = (path: string) => path.replace(/\/$/, "").split("/").pop()!;

/** The hash of what the reference images depend on (the state folder's name). */
async function referenceHash(m: AblationMatrix): Promise<string> {
  const what = JSON.stringify({
    model: await transformerWeightsHash(m.model),
    prompts: m.prompts,
    seeds: m.seeds,
    steps: m.steps,
    batch: m.batch,
    guidance: m.guidance,
    calibration: m.calibration,
  });
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(what));
  return [...new Uint8Array(d)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Saves a sample set's latents and settings, and a latent model's VAE-decoded images (a
 * pixel-space model's are recomputed from its latents).
 */
async function saveSamples(path: string, s: SampleSet): Promise<void> {
  const per = s.shape.reduce((a, b) => a * b, 1);
  const all = new Float32Array(s.samples.length * per);
  s.samples.forEach((x, i) => all.set(x.latents, i * per));
  const { samples: _, ...head } = s;
  const tensors: Record<string, TensorToWrite> = {
    latents: { dtype: "F32", shape: [s.samples.length, ...s.shape], data: all },
  };
  const img = s.samples[0]?.image;
  if (img && s.shape[0] !== 3 && s.shape[0] !== 1) {
    const n = img.width * img.height * img.channels;
    const px = new Uint8Array(s.samples.length * n);
    s.samples.forEach((x, i) => px.set(x.image!.data, i * n));
    tensors.images = {
      dtype: "U8",
      shape: [s.samples.length, img.height, img.width, img.channels],
      data: px,
    };
  }
  await writeSafetensors(path, tensors, {
    set: JSON.stringify(head),
    order: JSON.stringify(s.samples.map((x) => [x.prompt, x.seed])),
  });
}

/** Loads what {@linkcode saveSamples} wrote. */
async function loadSamples(path: string): Promise<SampleSet> {
  using f = await openSafetensors(path);
  const head = JSON.parse(f.metadata.set) as Omit<SampleSet, "samples">;
  const order = JSON.parse(f.metadata.order) as [string, number][];
  const all = await f.readF32("latents");
  const [C, H, W] = head.shape;
  const per = C * H * W;
  const decoded = f.tensors.has("images") ? await f.readRaw("images") : undefined;
  const [, h, w, c] = decoded ? f.info("images").shape : [0, 0, 0, 0];
  const samples = order.map(([prompt, seed], i) => {
    const latents = all.slice(i * per, (i + 1) * per);
    const image = decoded
      ? {
        width: w,
        height: h,
        channels: c,
        data: decoded.slice(i * h * w * c, (i + 1) * h * w * c),
      }
      : C === 3 || C === 1
      ? tensorToImage(latents, C, H, W)
      : undefined;
    return { prompt, seed, latents, image };
  });
  return { ...head, samples };
}

/**
 * PARO statistics of the FP32 model over `prompts` (default: the calibration prompts),
 * calibrated once and kept in the state folder as `name`.
 */
async function paroStats(
  rt: Runtime,
  m: AblationMatrix,
  dir: string,
  name = "paro_stats.bin",
  prompts: readonly string[] = m.calibration.prompts ?? PARO_CALIBRATION_PROMPTS,
): Promise<ParoStats> {
  const cal = new CalibrationProgress("PARO calibration");
  const s = await cachedParoStats(rt, join(dir, name), {
    path: m.model,
    prompts,
    steps: m.steps, // the masks are per step group of the sampling run
    guidance: m.guidance,
    onProgress: (p) => cal.update(p),
  });
  cal.done();
  return s;
}

/** Attention mass the PARO masks keep, with the chosen orders and row-major, per density. */
export interface MassKept {
  density: number;
  /** "calibration": the plan's own prompts; "held_out": the matrix's first prompt. */
  evaluated_on: "calibration" | "held_out";
  row_major: number;
  chosen: number;
}

/** The mass-kept figures of PARO's reordering (means over layers, heads and steps). */
async function massKept(run: Run, densities: number[]): Promise<MassKept[]> {
  run.paro ??= await paroStats(run.rt, run.m, run.dir);
  const held = await paroStats(run.rt, run.m, run.dir, "paro_stats_heldout.bin", [
    run.m.prompts[0],
  ]);
  const mean = (x: number[][]) => x.flat().reduce((a, b) => a + b, 0) / x.flat().length;
  return densities.flatMap((density) =>
    ([["calibration", run.paro!], ["held_out", held]] as const).map(([on, stats]) => ({
      density,
      evaluated_on: on,
      row_major: mean(
        planKeptMass(planParo(run.paro!, { density, bits: 8, candidates: ["hw"] }), stats),
      ),
      chosen: mean(planKeptMass(planParo(run.paro!, { density, bits: 8 }), stats)),
    }))
  );
}

/** Everything a run shares. */
interface Run {
  rt: Runtime;
  m: AblationMatrix;
  dir: string;
  tmp: string;
  dataset?: EmojiDataset;
  paro?: ParoStats;
}

/** Loads the pipeline of a setting (quantized into a temporary artifact when it has to be). */
async function pipelineFor(
  run: Run,
  s: AblationSetting,
): Promise<{ pipe: Pipeline; gptqGpuLayers?: number; branches?: Record<string, number> }> {
  // Loaded per row and released after it, so the peak bytes are this row's alone.
  if (s.quantizer === "fp32") return { pipe: await loadPipeline(run.rt, { path: run.m.model }) };
  const cal = new CalibrationProgress("calibration (cached per model)");
  const r = await quantizeModel({
    model: run.m.model,
    quantizer: s.quantizer,
    wbits: s.wbits!,
    abits: s.abits!,
    rotation: s.rotation,
    groupSize: s.group_size,
    tlqFit: s.tlq_fit,
    tlqAssign: s.tlq_assign,
    gptq: s.gptq ?? false,
    gptqDevice: s.gptq_device ?? "auto",
    gptqDamp: s.gptq_damp,
    gptqRefit: s.gptq_refit,
    abitsOverride: s.abits_override,
    center: s.center,
    actGroup: s.act_group,
    actAsym: s.act_asym,
    cfgDelta: s.cfg_delta,
    lowRank: s.low_rank,
    lowRankOverride: s.low_rank_override,
    lowRankFit: s.low_rank_fit,
    ...rotationKnobs(s),
    runtime: run.rt,
    // Calibrated as the images are sampled (the matrix's guidance, by default the model's).
    calibration: { ...run.m.calibration, guidance: run.m.guidance },
    onCalibration: (p) => cal.update(p),
  });
  cal.done();
  const path = join(run.tmp, `${settingKey(s).replace(/[|.]/g, "_")}.safetensors`);
  await writeArtifact(path, r, { force: true });
  const branches: Record<string, number> = {};
  for (const l of Object.values(r.plan.layers)) {
    if (l.quantizer !== "fp") branches[l.rotation] = (branches[l.rotation] ?? 0) + 1;
  }
  return {
    // The artifact carries no VAE: a latent model's images come from its folder's.
    pipe: await loadPipeline(run.rt, { path, vae: (await vaeDir(run.m.model)) && run.m.model }),
    gptqGpuLayers: r.gptqGpuLayers,
    ...(s.rotation !== "none" ? { branches } : {}),
  };
}

/** The row's rotation options (quantize --alpha, --no-smooth, --tau, --ars-select, --rotation-seed); none when all default. */
function rotationKnobs(s: AblationSetting): Pick<QuantizeOptions, "rotationOptions"> {
  const o = {
    ...(s.alpha !== undefined ? { alpha: s.alpha } : {}),
    ...(s.smooth === false ? { smooth: false } : {}),
    ...(s.tau !== undefined ? { tau: s.tau } : {}),
    ...(s.rotation_seed !== undefined ? { seed: s.rotation_seed } : {}),
    ...(s.greedy_objective ? { greedyObjective: s.greedy_objective } : {}),
    ...(s.ars_select ? { select: s.ars_select } : {}),
  };
  return Object.keys(o).length ? { rotationOptions: o } : {};
}

/** Samples the matrix's prompts and seeds with a progress bar. */
async function sample(run: Run, pipe: Pipeline, label: string): Promise<SampleSet> {
  const m = run.m;
  const bar = new ProgressBar(label, m.prompts.length * m.seeds.length * m.steps);
  const set = await generateSamples(pipe, {
    prompts: m.prompts,
    seeds: m.seeds,
    steps: m.steps,
    guidance: m.guidance,
    batch: m.batch,
    onProgress: (d) => d > 0 && bar.update(d),
  });
  bar.done();
  return set;
}

/** Measures one setting against the reference. */
async function measure(run: Run, s: AblationSetting, ref?: SampleSet) {
  const { pipe, gptqGpuLayers, branches } = await pipelineFor(run, s);
  const dense = pipe.transformer.selfAttention;
  let attn: ParoSelfAttention | undefined;
  if (s.attention === "paro") {
    run.paro ??= await paroStats(run.rt, run.m, run.dir);
    const plan = planParo(run.paro, {
      density: s.density!,
      bits: s.attn_bits as 8 | 4 | 16,
      ...(s.paro_alpha !== undefined ? { alpha: s.paro_alpha } : {}),
    });
    pipe.transformer.selfAttention = attn = new ParoSelfAttention(run.rt, plan);
  } else if (s.attention !== "dense") {
    throw new RangeError(`attention "${s.attention}": the harness runs dense and paro`);
  }
  try {
    run.rt.pool.resetPeak();
    const set = await sample(run, pipe, settingLabel(s));
    const batches = Math.ceil((run.m.prompts.length * run.m.seeds.length) / run.m.batch);
    const c = ref ? compareSamples(set, ref) : undefined;
    const ds = run.dataset;
    const fid = ds && !fidelityBlocker(set, ds) ? scoreFidelity(set, ds).fidelity : null;
    const finite = (x: number | undefined) => x === undefined || !Number.isFinite(x) ? null : x;
    const row: AblationRow = {
      model: modelName(run.m.model),
      ...s,
      ...(gptqGpuLayers === undefined ? {} : { gptq_gpu_layers: gptqGpuLayers }),
      ...(branches ? { rotation_branches: branches } : {}),
      psnr: finite(c?.psnr),
      psnr_min: finite(c?.psnrMin),
      psnr_images: c ? c.images.map((im) => Number(im.psnr.toFixed(3))) : null,
      ssim: c?.ssim ?? null,
      cosine: c?.cosine ?? null,
      fidelity: fid,
      // Steady state: one-off costs (first kernel use, prompt encoding) left out.
      ms_step: Number.isFinite(set.steadyStepMs)
        ? set.steadyStepMs
        : set.ms / (batches * run.m.steps),
      weight_bytes: pipe.transformer.weightBytes,
      peak_bytes: run.rt.pool.peakBytes,
      images: set.samples.length,
      steps: run.m.steps,
      batch: run.m.batch,
    };
    return { row, set };
  } finally {
    attn?.release();
    pipe.transformer.selfAttention = dense;
    pipe.release();
  }
}

/** Runs the ablation command line; returns the exit code. */
export async function ablation(args: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args,
    options: {
      matrix: { type: "string", default: DEFAULT_MATRIX_FILE },
      resume: { type: "boolean", default: false },
      model: { type: "string" },
      adapter: { type: "string", default: "auto" },
      out: { type: "string" },
      name: { type: "string" },
      state: { type: "string", default: join(REPO, ".cache/ablation") },
      json: { type: "boolean", default: false },
      dataset: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (v.help) {
    console.error(ABLATION_USAGE);
    return 0;
  }
  if (v.name !== undefined && !/^[a-z0-9][a-z0-9_-]*$/.test(v.name)) {
    throw new RangeError(
      `--name must be lower-case letters, digits, - and _ (a file name), got "${v.name}"`,
    );
  }
  if (!["auto", "gpu", "cpu"].includes(v.adapter!)) {
    throw new RangeError(`--adapter must be auto, gpu or cpu, got "${v.adapter}"`);
  }
  const m = await readMatrix(v.matrix!, v.model);
  const rt = await createRuntime({ adapter: v.adapter as AdapterChoice });
  const dir = join(v.state!, await referenceHash(m));
  await Deno.mkdir(dir, { recursive: true });
  const run: Run = { rt, m, dir, tmp: await Deno.makeTempDir({ prefix: "webdit_ablation_" }) };
  const slug = deviceSlug(rt.info.description, rt.info.fallback);
  const what = v.name ? `ablation_${v.name}` : "ablation";
  const base = join(v.out ?? resultsRoot(), slug, `${today()}_${what}`);
  const command = `deno task ablation --matrix ${v.matrix!.replace(REPO, "")}${
    v.model ? ` --model ${v.model}` : ""
  }${v.name ? ` --name ${v.name}` : ""}`;
  const refFile = join(dir, "reference.safetensors");
  const ref0 = v.resume ? await loadSamples(refFile).catch(() => undefined) : undefined;
  const done = (v.resume
    ? JSON.parse(
      await Deno.readTextFile(join(dir, "rows.json")).catch(() => "[]"),
    ) as AblationRow[]
    : []).filter((r) => ref0 || r.quantizer !== "fp32" || r.attention !== "dense");
  const todo = m.settings.filter((s) => !done.some((r) => settingKey(r) === settingKey(s)));
  log(
    `${m.model}: ${m.settings.length} settings (${todo.length} to run), ${m.prompts.length} prompts × ${m.seeds.length} seeds × ${m.steps} steps, batch ${m.batch}, on ${rt.info.description}`,
  );
  const model = modelName(m.model);
  const modelSha = (await transformerWeightsHash(m.model)).slice(0, 16);
  let mass: MassKept[] | undefined;
  const save = async () => {
    for (const r of done) r.model_sha ??= modelSha;
    const file = await mergeAblation(`${base}.json`, {
      ...resultsHeader(rt.info.description, await gitCommit(), command),
      ...(mass ? { results: massKeptResults(mass, ["row_major", "chosen"]) } : {}),
      extra: {
        prompts: m.prompts,
        seeds: m.seeds,
        guidance: m.guidance,
        sampler: "dpm++2m",
        host_load_average: Deno.loadavg(),
        ...(mass ? { paro_mass_kept: mass } : {}),
      },
    }, done);
    await writeAblation(base, file, model);
  };
  try {
    let ref = ref0;
    run.dataset = await loadEmojiDataset(v.dataset).catch((e) => {
      log(`prompt fidelity off: ${(e as Error).message}`);
      return undefined;
    });
    for (const [i, s] of todo.entries()) {
      log(`[${i + 1}/${todo.length}] ${settingLabel(s)}`);
      const t0 = performance.now();
      const isRef = s.quantizer === "fp32" && s.attention === "dense";
      if (!isRef && !ref) throw new Error("the FP32 dense reference must run first");
      const { row, set } = await measure(run, s, isRef ? undefined : ref);
      if (isRef) {
        ref = set;
        await saveSamples(refFile, set);
      }
      done.push(row);
      await Deno.writeTextFile(join(dir, "rows.json"), JSON.stringify(done, null, 1));
      await save();
      const se = psnrStandardError(row);
      const psnr = row.psnr === null
        ? "reference"
        : `PSNR ${row.psnr.toFixed(2)}${se === undefined ? "" : ` ± ${se.toFixed(2)}`} dB`;
      log(
        `  ${psnr}, SSIM ${row.ssim?.toFixed(4) ?? "-"}, fidelity ${
          row.fidelity?.toFixed(1) ?? "-"
        } %, ${row.ms_step.toFixed(0)} ms/step, ` +
          `weights ${(row.weight_bytes / 1e6).toFixed(2)} MB, peak ${
            (row.peak_bytes / 1e6).toFixed(1)
          } MB (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
      );
    }
    const densities = [
      ...new Set(m.settings.filter((s) => s.attention === "paro").map((s) => s.density!)),
    ];
    if (densities.length) {
      log("attention mass kept by the PARO masks, chosen orders vs row-major");
      mass = await massKept(run, densities);
      for (const k of mass) {
        log(
          `  density ${k.density} (${k.evaluated_on}): chosen ${k.chosen.toFixed(4)}, row-major ${
            k.row_major.toFixed(4)
          }`,
        );
      }
    }
    // Always, so a --resume with nothing left to run still writes its files (another --out).
    await save();
    log(`wrote ${base}.{json,md,svg}`);
    if (v.json) console.log(JSON.stringify({ file: `${base}.json`, rows: done }));
    return 0;
  } finally {
    await Deno.remove(run.tmp, { recursive: true }).catch(() => {});
    rt.destroy();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await ablation(Deno.args));
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError || e instanceof WebditError) {
      console.error(`error: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
}
