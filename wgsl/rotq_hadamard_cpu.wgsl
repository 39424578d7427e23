// Randomised block-Hadamard rotation for CPU adapters (llvmpipe/lavapipe): one invocation
// per (token, block) keeps the block in a private array and runs every butterfly stage
// itself, so there are no barriers (each one switches every invocation of the workgroup
// there) and no workgroup memory. The row's quantizer runs after it (actQuant on z).
//
// As rotq_hadamard.wgsl and the CPU reference (runtime/reference/rotq.ts): v = x ⊙ s (one
// rounding) then butterflies (a + b, a − b) in f32, stages h = 1, 2, 4, … in order, so the
// values match bit for bit. Stages 1 and 2 run inside a vec4; the rest pair vec4s h/4 apart.
override WG: u32 = 64u;
override QUANT: bool = true; // z (f32, for the quantizer), else y (DT)

// The Hadamard block (a power of two ≥ 4 dividing K): a const, as it sizes a private array;
// runtime/ops/rotq_cpu.ts writes it into the source.
const BLOCK: u32 = 128u;

struct Params { M: u32, K: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT4>;
@group(0) @binding(2) var<storage, read> s: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<DT4>;
@group(0) @binding(4) var<storage, read_write> z: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let lane = gid.x + gid.y * ng.x * WG;
  let nb = p.K / BLOCK;
  let row = lane / nb;
  if (row >= p.M) { return; }
  let n4 = BLOCK / 4u;
  let c4 = (lane % nb) * n4;     // the block's first vec4 in the row
  let base = row * (p.K / 4u) + c4;
  var v: array<vec4<f32>, BLOCK / 4u>;
  for (var i = 0u; i < n4; i++) {
    let a = vec4<f32>(x[base + i]) * s[c4 + i];
    let b0 = a.x + a.y;
    let b1 = a.x - a.y;
    let b2 = a.z + a.w;
    let b3 = a.z - a.w;
    v[i] = vec4<f32>(b0 + b2, b1 + b3, b0 - b2, b1 - b3);
  }
  for (var h = 1u; h < n4; h *= 2u) { // stage 4·h
    for (var t = 0u; t < n4 / 2u; t++) {
      let i = (t / h) * 2u * h + t % h;
      let a = v[i];
      let b = v[i + h];
      v[i] = a + b;
      v[i + h] = a - b;
    }
  }
  for (var i = 0u; i < n4; i++) {
    if (QUANT) { z[base + i] = v[i]; } else { y[base + i] = DT4(v[i]); }
  }
}
