// Streaming Gram matrix of activations x [M, K] (f32/f16): G [K, K] f32 += Σ xᵀx over the
// rows 0, S, 2S, … (every S-th row: GPTQ's Hessian needs many rows, not all). A workgroup
// of 8×8 threads owns one 32×32 tile of G on or above the diagonal (the reader mirrors the
// rest), each thread a 4×4 block of it in registers; the rows go through workgroup memory
// R at a time. Each element has one owner, so no atomics.
const TILE: u32 = 32u;  // G tile edge
const R: u32 = 8u;      // rows a chunk

struct Params { M: u32, K: u32, S: u32 }  // rows, width, row stride

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

var<workgroup> sa: array<f32, 256>;  // R × TILE: rows × the tile's i columns
var<workgroup> sb: array<f32, 256>;  // R × TILE: rows × the tile's j columns

fn load(i: u32, c: u32) -> f32 {  // i-th sampled row
  let r = i * p.S;
  if (r < p.M && c < p.K) { return f32(x[r * p.K + c]); }
  return 0.0;
}

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bi = wid.y;
  let bj = wid.x;
  if (bi > bj) { return; }  // below the diagonal: the mirror of (bj, bi)
  let l = lid.y * 8u + lid.x;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  let rows = (p.M + p.S - 1u) / p.S;
  for (var m0 = 0u; m0 < rows; m0 += R) {
    for (var q = 0u; q < 4u; q++) {  // 64 threads load 2 × 256 values
      let e = l + q * 64u;
      sa[e] = load(m0 + e / TILE, bi * TILE + e % TILE);
      sb[e] = load(m0 + e / TILE, bj * TILE + e % TILE);
    }
    workgroupBarrier();
    for (var r = 0u; r < R; r++) {
      let ao = r * TILE + lid.y * 4u;
      let bo = r * TILE + lid.x * 4u;
      let b = vec4<f32>(sb[bo], sb[bo + 1u], sb[bo + 2u], sb[bo + 3u]);
      acc0 += sa[ao] * b;
      acc1 += sa[ao + 1u] * b;
      acc2 += sa[ao + 2u] * b;
      acc3 += sa[ao + 3u] * b;
    }
    workgroupBarrier();
  }
  let i0 = bi * TILE + lid.y * 4u;
  let j0 = bj * TILE + lid.x * 4u;
  for (var jj = 0u; jj < 4u; jj++) {
    let j = j0 + jj;
    if (j >= p.K) { break; }
    if (i0 < p.K) { g[i0 * p.K + j] += acc0[jj]; }
    if (i0 + 1u < p.K) { g[(i0 + 1u) * p.K + j] += acc1[jj]; }
    if (i0 + 2u < p.K) { g[(i0 + 2u) * p.K + j] += acc2[jj]; }
    if (i0 + 3u < p.K) { g[(i0 + 3u) * p.K + j] += acc3[jj]; }
  }
}
