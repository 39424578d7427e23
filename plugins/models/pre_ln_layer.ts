/**
 * The pre-LN transformer layer that the bundled model's caption encoder and CLIP's text
 * encoder share: x += o(attention(LN₁(x))), x += fc2(act(fc1(LN₂(x)))), affine LayerNorms and
 * biased linears, f32 activations (CLIP's weights f32 or f16: text_weights.ts). Each encoder
 * names its tensors and brings its own attention (the
 * emoji encoder: padded keys dropped; CLIP: causal) and activation.
 *
 * @module
 */
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import type { Tensor } from "../../runtime/gpu/tensor.ts";
import type { DenseLinear } from "../../runtime/model/linear.ts";
import { LoadedSoFar, type WeightLoader } from "../../runtime/model/weights.ts";
import type { GemmActivation } from "../../runtime/ops/gemm.ts";
import { layerNorm } from "../../runtime/ops/norm.ts";
import { textLinear, type TextWeights } from "./text_weights.ts";

/** A layer's checkpoint names (without .weight / .bias). */
export interface PreLnNames {
  norm1: string;
  norm2: string;
  q: string;
  k: string;
  v: string;
  o: string;
  fc1: string;
  fc2: string;
}

/** A layer's tensors on the GPU. */
export interface PreLnLayer {
  n1w: Tensor;
  n1b: Tensor;
  n2w: Tensor;
  n2b: Tensor;
  q: DenseLinear;
  k: DenseLinear;
  v: DenseLinear;
  o: DenseLinear;
  fc1: DenseLinear;
  fc2: DenseLinear;
}

/** Adds a layer's tensors (width d, MLP width ff) to a name → shape map. */
export function preLnShapes(m: Map<string, number[]>, n: PreLnNames, d: number, ff: number): void {
  for (const p of [n.norm1, n.norm2]) {
    m.set(`${p}.weight`, [d]);
    m.set(`${p}.bias`, [d]);
  }
  for (const p of [n.q, n.k, n.v, n.o]) {
    m.set(`${p}.weight`, [d, d]);
    m.set(`${p}.bias`, [d]);
  }
  m.set(`${n.fc1}.weight`, [ff, d]);
  m.set(`${n.fc1}.bias`, [ff]);
  m.set(`${n.fc2}.weight`, [d, ff]);
  m.set(`${n.fc2}.bias`, [d]);
}

/**
 * Loads one layer from a loader that declared {@linkcode preLnShapes}: f32, the linears'
 * weights stored as `weights` says (default f32).
 */
export async function loadPreLnLayer(
  rt: Runtime,
  w: WeightLoader,
  n: PreLnNames,
  weights: TextWeights = "f32",
): Promise<PreLnLayer> {
  const made = new LoadedSoFar();
  const gpu = async (name: string) => made.keep(await w.gpu(rt, name, "f32"));
  const lin = async (name: string) => made.keep(await textLinear(rt, w, name, weights));
  try {
    return {
      n1w: await gpu(`${n.norm1}.weight`),
      n1b: await gpu(`${n.norm1}.bias`),
      n2w: await gpu(`${n.norm2}.weight`),
      n2b: await gpu(`${n.norm2}.bias`),
      q: await lin(n.q),
      k: await lin(n.k),
      v: await lin(n.v),
      o: await lin(n.o),
      fc1: await lin(n.fc1),
      fc2: await lin(n.fc2),
    };
  } catch (e) {
    made.release();
    throw e;
  }
}

/** How a layer runs: its LayerNorm epsilon, attention over [B, L, d] q/k/v, and MLP activation. */
export interface PreLnRun {
  B: number;
  L: number;
  eps: number;
  attend: (q: Tensor, k: Tensor, v: Tensor) => Tensor;
  activation: GemmActivation;
}

/** Records one layer over x [B·L, d] → the new x (x itself is released). */
export function preLnForward(rec: Recorder, x: Tensor, l: PreLnLayer, r: PreLnRun): Tensor {
  const d = x.shape[x.shape.length - 1]!;
  const { B, L, eps } = r;
  const a = layerNorm(rec, x, { eps, weight: l.n1w, bias: l.n1b });
  const q = l.q.forward(rec, a).reshape([B, L, d]);
  const k = l.k.forward(rec, a).reshape([B, L, d]);
  const v = l.v.forward(rec, a).reshape([B, L, d]);
  a.release();
  const att = r.attend(q, k, v);
  for (const t of [q, k, v]) t.release();
  const x1 = l.o.forward(rec, att.reshape([B * L, d]), { residual: x });
  att.release();
  x.release();
  const n = layerNorm(rec, x1, { eps, weight: l.n2w, bias: l.n2b });
  const h = l.fc1.forward(rec, n, { activation: r.activation });
  n.release();
  const out = l.fc2.forward(rec, h, { residual: x1 });
  h.release();
  x1.release();
  return out;
}

/** Bytes of a layer's tensors on the GPU. */
export function preLnLayerBytes(l: PreLnLayer): number {
  return [l.n1w, l.n1b, l.n2w, l.n2b].reduce((a, t) => a + t.byteLength, 0) +
    [l.q, l.k, l.v, l.o, l.fc1, l.fc2].reduce((a, m) => a + m.weightBytes, 0);
}

/** Frees a layer's tensors. */
export function releasePreLnLayer(l: PreLnLayer): void {
  for (const t of [l.n1w, l.n1b, l.n2w, l.n2b]) t.release();
  for (const m of [l.q, l.k, l.v, l.o, l.fc1, l.fc2]) m.release();
}
