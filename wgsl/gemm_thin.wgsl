// GEMM version 4, for thin outputs on GPUs (N ≤ 128, such as a low-rank branch's X·Aᵀ with
// N = R): a 16×8 workgroup computes 16 rows × 16·CT columns, each invocation 2 rows × CT
// columns (lx + 16c), so a rank of 32 fills the tile and M / 16 workgroups keep the GPU busy
// where version 2's 128×128 tiles would leave most of each tile, and most SMs, idle.
// K advances 32 at a time through workgroup memory; W's tile is stored k-major with a padded
// stride so neighbouring invocations read neighbouring vec4 (no bank conflicts).
override CT: u32 = 8u; // columns per invocation, 1 … 8

const TR: u32 = 16u; // rows per workgroup, 2 per invocation
const BK4: u32 = 8u; // vec4 steps per K tile (32 values of K)
const WS: u32 = 129u; // W tile stride (128 columns + 1: spreads the k-major stores over banks)

var<workgroup> xt: array<vec4<f32>, 128>; // [TR][BK4]
var<workgroup> wt: array<vec4<f32>, 1032>; // [BK4][WS]

fn tile_x(m0: u32, tid: u32, k0: u32) -> vec4<f32> {
  let k4 = k0 + tid % BK4;
  return select(vec4<f32>(0.0), load_x(min(m0 + tid / BK4, p.M - 1u), min(k4, p.K4 - 1u)), k4 < p.K4);
}

fn tile_w(n0: u32, v: u32, k0: u32) -> vec4<f32> {
  let k4 = k0 + v % BK4;
  return select(vec4<f32>(0.0), load_w(min(n0 + v / BK4, p.N - 1u), min(k4, p.K4 - 1u)), k4 < p.K4);
}

fn store_col(row: u32, col: u32, v: f32) {
  if (row < p.M && col < p.N) { gemm_store(row, col, v); }
}

@compute @workgroup_size(16, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.y * 16u + lid.x;
  let m0 = wg.y * TR;
  let n0 = wg.x * 16u * CT;
  let ra = 2u * lid.y; // this invocation's rows in the tile: ra, ra + 1
  // Column lx + 16c of row ra in s0 (c < 4) / s1 (c ≥ 4), of row ra + 1 in t0 / t1: plain
  // locals, hand-unrolled, so they stay in registers.
  var s0 = vec4<f32>(0.0); var s1 = vec4<f32>(0.0);
  var t0 = vec4<f32>(0.0); var t1 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.K4; k0 += BK4) {
    xt[tid] = tile_x(m0, tid, k0); // neighbouring invocations: neighbouring k of a row
    for (var i = 0u; i < CT; i++) {
      let v = tid + i * 128u;
      wt[(v % BK4) * WS + v / BK4] = tile_w(n0, v, k0);
    }
    workgroupBarrier();
    for (var j = 0u; j < BK4; j++) {
      let xa = xt[ra * BK4 + j];
      let xb = xt[(ra + 1u) * BK4 + j];
      let b = j * WS + lid.x;
      var w = wt[b];
      s0.x += dot(xa, w); t0.x += dot(xb, w);
      if (CT > 1u) { w = wt[b + 16u]; s0.y += dot(xa, w); t0.y += dot(xb, w); }
      if (CT > 2u) { w = wt[b + 32u]; s0.z += dot(xa, w); t0.z += dot(xb, w); }
      if (CT > 3u) { w = wt[b + 48u]; s0.w += dot(xa, w); t0.w += dot(xb, w); }
      if (CT > 4u) { w = wt[b + 64u]; s1.x += dot(xa, w); t1.x += dot(xb, w); }
      if (CT > 5u) { w = wt[b + 80u]; s1.y += dot(xa, w); t1.y += dot(xb, w); }
      if (CT > 6u) { w = wt[b + 96u]; s1.z += dot(xa, w); t1.z += dot(xb, w); }
      if (CT > 7u) { w = wt[b + 112u]; s1.w += dot(xa, w); t1.w += dot(xb, w); }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < CT; c++) {
    let col = n0 + lid.x + 16u * c;
    store_col(m0 + ra, col, select(s1[c % 4u], s0[c % 4u], c < 4u));
    store_col(m0 + ra + 1u, col, select(t1[c % 4u], t0[c % 4u], c < 4u));
  }
}
