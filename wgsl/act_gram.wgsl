// Streaming Gram matrix of activations x [M, K] (f32/f16): G [K, K] f32 += Σ xᵀx over the
// rows 0, S, 2S, … (every S-th row: GPTQ's Hessian needs many rows, not all). A workgroup owns one T×T tile of G on or above the diagonal (the reader mirrors
// the rest), walks the rows T at a time through workgroup memory, and adds its sum to G
// (each element has one owner, so no atomics).
override T: u32 = 16u;  // tile edge; workgroup T×T

struct Params { M: u32, K: u32, S: u32 }  // rows, width, row stride

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

var<workgroup> sa: array<f32, T * T>;
var<workgroup> sb: array<f32, T * T>;

fn load(i: u32, c: u32) -> f32 {  // i-th sampled row
  let r = i * p.S;
  if (r < p.M && c < p.K) { return f32(x[r * p.K + c]); }
  return 0.0;
}

@compute @workgroup_size(T, T)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bi = wid.y;
  let bj = wid.x;
  if (bi > bj) { return; }  // below the diagonal: the mirror of (bj, bi)
  var acc = 0.0;
  let rows = (p.M + p.S - 1u) / p.S;
  for (var m0 = 0u; m0 < rows; m0 += T) {
    let l = lid.y * T + lid.x;
    sa[l] = load(m0 + lid.y, bi * T + lid.x);
    sb[l] = load(m0 + lid.y, bj * T + lid.x);
    workgroupBarrier();
    for (var r = 0u; r < T; r++) {
      acc += sa[r * T + lid.y] * sb[r * T + lid.x];
    }
    workgroupBarrier();
  }
  let i = bi * T + lid.y;
  let j = bj * T + lid.x;
  if (i < p.K && j < p.K) { g[i * p.K + j] += acc; }
}
