/**
 * Weight SQNR of uniform, TLQ (METHODS.md's percentile grids) and TLQ with least-squares
 * grids (`--tlq-fit mse`) on the weights the quantizer sees under a rotation: smoothed and
 * rotated (W·diag(m)·R), as `deno task quantize --rotation R` quantizes them. Per layer the
 * SQNR comes from quantizeModel's own report (10·log10(Σw²/Σ(ŵ − w)²) of the transformed
 * weight); the share of layers where each TLQ beats uniform is issue 5's W3 figure.
 * bench/quant_weights.ts does the same on the weights as stored, without a calibration run.
 *
 *     deno run -A bench/quant_weights_rotated.ts [--model models/emoji-s] [--rotation hadamard]
 *         [--adapter auto|gpu|cpu] [--write]
 *
 * The rotation's calibration statistics come from the cache (runtime/quant/calibrate.ts), so
 * only the first run calibrates. With --write: `bench/results/<device>/<date>_quant_weights_
 * <rotation>.{json,md}`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ADAPTER_CHOICES, type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { quantizeModel } from "../runtime/quant/quantize.ts";
import {
  type BenchResult,
  deviceSlug,
  figureRow,
  fmt,
  gitCommit,
  type ResultsFile,
  resultsHeader,
  writeResults,
} from "./harness.ts";

/** The quantizers compared, as quantizeModel's options. */
const VARIANTS = [
  { key: "uniform", quantizer: "uniform" },
  { key: "tlq", quantizer: "tlq" },
  { key: "tlq_mse", quantizer: "tlq", tlqFit: "mse" as const },
];

/** One variant's per-layer weight SQNR (dB) at `wbits` under `rotation`. */
async function layerSqnr(
  model: string,
  rotation: string,
  wbits: number,
  v: (typeof VARIANTS)[number],
  rt: Awaited<ReturnType<typeof createRuntime>>,
): Promise<Map<string, number>> {
  const r = await quantizeModel({
    model,
    quantizer: v.quantizer,
    wbits,
    abits: 16,
    rotation,
    ...(v.tlqFit ? { tlqFit: v.tlqFit } : {}),
    runtime: rt,
  });
  return new Map(r.layers.filter((l) => l.sqnrDb !== null).map((l) => [l.name, l.sqnrDb!]));
}

/** The results rows of one model and rotation: mean SQNR per variant and bits, TLQ's wins. */
export function rotatedResults(
  prefix: string,
  sqnr: Record<string, Map<string, number>>,
): BenchResult[] {
  const rows: BenchResult[] = [];
  const row = (name: string, value: number, unit: string) =>
    rows.push(figureRow(`${prefix}_${name}`, value, unit));
  for (const [k, m] of Object.entries(sqnr)) {
    row(`sqnr_${k}`, [...m.values()].reduce((a, b) => a + b, 0) / m.size, "dB");
  }
  for (const bits of [3, 4]) {
    const u = sqnr[`uniform_w${bits}`];
    for (const t of ["tlq", "tlq_mse"]) {
      const q = sqnr[`${t}_w${bits}`];
      const wins = [...u.keys()].filter((n) => q.get(n)! > u.get(n)!).length;
      row(`${t}_wins_w${bits}`, (100 * wins) / u.size, "% of layers");
    }
  }
  return rows;
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "models/emoji-s" },
      rotation: { type: "string", default: "hadamard" },
      adapter: { type: "string", default: "auto" },
      write: { type: "boolean", default: false },
    },
  });
  if (!ADAPTER_CHOICES.includes(v.adapter as AdapterChoice)) {
    throw new RangeError(`--adapter must be ${ADAPTER_CHOICES.join(", ")}`);
  }
  const rt = await createRuntime({ adapter: v.adapter as AdapterChoice });
  try {
    const sqnr: Record<string, Map<string, number>> = {};
    for (const bits of [3, 4]) {
      for (const variant of VARIANTS) {
        console.error(`${variant.key} W${bits} (${v.rotation})…`);
        sqnr[`${variant.key}_w${bits}`] = await layerSqnr(v.model!, v.rotation!, bits, variant, rt);
      }
    }
    const model = v.model!.replace(/\/$/, "").split("/").pop()!;
    const prefix = `quant_weights_${model.replace(/[^a-z0-9]+/gi, "_").toLowerCase()}_${
      v.rotation!.replace(/[^a-z0-9]+/gi, "_")
    }`;
    const command =
      `deno run -A bench/quant_weights_rotated.ts --model ${v.model} --rotation ${v.rotation}${
        v.adapter === "auto" ? "" : ` --adapter ${v.adapter}`
      } --write`;
    const file: ResultsFile = {
      ...resultsHeader(rt.info.description, await gitCommit(), command),
      results: rotatedResults(prefix, sqnr),
      extra: {
        note: "weight SQNR of the smoothed and rotated weights (W·diag(m)·R), W3/W4, A16; " +
          "tlq = METHODS.md's percentile grids, tlq_mse = --tlq-fit mse",
        layers: Object.fromEntries(
          [...sqnr.uniform_w3.keys()].map((n) => [n, Object.keys(sqnr).map((k) => sqnr[k].get(n))]),
        ),
        columns: Object.keys(sqnr),
      },
    };
    for (const r of file.results) console.log(`${r.name}\t${fmt(r.value)} ${r.unit}`);
    if (v.write) {
      const slug = deviceSlug(rt.info.description, rt.info.fallback);
      const p = await writeResults(slug, `quant_weights_${v.rotation}`, file);
      console.error(`wrote ${p.json} and .md`);
    }
  } finally {
    rt.destroy();
  }
}
