/**
 * `deno task quantize`: a model folder → one quantized artifact (safetensors + plan), per
 * the CLI contract in ARCHITECTURE.md; `--report` prints per-layer weight SQNR and the
 * activation-quantization error, and with a rotation the rotation table (branch, J, error).
 *
 * @module
 */
import { TEXT_WEIGHTS } from "../../plugins/models/text_weights.ts";
import { ADAPTER_CHOICES, type AdapterChoice, createRuntime } from "../gpu/device.ts";
import { CALIBRATION_PROMPTS } from "../quant/calibrate.ts";
import { CAPTION_CALIBRATION_PROMPTS, usesCaptionEncoder } from "../quant/calibration_run.ts";
import { DEFAULT_MODEL_DIR } from "../pipeline.ts";
import { ABITS } from "../quant/qlinear.ts";
import { CENTER_MODES } from "../reference/act_center.ts";
import { TLQ_FITS } from "../../plugins/quantizers/tlq.ts";
import { isActGroup, LOW_RANK_FITS, type LowRankFit } from "../quant/plan.ts";
import { quantizeModel, writeArtifact } from "../quant/quantize.ts";
import type { QuantizeOptions } from "../quant/quantize_types.ts";
import { ARS_SELECT, type ArsSelect, type RotationKind } from "../quant/rotation.ts";
import { formatReport, measureActivationError } from "../quant/report.ts";
import { buildRotationReport, type RotationReportRow } from "../quant/rotation_plan.ts";
import { ERROR_ROWS } from "../quant/rotation_error.ts";
import { readCalibrationEmbeds } from "./embeds.ts";
import { parseAbitsOverride, parseLowRankOverride } from "./quantize_lists.ts";
import { checkModelFolder, checkPluginArgs } from "./quantize_plugins.ts";
import { LOW_RANK_MAX } from "../ops/low_rank.ts";
import { calibrationPrompts } from "./calib_prompts.ts";
import { QUANTIZE_USAGE } from "./quantize_usage.ts";
import {
  CalibrationProgress,
  checkWritable,
  emitJson,
  info,
  parseCommand,
  ProgressBar,
  UsageError,
} from "./common.ts";

/**
 * " (a rank-R float branch a layer, fitted …)" for the "wrote" line; per-layer ranks listed
 * by count.
 */
function branchWords(layers: readonly { lowRank?: number }[], fit?: LowRankFit): string {
  const counts = new Map<number, number>();
  for (const l of layers) if (l.lowRank) counts.set(l.lowRank, (counts.get(l.lowRank) ?? 0) + 1);
  if (!counts.size) return "";
  if (counts.size === 1 && [...counts.values()][0] === layers.length) {
    return ` (a rank-${[...counts.keys()][0]} float branch a layer${FIT_WORDS[fit ?? "svd"]})`;
  }
  const parts = [...counts].sort((a, b) => b[0] - a[0]).map(([r, n]) => `${n} of rank ${r}`);
  return ` (float branches: ${parts.join(", ")}${FIT_WORDS[fit ?? "svd"]})`;
}

const FIT_WORDS: Record<LowRankFit, string> = {
  svd: "",
  refit: ", refitted to the codes",
  hessian: ", fitted in the inputs' norm",
};

/** Rotation plan knobs the command line sets. */
type RotationKnobs = NonNullable<QuantizeOptions["rotationOptions"]>;

/** ", adaptive rotation (unsmoothed)" for the "wrote" line; nothing without a rotation. */
function rotationWords(rotation: string, knobs: RotationKnobs | undefined): string {
  if (rotation === "none") return "";
  const how = knobs?.smooth === false
    ? " (unsmoothed)"
    : knobs?.alpha !== undefined
    ? ` (smoothing α ${knobs.alpha})`
    : "";
  return `, ${rotation} rotation${how}`;
}

/** The outlier-aware greedy objectives (runtime/quant/rotation.ts's greedyObjective). */
const GREEDY_OBJECTIVES = ["rowmax", "range", "absmax"] as const;
type GreedyObjective = typeof GREEDY_OBJECTIVES[number];

/** The branches a `--rotation-override` may force. */
const ROTATION_BRANCHES: readonly RotationKind[] = ["hadamard", "outlier", "none"];

/** The rotation options of the command line, as given. */
interface RotationArgs {
  tau?: number;
  alpha?: number;
  noSmooth: boolean;
  overrideList?: string;
  select?: ArsSelect;
  seed?: number;
  greedyObjective?: GreedyObjective;
}

/** The rotation plan knobs (τ, ARS selection, overrides, α, smoothing, seed), or undefined. */
function rotationKnobs(rotation: string, a: RotationArgs): RotationKnobs | undefined {
  const { tau, alpha, noSmooth, overrideList, select, seed, greedyObjective } = a;
  const knobs: RotationKnobs = {};
  if (tau !== undefined) knobs.tau = tau;
  if (select !== undefined) knobs.select = select;
  if (alpha !== undefined) knobs.alpha = alpha;
  if (noSmooth) knobs.smooth = false;
  if (seed !== undefined) knobs.seed = seed;
  if (greedyObjective !== undefined) knobs.greedyObjective = greedyObjective;
  if (overrideList !== undefined) {
    knobs.overrides = {};
    for (const item of overrideList.split(",").map((x) => x.trim()).filter(Boolean)) {
      const [pattern, branch, ...rest] = item.split("=").map((x) => x.trim());
      if (!pattern || rest.length || !ROTATION_BRANCHES.includes(branch as RotationKind)) {
        throw new UsageError(
          `--rotation-override: "${item}" is not PATTERN=BRANCH with BRANCH one of ` +
            ROTATION_BRANCHES.join(", "),
        );
      }
      knobs.overrides[pattern] = branch as RotationKind;
    }
  }
  if ((select !== undefined || tau !== undefined || knobs.overrides) && rotation !== "adaptive") {
    throw new UsageError(
      "--tau, --ars-select and --rotation-override apply to --rotation adaptive",
    );
  }
  if (tau !== undefined && select !== undefined && select !== "rms") {
    throw new UsageError(
      `--tau is the rms selection's threshold: give it or --ars-select ${select}`,
    );
  }
  if ((alpha !== undefined || noSmooth || seed !== undefined) && rotation === "none") {
    throw new UsageError(
      "--alpha, --no-smooth and --rotation-seed apply to a rotation (hadamard, outlier, adaptive)",
    );
  }
  if (greedyObjective !== undefined && rotation !== "outlier" && rotation !== "adaptive") {
    throw new UsageError("--greedy-objective applies to --rotation outlier or adaptive");
  }
  if (alpha !== undefined && noSmooth) {
    throw new UsageError("give --alpha or --no-smooth, not both");
  }
  return Object.keys(knobs).length ? knobs : undefined;
}

/** Runs quantize; returns the exit code. */
export async function quantize(args: string[]): Promise<number> {
  const o = parseCommand(args, {
    model: { type: "string" },
    quantizer: { type: "string" },
    wbits: { type: "string" },
    abits: { type: "string" },
    rotation: { type: "string" },
    tau: { type: "string" },
    "rotation-override": { type: "string" },
    "ars-select": { type: "string" },
    alpha: { type: "string" },
    "no-smooth": { type: "boolean" },
    "rotation-seed": { type: "string" },
    "greedy-objective": { type: "string" },
    attention: { type: "string" },
    density: { type: "string" },
    "attn-bits": { type: "string" },
    "paro-alpha": { type: "string" },
    "group-size": { type: "string" },
    symmetric: { type: "boolean" },
    "tlq-fit": { type: "string" },
    "tlq-assign": { type: "string" },
    center: { type: "string" },
    "act-group": { type: "string" },
    "act-asym": { type: "boolean" },
    "cfg-delta": { type: "boolean" },
    "low-rank": { type: "string" },
    "low-rank-override": { type: "string" },
    "low-rank-fit": { type: "string" },
    gptq: { type: "boolean" },
    "gptq-device": { type: "string" },
    "gptq-damp": { type: "string" },
    "gptq-refit": { type: "boolean" },
    "abits-override": { type: "string" },
    "keep-fp": { type: "string" },
    out: { type: "string" },
    force: { type: "boolean" },
    "calib-prompts": { type: "string" },
    "calib-file": { type: "string" },
    "calib-embeds": { type: "string" },
    "calib-steps": { type: "string" },
    "text-encoder": { type: "string" },
    "max-sequence-length": { type: "string" },
    "text-encoder-dtype": { type: "string" },
    "calib-height": { type: "string" },
    "calib-width": { type: "string" },
    report: { type: "boolean" },
    "report-prompts": { type: "string" },
    "report-steps": { type: "string" },
    adapter: { type: "string" },
  }, QUANTIZE_USAGE);
  if (!o) return 0;
  const v = o.values;
  for (const k of ["quantizer", "wbits", "abits", "out"] as const) {
    if (v[k] === undefined) throw new UsageError(`--${k} is required`);
  }
  const out = v.out!;
  if (!out.endsWith(".safetensors")) throw new UsageError("--out must name a .safetensors file");
  const { quantizer, wbits, rotation, attention } = checkPluginArgs(v);
  const abits = o.number("abits", 16, { integer: true });
  if (!(ABITS as readonly number[]).includes(abits)) {
    throw new UsageError(`--abits must be one of ${ABITS.join(", ")}, got ${abits}`);
  }
  const density = o.optionalNumber("density", { min: 0.01, max: 1 });
  const attnBits = o.optionalChoice("attn-bits", ["8", "4"] as const);
  const paroAlpha = o.optionalNumber("paro-alpha", { min: 0, max: 1 });
  if (paroAlpha !== undefined && attention !== "paro") {
    throw new UsageError("--paro-alpha applies to --attention paro");
  }
  const groupSize = o.number("group-size", 0, { min: 0, integer: true });
  const lowRank = o.number("low-rank", 0, { min: 0, max: LOW_RANK_MAX, integer: true });
  const lowRankOverride = parseLowRankOverride(v["low-rank-override"]);
  const lowRankFit = o.optionalChoice("low-rank-fit", LOW_RANK_FITS);
  if (lowRankFit && !lowRank && !lowRankOverride?.some((r) => r.rank > 0)) {
    throw new UsageError("--low-rank-fit needs --low-rank (or --low-rank-override) above 0");
  }
  if (lowRankFit === "hessian" && !v.gptq) {
    throw new UsageError("--low-rank-fit hessian needs --gptq (its calibration Gram matrices)");
  }
  const adapter = o.choice<AdapterChoice>("adapter", ADAPTER_CHOICES, "auto");
  const gptqDevice = o.choice("gptq-device", ["auto", "gpu", "cpu"] as const, "auto");
  const center = o.optionalChoice("center", CENTER_MODES);
  const tlqFit = o.optionalChoice("tlq-fit", TLQ_FITS);
  if (tlqFit !== undefined && quantizer !== "tlq") {
    throw new UsageError("--tlq-fit applies to --quantizer tlq");
  }
  const tlqAssign = o.optionalChoice("tlq-assign", ["log", "nearest"] as const);
  if (tlqAssign !== undefined && quantizer !== "tlq") {
    throw new UsageError("--tlq-assign applies to --quantizer tlq");
  }
  if (tlqAssign === "log" && tlqFit === "mse") {
    throw new UsageError(
      "--tlq-fit mse puts each weight on its nearest level: no --tlq-assign log",
    );
  }
  const actGroup = o.optionalNumber("act-group", { min: 16, integer: true });
  if (actGroup !== undefined && !isActGroup(actGroup)) {
    throw new UsageError(`--act-group must be a multiple of 16, got ${actGroup}`);
  }
  if (actGroup !== undefined && abits === 16) {
    throw new UsageError("--act-group needs --abits 4, 6 or 8");
  }
  const actAsym = v["act-asym"] ?? false;
  if (actAsym && actGroup === undefined) throw new UsageError("--act-asym needs --act-group");
  const cfgDelta = v["cfg-delta"] ?? false;
  if (cfgDelta && abits === 16) throw new UsageError("--cfg-delta needs --abits 4, 6 or 8");
  for (const k of ["gptq-device", "gptq-damp", "gptq-refit"] as const) {
    if (v[k] !== undefined && !v.gptq) throw new UsageError(`--${k} needs --gptq`);
  }
  const gptqDamp = o.optionalNumber("gptq-damp", { min: 0 });
  const reportPrompts = o.number("report-prompts", 2, { min: 1, max: 16, integer: true });
  const reportSteps = o.number("report-steps", 3, { min: 1, max: 100, integer: true });
  const calibPrompts = o.optionalNumber("calib-prompts", { min: 1, integer: true });
  const calibSteps = o.optionalNumber("calib-steps", { min: 1, max: 100, integer: true });
  const textEncoderDtype = o.choice("text-encoder-dtype", TEXT_WEIGHTS, "auto");
  const calibHeight = o.optionalNumber("calib-height", { min: 1, max: 16384, integer: true });
  const calibWidth = o.optionalNumber("calib-width", { min: 1, max: 16384, integer: true });
  const maxSequenceLength = o.optionalNumber("max-sequence-length", {
    min: 1,
    max: 4096,
    integer: true,
  });
  const rotationOptions = rotationKnobs(rotation, {
    tau: o.optionalNumber("tau", { min: 0 }),
    alpha: o.optionalNumber("alpha", { min: 0, max: 1 }),
    noSmooth: v["no-smooth"] ?? false,
    overrideList: v["rotation-override"],
    select: o.optionalChoice("ars-select", ARS_SELECT),
    seed: o.optionalNumber("rotation-seed", { min: 0, integer: true }),
    greedyObjective: o.optionalChoice("greedy-objective", GREEDY_OBJECTIVES),
  });
  await checkModelFolder(v.model);
  const textEncoder = v["text-encoder"];
  if (textEncoder !== undefined && !(await Deno.stat(textEncoder).catch(() => null))?.isDirectory) {
    throw new UsageError(`--text-encoder ${textEncoder} is not a folder`);
  }
  await checkWritable(out, v.force ?? false, "--out");
  for (const k of ["calib-prompts", "calib-file"] as const) {
    if (v["calib-embeds"] !== undefined && v[k] !== undefined) {
      throw new UsageError(`give --${k} or --calib-embeds, not both`);
    }
  }
  // A real checkpoint's text encoders calibrate on captions; the bundled model on emoji names.
  const captions = !v["calib-embeds"] &&
    await usesCaptionEncoder(v.model ?? DEFAULT_MODEL_DIR, { textEncoder });
  const calibPromptList = await calibrationPrompts(v["calib-file"], calibPrompts, captions);
  const calibEmbeds = v["calib-embeds"] === undefined
    ? undefined
    : await readCalibrationEmbeds(v["calib-embeds"]);
  // The prompt encoders and image size of the calibration and of the --report run alike.
  const encoder = {
    textEncoder,
    maxSequenceLength,
    textEncoderDtype,
    height: calibHeight,
    width: calibWidth,
  };

  if (quantizer === "tlq" && groupSize > 0 && tlqFit !== "mse") {
    info(
      "note: tlq groups with percentile grids (the default --tlq-fit) start each group's grid at " +
        "its smallest |w|; on the bundled model they gain no weight SQNR. Add --tlq-fit mse.",
    );
  }
  const t0 = performance.now();
  let bar: ProgressBar | undefined;
  const cal = new CalibrationProgress("calibrating");
  const r = await quantizeModel({
    model: v.model,
    quantizer,
    wbits,
    abits,
    rotation: rotation,
    rotationOptions,
    attention: attention,
    density,
    attnBits: attnBits === undefined ? undefined : Number(attnBits),
    paroAlpha,
    groupSize,
    symmetric: v.symmetric,
    tlqFit: tlqFit === "mse" ? "mse" : undefined,
    tlqAssign: tlqAssign === "nearest" ? "nearest" : undefined,
    gptq: v.gptq ?? false,
    gptqSqnr: v.report ?? false,
    gptqDevice,
    gptqDamp,
    gptqRefit: v["gptq-refit"] || undefined,
    abitsOverride: parseAbitsOverride(v["abits-override"]),
    center,
    actGroup,
    actAsym,
    cfgDelta,
    lowRank: lowRank || undefined,
    lowRankOverride,
    lowRankFit,
    keepFp: v["keep-fp"]?.split(",").map((s) => s.trim()).filter(Boolean),
    calibration: {
      prompts: calibPromptList,
      embeds: calibEmbeds,
      ...encoder,
      steps: calibSteps,
    },
    onCalibration: (p) => cal.update(p),
    onLayer: (_done, total) => {
      if (!bar) cal.done();
      bar ??= new ProgressBar(v.gptq ? "quantizing (GPTQ)" : "quantizing", total);
    },
    // Layers finished: with --gptq the jobs run behind the loop, the biggest for minutes.
    onLayerDone: (done) => bar?.update(done),
  });
  bar?.done();
  const bytes = await writeArtifact(out, r, { force: v.force });
  const q = r.layers.filter((l) => l.quantizer !== "fp");
  const f32 = q.reduce((s, l) => s + l.bytesF32, 0);
  const qb = q.reduce((s, l) => s + l.bytes, 0);
  info(
    `wrote ${out} (${(bytes / 1e6).toFixed(2)} MB): ${q.length} layers ${quantizer} ` +
      `W${wbits}A${abits}${groupSize ? ` (weights in groups of ${groupSize})` : ""}` +
      `${tlqFit === "mse" ? " (grids fitted by least squares)" : ""}` +
      `${tlqAssign === "nearest" && tlqFit !== "mse" ? " (nearest levels)" : ""}` +
      `${center ? ` (inputs centred by the ${center})` : ""}` +
      `${actGroup ? ` (a${actAsym ? "n asymmetric" : ""} scale per ${actGroup} channels)` : ""}` +
      `${cfgDelta ? " (CFG delta)" : ""}` +
      `${branchWords(q, r.plan.settings.lowRankFit)}` +
      `${rotationWords(rotation, rotationOptions)}, ` +
      `${r.layers.length - q.length} FP; weights quantized in ` +
      `${(r.ms / 1000).toFixed(1)} s` +
      (r.gptqGpuLayers === undefined
        ? ""
        : ` (GPTQ: ${r.gptqGpuLayers} of ${q.length} layers on the GPU)`),
  );

  let act: Awaited<ReturnType<typeof measureActivationError>> | undefined;
  let rot: RotationReportRow[] | undefined;
  if (v.report) {
    if (abits < 16 && q.length > 0) {
      const rt = await createRuntime({ adapter });
      try {
        info(`measuring activation error on ${rt.info.description} ...`);
        const n = calibEmbeds?.embeds.shape[0] ?? reportPrompts; // or the --calib-embeds rows
        const bar2 = new ProgressBar("activations", n * reportSteps);
        act = await measureActivationError(rt, {
          model: v.model,
          layers: q.filter((l) => l.abits === abits).map((l) => l.name), // overridden: not measured
          abits,
          rotations: r.rotations,
          center: r.plan.settings.center,
          actGroup: r.plan.settings.actGroup,
          actAsym: r.plan.settings.actAsym,
          cfgDelta: r.plan.settings.cfgDelta,
          prompts: (captions ? CAPTION_CALIBRATION_PROMPTS : CALIBRATION_PROMPTS)
            .slice(0, reportPrompts),
          embeds: calibEmbeds,
          ...encoder,
          steps: reportSteps,
          onProgress: (p) => bar2.update(p.prompt * p.steps + p.step),
        });
        bar2.done();
      } finally {
        rt.destroy();
      }
    }
    info(formatReport(r.layers, act));
    if (r.rotations.size > 0) {
      const s = r.plan.settings;
      const report = await buildRotationReport(undefined, {
        model: v.model,
        plans: r.rotations,
        stats: r.stats,
        bits: abits,
        layerBits: new Map(Object.entries(r.plan.layers).map(([n, l]) => [n, l.abits])),
        group: s.actGroup,
        asym: s.actAsym,
        center: s.center !== undefined,
      });
      rot = report.rows;
      info(
        `\nrotations: the branch each layer took, its input RMS J, and the output error of the ` +
          `activation quantizer alone before → after the transform (≤ ${ERROR_ROWS} calibration rows a layer)\n` +
          report.text,
      );
    }
  }
  if (v.json) {
    emitJson({
      out,
      bytes,
      quantizer,
      wbits,
      abits,
      rotation: r.plan.settings.rotation,
      gptq: r.plan.settings.gptq,
      gptq_gpu_layers: r.gptqGpuLayers ?? null,
      group_size: r.plan.settings.groupSize,
      center: r.plan.settings.center ?? null,
      act_group: r.plan.settings.actGroup ?? null,
      act_asym: r.plan.settings.actAsym ?? false,
      cfg_delta: r.plan.settings.cfgDelta ?? false,
      low_rank: r.plan.settings.lowRank ?? 0,
      low_rank_override: r.plan.settings.lowRankOverride ?? null,
      low_rank_fit: r.plan.settings.lowRankFit ?? null,
      attention: r.plan.settings.attention,
      layers_quantized: q.length,
      layers_fp: r.layers.length - q.length,
      weight_bytes: qb,
      weight_bytes_f32: f32,
      sha256: r.plan.source.sha256,
      quantize_ms: r.ms,
      ms: performance.now() - t0,
      layers: v.report
        ? r.layers.map((l) => ({
          name: l.name,
          quantizer: l.quantizer,
          sqnr_db: l.sqnrDb,
          ...(l.outSqnrDb === undefined
            ? {}
            : { out_sqnr_round_db: l.outSqnrRtnDb, out_sqnr_gptq_db: l.outSqnrDb }),
          int8_lut_error: l.int8LutError,
          ...(l.lowRank ? { low_rank: l.lowRank } : {}),
          ...(l.lowRankEnergy === undefined ? {} : { low_rank_energy: l.lowRankEnergy }),
          act_rel_error: act?.get(l.name)?.relErr ?? null,
          bytes: l.bytes,
        }))
        : undefined,
      rotations: rot?.map((x) => ({
        layer: x.layer,
        branch: x.kind,
        J: x.J,
        block: x.block,
        err_before: x.errBefore,
        err_after: x.errAfter,
        note: x.note,
      })),
    });
  }
  return 0;
}
