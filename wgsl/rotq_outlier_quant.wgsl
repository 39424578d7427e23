// Per-token quantization after rotq_outlier_tiled.wgsl's stage 2: one invocation per
// output word (four codes). The row's absmax is the max of its per-block maxima (exact:
// max does not round), then quant_grid.wgsl's arithmetic, as the row kernel
// (rotq_outlier.wgsl) and the CPU reference: Δ = amax / qmax, inv = 1/Δ (0 for a zero row),
// q = clamp(round(v·inv), −qmax − 1, qmax), four codes packed little-endian per u32.
override WG: u32 = 256u;
override BITS: u32 = 8u;

struct Params { M: u32, words: u32, nb: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<vec4<f32>>;   // rotated rows [M, 4·words]
@group(0) @binding(2) var<storage, read> part: array<f32>;      // [M, nb] absmax per block
@group(0) @binding(3) var<storage, read_write> codes: array<u32>;
@group(0) @binding(4) var<storage, read_write> scales: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wid.x + wid.y * ng.x) * WG + lid;
  if (i >= p.M * p.words) { return; }
  let row = i / p.words;
  var amax = 0.0;
  for (var b = 0u; b < p.nb; b++) { amax = max(amax, part[row * p.nb + b]); }
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  let d = sym_grid(amax, qmax);
  if (i % p.words == 0u) { scales[row] = d.x; }
  codes[i] = pack_sym(z[i], d.y, qmax);
}
