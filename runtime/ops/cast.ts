/**
 * Casts a float tensor between f32 and f16 storage (latents stay f32 for the sampler
 * while an f16 model reads and writes f16).
 *
 * @module
 */
import { composeWgsl } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import src from "../../wgsl/cast.wgsl" with { type: "text" };

type Float = "f32" | "f16";
interface Params {
  n: number;
}

const WG = 256;
const specs = new Map<string, KernelSpec<Params>>();

function castSpec(from: Float, to: Float): KernelSpec<Params> {
  const key = `${from}_${to}`;
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(`alias SRC = ${from};\nalias DST = ${to};\n${src}`, { enableF16: true });
    spec = {
      name: `cast_${key}`,
      source: c.source,
      preludeLines: c.preludeLines + 2,
      bindings: ["uniform", "read", "read_write"],
      constants: () => ({ WG }),
      uniform: { fields: ["u32"], values: (p) => [p.n] },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    specs.set(key, spec);
  }
  return spec;
}

/** Records a cast of `x` to `dtype`; returns `x` itself when it already has that dtype. */
export function cast(rec: Recorder, x: Tensor, dtype: Float, out?: Tensor): Tensor {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`cast: x must be f32 or f16, got ${x.dtype}`);
  }
  if (x.dtype === dtype && !out) return x;
  const o = out ?? createTensor(rec.runtime, x.shape, dtype);
  if (o.size !== x.size || o.dtype !== dtype) {
    throw new RangeError("cast: out must match x's size and the dtype");
  }
  rec.dispatch(castSpec(x.dtype, dtype), { n: x.size }, [x, o]);
  return o;
}
