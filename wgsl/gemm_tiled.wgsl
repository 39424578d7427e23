// GEMM version 1: the simple tiled kernel. A 16×16 workgroup computes a 16×16 output tile,
// one output per invocation, stepping K by 16 through workgroup memory.
const TS: u32 = 16u;
const BK4: u32 = 4u; // 4-wide steps per K tile (16 values of K)

var<workgroup> xt: array<array<vec4<f32>, BK4>, TS>;
var<workgroup> wt: array<array<vec4<f32>, BK4>, TS>;

@compute @workgroup_size(TS, TS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let col = wg.x * TS + lid.x;
  let row = wg.y * TS + lid.y;
  // Rows past the edge load a clamped row; their results are never stored.
  let lrow = min(wg.y * TS + lid.y, p.M - 1u);
  let lcol = min(wg.x * TS + lid.y, p.N - 1u);
  var acc = 0.0;
  for (var k0 = 0u; k0 < p.K4; k0 += BK4) {
    if (lid.x < BK4) {
      let k4 = k0 + lid.x;
      xt[lid.y][lid.x] = select(vec4<f32>(0.0), load_x(lrow, min(k4, p.K4 - 1u)), k4 < p.K4);
    } else if (lid.x < 2u * BK4) {
      let k4 = k0 + lid.x - BK4;
      wt[lid.y][lid.x - BK4] = select(vec4<f32>(0.0), load_w(lcol, min(k4, p.K4 - 1u)), k4 < p.K4);
    }
    workgroupBarrier();
    for (var j = 0u; j < BK4; j++) { acc += dot(xt[lid.y][j], wt[lid.x][j]); }
    workgroupBarrier();
  }
  if (row < p.M && col < p.N) { gemm_store(row, col, acc); }
}
