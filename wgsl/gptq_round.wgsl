// GPTQ's rounding on the GPU (runtime/ops/gptq_gpu.ts), in GPTQ's lazy batches of 32
// columns, W [N, K] f32 in the rounding order (act order), U from gptq_factor.wgsl:
//   block: one thread a row rounds the batch's columns in turn — the nearest value of the
//     row's (group's) grid (sorted, the lower on a tie, as the CPU's NearestCode), its code
//     to `codes` at the column's original index, the error e = (w − ŵ) / U[a, a] to E, and
//     e·U[a, b] off the batch's later columns (kept in registers);
//   update: the batch's errors off every later column at once, W[r, j] −= Σ_a E[r, a]·U[a, j].
struct Params { N: u32, K: u32, c0: u32, L: u32, NG: u32 }  // rows, cols, batch start, 2^b, groups a row

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;      // [N, K], rounding order
@group(0) @binding(2) var<storage, read> u: array<f32>;            // [K, K] upper
@group(0) @binding(3) var<storage, read_write> e: array<f32>;      // [N, 32] the batch's errors
@group(0) @binding(4) var<storage, read> vals: array<f32>;         // [N·NG, L] sorted grid values
@group(0) @binding(5) var<storage, read> vcode: array<u32>;        // [N·NG, L] their codes
@group(0) @binding(6) var<storage, read> cols: array<u32>;         // [2K] original column, group
@group(0) @binding(7) var<storage, read_write> codes: array<u32>;  // [N, K] original order

const BW: u32 = 32u;  // batch width

var<workgroup> ub: array<f32, 1024>;  // U[c0 + a, c0 + b]
var<workgroup> es: array<f32, 512>;   // update: 16 rows × 32 errors
var<workgroup> us: array<f32, 512>;   // update: 32 × 16 columns of U

@compute @workgroup_size(64)
fn block(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let K = p.K;
  let c0 = p.c0;
  let nb = min(BW, K - c0);
  for (var t = li; t < BW * BW; t += 64u) {
    let ra = t / BW;
    let cb = t % BW;
    var v = 0.0;
    if (ra < nb && cb < nb) { v = u[(c0 + ra) * K + c0 + cb]; }
    ub[t] = v;
  }
  workgroupBarrier();
  let r = g.x;
  if (r >= p.N) { return; }
  var wv: array<f32, 32>;
  for (var b = 0u; b < nb; b++) { wv[b] = w[r * K + c0 + b]; }
  for (var a = 0u; a < nb; a++) {
    let s = (r * p.NG + cols[K + c0 + a]) * p.L;
    let v = wv[a];
    var lo = 0u;  // the first value ≥ v
    var hi = p.L - 1u;
    while (lo < hi) {
      let mid = (lo + hi) / 2u;
      if (vals[s + mid] < v) { lo = mid + 1u; } else { hi = mid; }
    }
    if (lo > 0u && v - vals[s + lo - 1u] <= vals[s + lo] - v) { lo -= 1u; }
    codes[r * K + cols[c0 + a]] = vcode[s + lo];
    let err = (v - vals[s + lo]) / ub[a * BW + a];
    e[r * BW + a] = err;
    for (var b = a + 1u; b < nb; b++) { wv[b] -= err * ub[a * BW + b]; }
  }
}

@compute @workgroup_size(16, 16)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let K = p.K;
  let nb = min(BW, K - p.c0);
  let j0 = p.c0 + nb;
  let t = lid.y * 16u + lid.x;
  for (var q = t; q < 512u; q += 256u) {
    let er = wid.y * 16u + q / BW;
    let ea = q % BW;
    var ev = 0.0;
    if (er < p.N && ea < nb) { ev = e[er * BW + ea]; }
    es[q] = ev;
    let ua = q / 16u;
    let uj = j0 + wid.x * 16u + q % 16u;
    var uv = 0.0;
    if (ua < nb && uj < K) { uv = u[(p.c0 + ua) * K + uj]; }
    us[q] = uv;
  }
  workgroupBarrier();
  let r = wid.y * 16u + lid.y;
  let j = j0 + wid.x * 16u + lid.x;
  if (r >= p.N || j >= K) { return; }
  var s = 0.0;
  for (var a = 0u; a < nb; a++) { s += es[lid.y * BW + a] * us[a * 16u + lid.x]; }
  w[r * K + j] -= s;
}
