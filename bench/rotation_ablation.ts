/**
 * Quality rows of the rotations (issue 6) for the ablation table: for each setting
 * `quantizer:wbits:abits:rotation` the model is quantized (rotations calibrate once per
 * model, cached in .cache/calib), loaded, and its images for the same prompts and seeds
 * are compared with the FP32 model's (PSNR/SSIM on 8-bit pixels, cosine of the final
 * latents). Rows are merged into `bench/results/<device>/<date>_ablation.json` with the
 * quantizer rows (bench/quant_ablation.ts's writer: same settings replaced).
 *
 *     deno run -A bench/rotation_ablation.ts --model models/emoji-s-b --prompts 2 --steps 20 \
 *       --settings tlq:4:8:adaptive,tlq:3:8:adaptive,uniform:3:8:adaptive,tlq:4:4:adaptive,\
 *     tlq:4:4:hadamard,tlq:4:4:outlier,tlq:4:4:none [--write]
 *
 * Issue 6's targets (bundled model vs FP32): W4A8 TLQ + adaptive ≥ 30 dB; W3A8 TLQ +
 * adaptive ≥ 24 dB and ≥ 2 dB above uniform + adaptive; W4A4 TLQ + adaptive ≥ 20 dB; at
 * W4A4 adaptive ≥ max(hadamard, outlier).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import {
  compareSamples,
  generateSamples,
  parsePromptList,
  type SampleSet,
} from "../runtime/eval/eval.ts";
import { loadPipeline, type Pipeline } from "../runtime/pipeline.ts";
import { quantizeModel, writeArtifact } from "../runtime/quant/quantize.ts";
import { CALIBRATION_PROMPTS } from "../runtime/quant/calibrate.ts";
import type { RotationChoice } from "../runtime/quant/rotation.ts";
import { deviceSlug } from "./harness.ts";
import { type AblationRow, mergeAblationRows } from "./quant_ablation.ts";

interface Setting {
  quantizer: string;
  wbits: number;
  abits: number;
  rotation: RotationChoice;
}

function parseSettings(s: string): Setting[] {
  return s.split(",").map((x) => x.trim()).filter(Boolean).map((x) => {
    const [quantizer, w, a, rotation] = x.split(":");
    if (!["none", "hadamard", "outlier", "adaptive"].includes(rotation)) {
      throw new RangeError(`bad setting ${x}: quantizer:wbits:abits:rotation`);
    }
    return { quantizer, wbits: Number(w), abits: Number(a), rotation: rotation as RotationChoice };
  });
}

async function measure(pipe: Pipeline, prompts: string[], steps: number, batch: number) {
  const rt = pipe.runtime;
  rt.pool.resetPeak();
  const set = await generateSamples(pipe, { prompts, seeds: [0], steps, batch });
  return {
    set,
    peak: rt.pool.peakBytes,
    msStep: set.ms / (Math.ceil(prompts.length / batch) * steps),
  };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "models/emoji-s-b" },
      settings: {
        type: "string",
        default:
          "tlq:4:8:adaptive,tlq:3:8:adaptive,uniform:3:8:adaptive,tlq:4:4:adaptive,tlq:4:4:hadamard,tlq:4:4:outlier,tlq:4:4:none",
      },
      prompts: { type: "string", default: "2" },
      steps: { type: "string", default: "20" },
      batch: { type: "string", default: "2" },
      "prompt-list": { type: "string" }, // "a|b" instead of the emoji prompt file
      "calib-prompts": { type: "string" },
      "calib-list": { type: "string" }, // "a|b" instead of the calibration prompts
      "calib-steps": { type: "string" },
      write: { type: "boolean", default: false },
    },
  });
  const model = v.model!;
  const prompts = (v["prompt-list"]?.split("|") ?? parsePromptList(
    await Deno.readTextFile(new URL("./prompts/emoji_fidelity.txt", import.meta.url)),
  )).slice(0, Number(v.prompts));
  const steps = Number(v.steps);
  const batch = Number(v.batch);
  // Default: the full calibration (10 prompts × 20 steps), cached per model.
  const calibration = {
    prompts: (v["calib-list"]?.split("|") ?? (v["calib-prompts"] ? CALIBRATION_PROMPTS : undefined))
      ?.slice(0, Number(v["calib-prompts"] ?? Infinity)),
    steps: v["calib-steps"] ? Number(v["calib-steps"]) : undefined,
  };
  const rt = await createRuntime({ adapter: "auto" });
  const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
  const rows: AblationRow[] = [];
  const base = {
    model: model.replace(/\/$/, "").split("/").pop()!,
    attention: "dense",
    density: null,
    attn_bits: null,
    fidelity: null,
    images: prompts.length,
    steps,
  };
  const save = async () => {
    if (!v.write) return;
    const path = await mergeAblationRows(deviceSlug(rt.info.description, rt.info.fallback), rows, {
      device: rt.info.description,
      command: `deno run -A bench/rotation_ablation.ts --model ${model} --settings ${v.settings} ` +
        `--prompts ${v.prompts} --steps ${steps} --batch ${batch}${
          v["calib-prompts"] ? ` --calib-prompts ${v["calib-prompts"]}` : ""
        }${v["calib-list"] ? ` --calib-list "${v["calib-list"]}"` : ""}${
          v["prompt-list"] ? ` --prompt-list "${v["prompt-list"]}"` : ""
        }${v["calib-steps"] ? ` --calib-steps ${v["calib-steps"]}` : ""} --write`,
    });
    log(`wrote ${path}`);
  };
  log(`${model}: FP32 reference, ${prompts.length} prompts × ${steps} steps`);
  const fp = await loadPipeline(rt, { path: model });
  const ref = await measure(fp, prompts, steps, batch);
  rows.push({
    ...base,
    quantizer: "fp32",
    wbits: null,
    abits: null,
    rotation: "none",
    psnr: null,
    psnr_min: null,
    ssim: null,
    cosine: null,
    ms_step: ref.msStep,
    weight_bytes: fp.transformer.weightBytes,
    peak_bytes: ref.peak,
  });
  fp.release();
  await save();
  const tmp = await Deno.makeTempDir({ prefix: "webdit_rot_ablation_" });
  try {
    for (const s of parseSettings(v.settings!)) {
      const t0 = performance.now();
      const r = await quantizeModel({
        model,
        quantizer: s.quantizer,
        wbits: s.wbits,
        abits: s.abits,
        rotation: s.rotation,
        runtime: rt,
        calibration,
      });
      const path = `${tmp}/${s.quantizer}_w${s.wbits}a${s.abits}_${s.rotation}.safetensors`;
      await writeArtifact(path, r, { force: true });
      const kinds = new Map<string, number>();
      for (const p of r.rotations.values()) kinds.set(p.kind, (kinds.get(p.kind) ?? 0) + 1);
      log(
        `${s.quantizer} W${s.wbits}A${s.abits} ${s.rotation}: quantized in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s (${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ") || "no rotation"})`,
      );
      const p = await loadPipeline(rt, { path });
      const m = await measure(p, prompts, steps, batch);
      const c = compareSamples(m.set, ref.set as SampleSet);
      rows.push({
        ...base,
        quantizer: s.quantizer,
        wbits: s.wbits,
        abits: s.abits,
        rotation: s.rotation,
        psnr: c.psnr,
        psnr_min: c.psnrMin,
        ssim: c.ssim,
        cosine: c.cosine,
        ms_step: m.msStep,
        weight_bytes: p.transformer.weightBytes,
        peak_bytes: m.peak,
      });
      log(
        `  PSNR ${c.psnr.toFixed(2)} dB (min ${c.psnrMin.toFixed(2)}), SSIM ${
          c.ssim.toFixed(4)
        }, cosine ${c.cosine.toFixed(5)}`,
      );
      p.release();
      await save();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  console.log(JSON.stringify(rows));
  rt.destroy();
}
