/**
 * Builds a copy of a PixArt model folder with injected salient activation channels and
 * the same FP function (up to f32 rounding), so that the outlier-aware rotation branch
 * is exercised on a real model (issue 6's premise check).
 *
 * A salient channel here is a large constant offset β in one channel of a linear
 * layer's input, for every token, prompt and timestep (as the paper's salient channels:
 * fixed channels, hundreds of times the typical value, fixed sign). Each offset is exact
 * to compensate in the next layer's bias (b ← b − β·W[:, c]):
 *
 * - attn1 q/k/v input (norm1 output): shift_msa row of the block's scale_shift_table;
 * - ff1 input (norm2 output): shift_mlp row of the table;
 * - attn1 to_out input (attention output): to_v's bias (softmax rows sum to 1, so a
 *   constant in V passes through unchanged);
 * - attn2 to_out input: attn2 to_v's bias, likewise.
 *
 * A per-channel rescale would not do: SmoothQuant's m_j = √(max|X_j| / max|W_:,j|) is
 * equivariant to it and removes it exactly; an offset keeps max|X_j|·max|W_:,j| large.
 *
 *     deno run -A tools/salient_model.ts SRC_DIR OUT_DIR [--beta 245,-150,100] [--seed 0]
 *
 * @module
 */
import { join } from "node:path";
import { Prng } from "../runtime/io/prng.ts";
import { openCheckpoint } from "../runtime/io/safetensors_index.ts";
import { type TensorToWrite, writeSafetensors } from "../runtime/io/safetensors.ts";

/** Options of {@linkcode injectSalientChannels}. */
export interface InjectOptions {
  /** Offsets, one salient channel per value at each injection site; default [245, −150, 100]. */
  betas?: readonly number[];
  /** Seed of the channel choice; default 0. */
  seed?: number;
}

/** One injected channel. */
export interface InjectedChannel {
  /** The layer whose input carries it (the q/k/v site lists to_q). */
  layer: string;
  /** Channel index. */
  channel: number;
  /** The offset. */
  beta: number;
}

async function copyDir(src: string, dst: string, skip: (name: string) => boolean): Promise<void> {
  await Deno.mkdir(dst, { recursive: true });
  for await (const e of Deno.readDir(src)) {
    if (skip(e.name)) continue;
    const s = join(src, e.name);
    const d = join(dst, e.name);
    if (e.isDirectory) await copyDir(s, d, () => false);
    else if (e.isFile) await Deno.copyFile(s, d);
  }
}

/**
 * Writes `outDir`: a copy of the model folder `srcDir` whose transformer (all tensors
 * stored as F32) has salient channels injected in every block. Returns the channels.
 */
export async function injectSalientChannels(
  srcDir: string,
  outDir: string,
  o: InjectOptions = {},
): Promise<InjectedChannel[]> {
  const betas = o.betas ?? [245, -150, 100];
  const tdir = join(srcDir, "transformer");
  const config = JSON.parse(await Deno.readTextFile(join(tdir, "config.json")));
  const D = config.num_attention_heads * config.attention_head_dim;
  const L = config.num_layers;
  if (betas.length > D) throw new RangeError(`more offsets (${betas.length}) than channels (${D})`);
  const src = await openCheckpoint(tdir);
  const t = new Map<string, { data: Float32Array; shape: number[] }>();
  try {
    for (const [name, info] of src.tensors) {
      t.set(name, { data: await src.readF32(name), shape: [...info.shape] });
    }
  } finally {
    src.close();
  }
  const get = (name: string) => {
    const v = t.get(name);
    if (!v) throw new RangeError(`${tdir}: no tensor ${name}`);
    return v;
  };
  const g = new Prng(o.seed ?? 0);
  const pick = () => {
    const chosen = new Set<number>();
    while (chosen.size < betas.length) chosen.add(Math.floor(g.uniform() * D));
    return [...chosen];
  };
  // b ← b − β·W[:, c] for the layer reading the offset channel.
  const compensate = (layer: string, c: number, beta: number) => {
    const w = get(`${layer}.weight`);
    const b = get(`${layer}.bias`);
    const K = w.shape[1];
    for (let n = 0; n < w.shape[0]; n++) b.data[n] = b.data[n] - beta * w.data[n * K + c];
  };
  const out: InjectedChannel[] = [];
  for (let i = 0; i < L; i++) {
    const p = `transformer_blocks.${i}`;
    const table = get(`${p}.scale_shift_table`); // [6, D]: shift_msa, scale_msa, gate_msa, shift_mlp, …
    const sites: [string, number, string[]][] = [
      [`${p}.attn1.to_q`, 0, ["attn1.to_q", "attn1.to_k", "attn1.to_v"]],
      [`${p}.ff.net.0.proj`, 3, ["ff.net.0.proj"]],
    ];
    for (const [layer, row, readers] of sites) {
      for (const [j, c] of pick().entries()) {
        table.data[row * D + c] += betas[j];
        for (const r of readers) compensate(`${p}.${r}`, c, betas[j]);
        out.push({ layer, channel: c, beta: betas[j] });
      }
    }
    for (const attn of ["attn1", "attn2"]) {
      const v = get(`${p}.${attn}.to_v.bias`);
      for (const [j, c] of pick().entries()) {
        v.data[c] += betas[j];
        compensate(`${p}.${attn}.to_out.0`, c, betas[j]);
        out.push({ layer: `${p}.${attn}.to_out.0`, channel: c, beta: betas[j] });
      }
    }
  }
  await copyDir(srcDir, outDir, (n) => n === "transformer");
  const odir = join(outDir, "transformer");
  await Deno.mkdir(odir, { recursive: true });
  await Deno.copyFile(join(tdir, "config.json"), join(odir, "config.json"));
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, v] of t) tensors[name] = { dtype: "F32", shape: v.shape, data: v.data };
  await writeSafetensors(join(odir, "diffusion_pytorch_model.safetensors"), tensors, {
    salient_channels: JSON.stringify(out),
    source: srcDir,
  });
  return out;
}

if (import.meta.main) {
  const args = [...Deno.args];
  const flag = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  };
  const beta = flag("--beta");
  const seed = flag("--seed");
  const [src, dst] = args;
  if (!src || !dst) {
    console.error(
      "usage: deno run -A tools/salient_model.ts SRC_DIR OUT_DIR [--beta 245,-150,100] [--seed N]",
    );
    Deno.exit(2);
  }
  const channels = await injectSalientChannels(src, dst, {
    betas: beta?.split(",").map(Number),
    seed: seed ? Number(seed) : undefined,
  });
  console.log(JSON.stringify({ out: dst, channels: channels.length }));
}
